"""The ``unilip`` command. Thin: parse arguments, build a config, call the library.

Every user mistake (bad config key, unreadable image, occupied output directory) ends as one ``unilip: error: ...``
line on stderr and exit status 2, never a traceback. Heavy libraries are imported inside the commands that use them.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from unilip import __version__
from unilip.errors import UniLIPError

logger = logging.getLogger("unilip")


def _miniworld_config(args: argparse.Namespace):
    """The mini-world config from ``--config`` and ``key=value`` overrides (``--size`` sets image_size)."""
    from unilip.config_io import load_config
    from unilip.data.miniworld.config import MiniWorldConfig

    overrides = list(args.overrides)
    if getattr(args, "size", None):
        overrides.append(f"image_size={args.size}")
    return load_config(MiniWorldConfig, args.config, overrides)


# ----------------------------------------------------------------------------------------------------------- commands


def cmd_demo(args: argparse.Namespace) -> int:
    from unilip.data.miniworld.sheet import write_sample_sheet

    png, md = write_sample_sheet(args.out, _miniworld_config(args))
    print(f"wrote {png}\nwrote {md}")
    return 0


def cmd_config_show(args: argparse.Namespace) -> int:
    from unilip.config import UniLIPConfig, load_config, to_yaml

    cfg = load_config(UniLIPConfig, args.config, args.overrides, preset=args.preset)
    sys.stdout.write(to_yaml(cfg))
    return 0


def cmd_miniworld_make(args: argparse.Namespace) -> int:
    import time

    from unilip.data.miniworld.dataset import write_dataset

    cfg = _miniworld_config(args)
    t0 = time.perf_counter()
    out = write_dataset(args.out, args.task, args.n, cfg, split=args.split, start=args.seed, fmt=args.format,
                        shard_size=args.shard_size, progress=not args.quiet)
    dt = time.perf_counter() - t0
    print(f"wrote {args.n} {args.task} records ({args.split}, {cfg.image_size} px, {args.format}) to {out} "
          f"in {dt:.1f} s ({args.n / dt:.0f} records/s)")
    return 0


def cmd_miniworld_detect(args: argparse.Namespace) -> int:
    import numpy as np

    from unilip.data.images import load_image
    from unilip.data.miniworld.detector import detect

    cfg = _miniworld_config(args)
    failed = 0
    for path in args.images:
        try:
            image = np.asarray(load_image(path))
            if image.shape[0] != image.shape[1]:
                raise UniLIPError(f"{path}: the detector needs a square mini-world image, got {image.shape[1]}x{image.shape[0]}")
            scene = detect(image, cfg).to_dict()
        except UniLIPError as err:
            print(f"unilip: error: {err}", file=sys.stderr)
            failed += 1
            continue
        scene.pop("seed")
        print(json.dumps({"file": str(path), **scene}), flush=True)
    return 1 if failed else 0


def cmd_train_tokenizer(args: argparse.Namespace) -> int:
    from unilip.train.tokenizer import load_train_config, train_tokenizer

    cfg = load_train_config(args.config, args.overrides)
    out = train_tokenizer(cfg, resume=args.resume)
    print(f"trained {cfg.stage.name}: checkpoints in {out}, final (EMA) tokenizer in {out / 'final'}")
    return 0


def _load_tokenizer(path: str):
    from unilip.tokenizer import UniLIPTokenizer

    return UniLIPTokenizer.from_pretrained(path).eval()


def cmd_reconstruct(args: argparse.Namespace) -> int:
    import torch

    from unilip.data.images import load_image
    from unilip.data.loader import eval_transform
    from unilip.eval.grid import to_uint8
    from unilip.eval.metrics import psnr

    model = _load_tokenizer(args.model)
    size = args.size or model.image_size
    args.out.mkdir(parents=True, exist_ok=True)
    failed = 0
    from PIL import Image

    for path in args.images:
        try:
            image = eval_transform(load_image(path), size)[None]
        except UniLIPError as err:
            print(f"unilip: error: {err}", file=sys.stderr)
            failed += 1
            continue
        with torch.no_grad():
            recon = model.reconstruct(image, pad_to_multiple=args.pad)
        target = args.out / f"{path.stem}_recon.png"
        Image.fromarray(to_uint8(recon)[0]).save(target)
        print(f"{path} -> {target}  PSNR {float(psnr(recon, image)[0]):.2f} dB")
    return 1 if failed else 0


def cmd_eval_recon(args: argparse.Namespace) -> int:
    from unilip.data.sources import open_source
    from unilip.eval.recon import evaluate_reconstruction, write_results

    model = _load_tokenizer(args.model)
    reference = _load_tokenizer(args.reference).encoder if args.reference else None
    lpips = rfid = None
    if args.lpips_weights:
        from unilip.eval.metrics import lpips_metric

        lpips = lpips_metric(args.lpips_weights)
    if args.fid_weights:
        from unilip.eval.metrics import rfid_metric

        rfid = rfid_metric(args.fid_weights)
    size = args.size or model.image_size
    rows, summary = evaluate_reconstruction(model, open_source(args.data), size, n=args.n, batch_size=args.batch_size,
                                            reference=reference, pad_to_multiple=args.pad, lpips=lpips, rfid=rfid)
    summary.update({"model": str(args.model), "data": args.data, "reference": args.reference or "the model's own encoder"})
    out, table = write_results(rows, summary, args.out)
    shown = {k: round(v, 4) for k, v in summary.items() if isinstance(v, float)}
    print(f"{summary['n_images']} images: {shown}\nwrote {out} and {table}")
    return 0


# -------------------------------------------------------------------------------------------------------------- parser


def _add_miniworld_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="YAML file of mini-world settings (keys of MiniWorldConfig)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="mini-world settings, e.g. max_objects=4 'shapes=[circle, square]'")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="unilip", description="UniLIP: one CLIP encoder to reconstruct, understand, generate and edit images.")
    parser.add_argument("--version", action="version", version=f"unilip {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("demo", help="the main job on the embedded default (now: a mini-world sample sheet)",
                       description="Render a mini-world sample sheet: scenes with captions, questions and edits.")
    p.add_argument("--out", type=Path, default=Path("unilip-demo"), help="output directory (default: unilip-demo)")
    _add_miniworld_config_args(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("config", help="show configs and presets", description="Show and check configs.")
    config_sub = p.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    q = config_sub.add_parser("show", help="print a resolved config as YAML",
                              description="Print the config built from a preset, a YAML file and key=value overrides.")
    from unilip.config import PRESETS

    q.add_argument("--preset", choices=list(PRESETS), help="start from this preset (default: the file's, else 1b)")
    q.add_argument("--config", type=Path, help="YAML config file")
    q.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides, e.g. generator.cfg_scale=3")
    q.set_defaults(func=cmd_config_show)

    p = sub.add_parser("miniworld", help="the mini world: make datasets, detect scenes",
                       description="The mini world: procedural scenes of coloured shapes.")
    mw = p.add_subparsers(dest="miniworld_command", metavar="ACTION", required=True)

    from unilip.data.miniworld.dataset import FORMATS, TASKS
    from unilip.data.miniworld.scene import SPLIT_SEED_BASE

    q = mw.add_parser("make", help="write a dataset", description=(
        "Write a mini-world dataset: PNGs + metadata.jsonl (--format folder) or webdataset tar shards (--format wds). "
        "Splits are disjoint seed ranges; record i of a split comes from that split's seed range, so "
        "(--split, --seed, --n) reproduce a dataset exactly."))
    q.add_argument("--out", type=Path, required=True, help="output directory (must not exist, or be empty)")
    q.add_argument("--n", type=int, required=True, help="number of records")
    q.add_argument("--task", choices=TASKS, default="images", help="what each record holds (default: images)")
    q.add_argument("--split", choices=list(SPLIT_SEED_BASE), default="train", help="train/val/test, or heldout: scenes with held-out colour-shape pairs")
    q.add_argument("--seed", type=int, default=0, help="index of the first record within the split's seed range (default: 0)")
    q.add_argument("--size", type=int, help="image size in pixels (default: the config's image_size, 64)")
    q.add_argument("--format", choices=FORMATS, default="folder", help="folder (PNG + metadata.jsonl) or wds (tar shards)")
    q.add_argument("--shard-size", type=int, default=10_000, help="records per tar shard (wds format)")
    q.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    _add_miniworld_config_args(q)
    q.set_defaults(func=cmd_miniworld_make)

    q = mw.add_parser("detect", help="print the scene graph detected in images", description=(
        "Recover the scene graph of each image from its pixels and print it as JSON, one line per image. "
        "Unreadable images are reported on stderr and the exit status is 1."))
    q.add_argument("images", nargs="+", type=Path, metavar="IMAGE", help="image files")
    q.add_argument("--config", type=Path, help="YAML file of mini-world settings (the world the images come from)")
    q.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="mini-world setting, e.g. --set max_objects=4")
    q.set_defaults(func=cmd_miniworld_detect)
    p = sub.add_parser("train", help="train a model (the stage is in the config)", description="Train a model.")
    train_sub = p.add_subparsers(dest="train_command", metavar="MODEL", required=True)
    q = train_sub.add_parser("tokenizer", help="train one UniLIP tokenizer stage", description=(
        "Train one stage of the UniLIP tokenizer (configs/tokenizer/*.yaml). Multi-process: "
        "torchrun --nproc_per_node N -m unilip.cli train tokenizer ... (or accelerate launch)."))
    q.add_argument("--config", type=Path, help="stage config YAML, e.g. configs/tokenizer/mini_stage1.yaml")
    q.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in loop.output_dir")
    q.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="e.g. loop.max_steps=100 optim.lr=3e-4")
    q.set_defaults(func=cmd_train_tokenizer)

    q = sub.add_parser("reconstruct", help="reconstruct images with a UniLIP tokenizer",
                       description="Encode each image to the UniLIP latent and decode it back; writes <name>_recon.png.")
    q.add_argument("images", nargs="+", type=Path, metavar="IMAGE")
    q.add_argument("--model", required=True, help="tokenizer directory (save_pretrained) or Hugging Face repo id")
    q.add_argument("-o", "--out", type=Path, default=Path("reconstructions"), help="output directory")
    q.add_argument("--size", type=int, help="resize + centre-crop to this size first (default: the model's image size)")
    q.add_argument("--pad", action="store_true", help="official 256 px mode: reflect-pad to a multiple of the token stride")
    q.set_defaults(func=cmd_reconstruct)

    p = sub.add_parser("eval", help="evaluate a model", description="Evaluate a model.")
    eval_sub = p.add_subparsers(dest="eval_command", metavar="WHAT", required=True)
    q = eval_sub.add_parser("recon", help="reconstruction metrics of a tokenizer", description=(
        "PSNR, SSIM (and the official data_range=2 SSIM, labelled), a Fréchet distance in a reference encoder's feature "
        "space, and LPIPS / rFID when their weights are on disk. Writes a summary JSON and a per-image CSV beside it."))
    q.add_argument("--model", required=True, help="tokenizer directory or Hugging Face repo id")
    q.add_argument("--data", required=True, help="miniworld:SPLIT, a dataset directory, an image folder, a .jsonl or shards")
    q.add_argument("-o", "--out", type=Path, required=True, help="summary JSON path (the CSV goes beside it)")
    q.add_argument("--n", type=int, help="number of images (default: all; required for miniworld: and shards)")
    q.add_argument("--size", type=int, help="evaluation size (default: the model's image size)")
    q.add_argument("--batch-size", type=int, default=32)
    q.add_argument("--reference", help="tokenizer dir whose encoder is the feature space for the Fréchet distance "
                   "(the original encoder; default: the evaluated model's own)")
    q.add_argument("--pad", action="store_true", help="official 256 px mode (reflect-pad to a multiple of the token stride)")
    q.add_argument("--lpips-weights", help="directory with LPIPS weights (needs the lpips extra)")
    q.add_argument("--fid-weights", help="Inception weights file for rFID (needs the fid extra)")
    q.set_defaults(func=cmd_eval_recon)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except UniLIPError as err:
        print(f"unilip: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # a file system problem with a path the user gave: say which, no traceback
        print(f"unilip: error: {err.strerror or err}{f': {err.filename}' if err.filename else ''}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("unilip: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
