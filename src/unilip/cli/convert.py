"""``unilip convert official-tokenizer | official-generator`` (published weights -> our directories) and
``unilip export internvl | official-tokenizer`` (ours -> transformers' InternVL or the official layout)."""

from __future__ import annotations

import argparse

from unilip.cli.args import path_arg


def _architecture(args: argparse.Namespace):
    """The architecture a converter reads an official checkpoint as: --preset / --config / overrides, or None
    (the converter picks the 1b or 2b preset by the width the weights show)."""
    from unilip.config import UniLIPConfig, load_config

    if args.preset is None and args.config is None and not args.overrides:
        return None
    return load_config(UniLIPConfig, args.config, args.overrides, preset=args.preset)


def cmd_convert(args: argparse.Namespace) -> int:
    import time

    from unilip.convert import convert_official_generator, convert_official_tokenizer

    convert = convert_official_tokenizer if args.convert_command == "official-tokenizer" else convert_official_generator
    start = time.perf_counter()
    out = convert(args.src, args.dst, _architecture(args), overwrite=args.overwrite)
    print(f"wrote {out} in {time.perf_counter() - start:.1f} s; use it as --model {out}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from unilip.convert import export_internvl, export_official_tokenizer
    from unilip.pretrained import resolve_model

    tokenizer = resolve_model(args.tokenizer, "tokenizer")
    if args.export_command == "internvl":
        out = export_internvl(tokenizer, resolve_model(args.mllm, "mllm"), args.dst)
        print(f"wrote {out}: transformers.InternVLForConditionalGeneration.from_pretrained({str(out)!r}) loads it")
    else:
        out = export_official_tokenizer(tokenizer, args.dst)
        print(f"wrote {out} (the official UniLIP tokenizer layout)")
    return 0


def add_convert_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("convert", help="official UniLIP checkpoints -> our directories", description=(
        "Convert the published UniLIP weights into our layout, checking every tensor first (nothing is written for a "
        "mismatched checkpoint). The architecture the weights do not state comes from the 1b preset (D = 896) or the "
        "2b preset (D = 1536), or from --preset / --config / key=value overrides."))
    conv = p.add_subparsers(dest="convert_command", metavar="WHAT", required=True)
    for name, what, src_help, dst_help in (
            ("official-tokenizer", "an official tokenizer .pth (1b_unilip.pth, 2b_unilip.pth) -> a tokenizer directory",
             "the official .pth (read with torch.load(weights_only=True) only)", "our tokenizer directory"),
            ("official-generator", "an official UniLIP-1B / UniLIP-3B directory -> a pipeline directory (mllm/, "
             "tokenizer/, generator/)", "the official directory (config.json, safetensors, tokenizer files)",
             "our pipeline directory")):
        q = conv.add_parser(name, help=what, description=what + ".")
        q.add_argument("src", type=path_arg, metavar="SRC", help=src_help)
        q.add_argument("dst", type=path_arg, metavar="DST", help=dst_help)
        q.add_argument("--preset", help="read the weights as this preset's architecture (default: 1b or 2b by width)")
        q.add_argument("--config", type=path_arg, help="read the weights as this config's architecture (YAML)")
        q.add_argument("--overwrite", action="store_true", help="write into a non-empty DST")
        q.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. tokenizer.image_size=448")
        q.set_defaults(func=cmd_convert)


def add_export_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="our checkpoints -> InternVL3-hf or the official layout", description=(
        "Write our checkpoints in other layouts."))
    exp = p.add_subparsers(dest="export_command", metavar="WHAT", required=True)
    q = exp.add_parser("internvl", help="an InternVL3-*-hf checkpoint with the UniLIP encoder as its vision tower",
                       description=("Write an InternVL checkpoint whose vision tower + projector are the UniLIP "
                                    "encoder's: plain transformers loads it, so VLMEvalKit / lmms-eval can score it."))
    q.add_argument("--tokenizer", required=True, help="UniLIP tokenizer directory ('mini' = bundled; an official .pth works)")
    q.add_argument("--mllm", required=True, help="the InternVL MLLM directory or repo id ('mini' = bundled)")
    q.add_argument("dst", type=path_arg, metavar="DST", help="output directory")
    q.set_defaults(func=cmd_export)
    q = exp.add_parser("official-tokenizer", help="a tokenizer directory -> the official .pth layout",
                       description="Write a tokenizer in the official UniLIP layout (a flat state dict .pth).")
    q.add_argument("--tokenizer", required=True, help="UniLIP tokenizer directory ('mini' = bundled)")
    q.add_argument("dst", type=path_arg, metavar="DST", help="output .pth file")
    q.set_defaults(func=cmd_export)
