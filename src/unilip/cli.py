"""The ``unilip`` command. Thin: parse arguments, build a config, call the library.

Every user mistake (bad config key, unreadable image, occupied output directory) ends as one ``unilip: error: ...``
line on stderr and exit status 2, never a traceback. Heavy libraries are imported inside the commands that use them.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from unilip import __version__
from unilip.errors import UniLIPError

logger = logging.getLogger("unilip")


# ---------------------------------------------------------------------------------------------- argument checking


class _Parser(argparse.ArgumentParser):
    """argparse with one ``unilip: error:`` line for a bad argument (and the subcommand's --help to read)."""

    def error(self, message: str):
        self.exit(2, f"unilip: error: {message} (see `{self.prog} --help`)\n")


def _ranged(kind: str, check, lo, hi):
    """An argparse type: ``check("value", text, lo, hi)`` (unilip.checks), its UniLIPError as argparse's error."""
    def parse(text: str):
        try:
            return check("value", text, lo, hi)
        except UniLIPError as err:
            raise argparse.ArgumentTypeError(str(err).removeprefix("value: ")) from None

    parse.__name__ = kind
    return parse


def _int(lo: int, hi: int):
    """A whole number in [lo, hi]; the text must read as an int (``1e3`` and ``2.5`` are refused)."""
    from unilip.checks import check_int, short

    def check(name: str, text: str, lo: int, hi: int) -> int:
        try:
            value = int(text)
        except ValueError:
            raise UniLIPError(f"{name}: expected a whole number in [{lo}, {hi}], got {short(text)}") from None
        return check_int(name, value, lo, hi)

    return _ranged("int", check, lo, hi)


def _float(lo: float, hi: float):
    """A finite number in [lo, hi]."""
    from unilip.checks import check_float

    return _ranged("float", check_float, lo, hi)


def _path(text: str) -> Path:
    """An argparse type: a non-empty path (``-o ""`` would silently mean the current folder) that is valid UTF-8."""
    if not text:
        raise argparse.ArgumentTypeError("an empty path is not allowed (write . for the current folder)")
    if "\x00" in text:
        raise argparse.ArgumentTypeError("a path cannot contain a NUL character")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise argparse.ArgumentTypeError(f"the path {ascii(text)[:200]} is not valid UTF-8; rename the file") from None
    return Path(text)


def _miniworld_config(args: argparse.Namespace):
    """The mini-world config from ``--config`` and ``key=value`` overrides (``--size`` sets image_size)."""
    from unilip.config_io import load_config
    from unilip.data.miniworld.config import MiniWorldConfig

    overrides = list(args.overrides)
    if getattr(args, "size", None):
        overrides.append(f"image_size={args.size}")
    return load_config(MiniWorldConfig, args.config, overrides)


def _user_image(path: Path):
    """An image a user names on the command line, under the web page's limits (16.8 MP, 32:1)."""
    from unilip.checks import MAX_INPUT_PIXELS
    from unilip.data.images import load_image

    return load_image(path, max_pixels=MAX_INPUT_PIXELS)


def _model_input(path: Path, size: int, image=None):
    """``path`` (or its already read ``image``) resized + centre-cropped to ``size``: (3, size, size); errors name
    the file."""
    from unilip.data.loader import eval_transform
    from unilip.errors import ImageLoadError

    image = _user_image(path) if image is None else image
    try:
        return eval_transform(image, size)
    except ImageLoadError as err:
        raise ImageLoadError(str(path), err.reason) from None


# ----------------------------------------------------------------------------------------------------------- commands


def cmd_demo(args: argparse.Namespace) -> int:
    from unilip.demo import run_demo

    run_demo(args.out, n=args.n, seed=args.seed, model=args.model, tokenizer=args.tokenizer,
             generator=None if args.no_generator else args.generator)
    return 0


def cmd_miniworld_sheet(args: argparse.Namespace) -> int:
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

    from unilip.data.miniworld.detector import detect

    cfg = _miniworld_config(args)
    failed = 0
    for path in args.images:
        try:
            image = np.asarray(_user_image(path))
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


def cmd_train_mllm(args: argparse.Namespace) -> int:
    from unilip.train.mllm import load_mllm_config, train_mllm

    cfg = load_mllm_config(args.config, args.overrides)
    out = train_mllm(cfg, resume=args.resume)
    print(f"trained the MLLM's {cfg.stage.name} stage: checkpoints in {out}, final (EMA) model in {out / 'final'}")
    return 0


def cmd_train_generator(args: argparse.Namespace) -> int:
    from unilip.train.generator import load_generator_config, train_generator

    cfg = load_generator_config(args.config, args.overrides)
    out = train_generator(cfg, resume=args.resume)
    print(f"trained the generator's {cfg.stage.name} stage: checkpoints in {out}, final (EMA) generator in {out / 'final'}")
    return 0


def cmd_latent_scale(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from unilip.data.loader import eval_transform
    from unilip.data.sources import open_source
    from unilip.generation.model import measure_latent_scale

    tok = _load_tokenizer(args.tokenizer).float()
    source = open_source(args.data)
    if getattr(source, "iterable", False):
        it = iter(source)
        images = [next(it) for _ in range(args.n)]
    else:
        images = [source.load(i) for i in range(min(args.n, len(source)))]
    batch = torch.stack([eval_transform(im, args.image_size or tok.image_size) for im in images])
    scales = [measure_latent_scale(tok, chunk) for chunk in batch.split(256)]
    weights = np.array([len(c) for c in batch.split(256)], float)
    # 1 / std over all images: combine the chunks' variances, not their scales
    var = float(np.sum(weights * (1 / np.array(scales)) ** 2) / weights.sum())
    print(f"latent scale {1 / var ** 0.5:.4f} (1 / std of the latents of {len(batch)} images from {args.data}); "
          f"set model.generator.latent_scale to it in the generator config")
    return 0


def _load_pipeline(model: str):
    from unilip.pipeline import UniLIPPipeline

    return UniLIPPipeline.from_pretrained(model)


def _run_pipeline(args: argparse.Namespace, prompts: list[str], image=None) -> int:
    import torch

    pipe = _load_pipeline(args.model)
    gens = [torch.Generator().manual_seed(args.seed + i) for i in range(len(prompts) * args.n)]
    images = pipe(prompts, image=image, num_images_per_prompt=args.n, num_inference_steps=args.steps,
                  guidance_scale=args.guidance, negative_prompt=args.negative_prompt, generator=gens,
                  scheduler=args.scheduler).images
    args.out.mkdir(parents=True, exist_ok=True)
    for i, im in enumerate(images):
        path = args.out / f"{i:04d}.png"
        im.save(path)
        print(f"{prompts[i // args.n]!r} seed {args.seed + i} -> {path}")
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    return _run_pipeline(args, [" ".join(args.prompt).strip()])


def cmd_edit(args: argparse.Namespace) -> int:
    return _run_pipeline(args, [" ".join(args.instruction).strip()], image=_user_image(args.image))


def cmd_eval_generation(args: argparse.Namespace) -> int:
    import dataclasses
    import json as _json

    from unilip.config import get_preset

    pipe = _load_pipeline(args.model)
    pipe.set_progress_bar_config(disable=True)
    world = dataclasses.replace(get_preset("mini").miniworld, image_size=pipe.image_size)  # scenes at the model's size
    common = {"out_dir": args.out, "steps": args.steps, "guidance": args.guidance, "seed": args.seed}
    if args.eval_command == "geneval-mini":
        from unilip.eval.geneval_mini import evaluate_geneval

        summary = evaluate_geneval(pipe, world, samples=args.samples, **common)
    elif args.eval_command == "imgedit-mini":
        from unilip.eval.imgedit_mini import evaluate_imgedit

        summary = evaluate_imgedit(pipe, world, samples=args.samples, **common)
    else:
        from unilip.eval.wise_mini import evaluate_wise

        summary = evaluate_wise(pipe, world, samples=args.samples, **common)
    print(_json.dumps(summary, indent=2))
    print(f"wrote {args.out / (args.eval_command + '.json')} and .html")
    return 0


def _load_tokenizer(path: str):
    from unilip.pretrained import resolve_model
    from unilip.tokenizer import UniLIPTokenizer

    return UniLIPTokenizer.from_pretrained(resolve_model(path, "tokenizer")).eval()


def _load_mllm(args: argparse.Namespace):
    """The MLLM of ``--model``, with the UniLIP encoder of ``--tokenizer`` swapped in when ``--encoder unilip``."""
    from unilip.pretrained import resolve_model
    from unilip.mllm.model import MLLM

    mllm = MLLM.from_pretrained(resolve_model(args.model, "mllm"))
    if args.encoder == "unilip":
        mllm.use_encoder(_load_tokenizer(args.tokenizer).encoder)
    return mllm.eval()


def cmd_ask(args: argparse.Namespace) -> int:
    import torch

    from unilip.checks import check_text
    from unilip.mllm.chat import check_plain_text

    question = check_text("question", " ".join(args.question))
    check_plain_text(question)
    picture = _user_image(args.image)  # a bad image is refused before the model loads
    mllm = _load_mllm(args)
    image = _model_input(args.image, mllm.image_size, picture)[None]
    with torch.no_grad():
        print(mllm.answer([question], image)[0])
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from unilip.serve import serve

    serve(args.model, host=args.host, port=args.port, expose=args.expose, device=args.device,
          concurrency=args.concurrency, queue_size=args.queue_size)
    return 0


def cmd_eval_understanding(args: argparse.Namespace) -> int:
    import json as _json

    from unilip.config import get_preset
    from unilip.eval.understanding import evaluate_understanding

    mllm = _load_mllm(args)
    cfg = get_preset("mini").miniworld
    datasets = [args.data] if args.data else ["miniworld:test", "miniworld:heldout"]
    results = {"model": str(args.model), "encoder": args.encoder,
               "tokenizer": str(args.tokenizer) if args.encoder == "unilip" else None}
    for data in datasets:
        r = evaluate_understanding(mllm, data, args.n, cfg, knowledge=data == datasets[0])
        rows = r.pop("rows")
        results[data] = r
        per_type = ", ".join(f"{t} {100 * a:.1f}% (chance {100 * r['chance'][t]:.0f}%)" for t, a in r["per_type"].items())
        print(f"{data}: {100 * r['overall']:.1f}% of {r['n']} ({per_type})")
        if "knowledge" in r:
            print(f"world knowledge (held-out phrasings): {100 * r['knowledge']['accuracy']:.1f}% of {r['knowledge']['n']}")
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            with open(args.out.with_name(f"{args.out.stem}-{data.replace(':', '_').replace('/', '_')}-answers.jsonl"), "w") as f:
                f.writelines(_json.dumps(row) + "\n" for row in rows)
    if args.out:
        args.out.write_text(_json.dumps(results, indent=2) + "\n")
        print(f"wrote {args.out}")
    return 0


def cmd_reconstruct(args: argparse.Namespace) -> int:
    import torch
    from PIL import Image

    from unilip.data.loader import pil_to_tensor
    from unilip.eval.grid import to_uint8
    from unilip.eval.metrics import psnr

    model = _load_tokenizer(args.model)
    size = args.size or model.image_size
    failed = 0
    for path in args.images:
        try:
            image = pil_to_tensor(_user_image(path))[None]  # (1, 3, H, W): the whole image, decoded once
        except UniLIPError as err:
            print(f"unilip: error: {err}", file=sys.stderr)
            failed += 1
            continue
        recon = model.reconstruct(image, pad_to_multiple=args.pad, size=size)  # (1, 3, H, W), through size x size
        args.out.mkdir(parents=True, exist_ok=True)  # only once there is something to write
        target = args.out / f"{path.stem[:200]}_recon.png"
        Image.fromarray(to_uint8(recon)[0]).save(target)
        print(f"{path} -> {target}  ({image.shape[-1]}x{image.shape[-2]} through {size}x{size})  "
              f"PSNR {float(psnr(recon, image)[0]):.2f} dB")
    return 1 if failed else 0


def cmd_eval_recon(args: argparse.Namespace) -> int:
    from unilip.data.sources import open_source
    from unilip.eval.recon import evaluate_reconstruction, images_to_evaluate, write_results

    source = open_source(args.data)  # a missing folder or an endless source is refused before any model loads
    images_to_evaluate(source, args.n)
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
    rows, summary = evaluate_reconstruction(model, source, size, n=args.n, batch_size=args.batch_size,
                                            reference=reference, pad_to_multiple=args.pad, lpips=lpips, rfid=rfid)
    summary.update({"model": str(args.model), "data": args.data, "reference": args.reference or "the model's own encoder"})
    out, table = write_results(rows, summary, args.out)
    shown = {k: round(v, 4) for k, v in summary.items() if isinstance(v, float)}
    print(f"{summary['n_images']} images: {shown}\nwrote {out} and {table}")
    return 0


def cmd_reproduce_tokenizer(args: argparse.Namespace) -> int:
    import time

    from unilip.reproduce.tokenizer import reproduce_tokenizer

    t0 = time.perf_counter()
    results = reproduce_tokenizer(args.out, mllm=args.mllm, quick=args.quick)
    print(f"done in {(time.perf_counter() - t0) / 60:.1f} min: {args.out / 'report.md'}, {args.out / 'report.html'}")
    for name, r in results["variants"].items():
        print(f"  {name:15s} PSNR {r['psnr']:6.2f}  SSIM {r['ssim']:.3f}  VQA {100 * r['vqa']:5.1f}%  drift {r['feature_drift']:.4f}")
    print(f"  original encoder VQA {100 * results['original_encoder']['vqa']:.1f}%")
    return 0


def cmd_reproduce_generator(args: argparse.Namespace) -> int:
    from unilip.reproduce.generator import reproduce_generator

    variants = [v.strip() for v in args.variants.split(",")] if args.variants else None
    results = reproduce_generator(args.out, mllm=args.mllm, tokenizer=args.tokenizer, quick=args.quick, variants=variants,
                                  steps=args.steps, batch_size=args.batch_size, pool=args.pool, edit=args.edit_share)
    print(f"wrote {args.out / 'results.json'}, {args.out / 'report.md'}, {args.out / 'report.html'} "
          f"({results['seconds'] / 60:.1f} min)")
    return 0


# -------------------------------------------------------------------------------------------------------------- parser


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


def _add_miniworld_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=_path, help="YAML file of mini-world settings (keys of MiniWorldConfig)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="mini-world settings, e.g. max_objects=4 'shapes=[circle, square]'")


def build_parser() -> argparse.ArgumentParser:
    from unilip.checks import (MAX_BATCH, MAX_GUIDANCE, MAX_IMAGE_SIZE, MAX_IMAGES_PER_PROMPT, MAX_RECORDS, MAX_SEED,
                               MAX_STEPS)
    from unilip.data.miniworld.scene import SPLIT_SIZE

    parser = _Parser(prog="unilip", description="UniLIP: one CLIP encoder to reconstruct, understand, generate and edit images.")
    parser.add_argument("--version", action="version", version=f"unilip {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("demo", help="the embedded default end to end: reconstruct, understand, generate, edit",
                       description=("Render fresh held-out mini-world scenes, reconstruct them with the UniLIP "
                                    "tokenizer, ask the MLLM about them with its original and with the UniLIP "
                                    "encoder, generate images from prompts and edit scenes by instructions (scored by "
                                    "the detector), and write an HTML page (under a minute on a laptop CPU)."))
    p.add_argument("-o", "--out", type=_path, default=Path("unilip-demo"), help="output directory (default: unilip-demo)")
    p.add_argument("--n", type=_int(1, MAX_IMAGES_PER_PROMPT), default=8, help="scenes to show (default 8)")
    p.add_argument("--seed", type=_int(0, SPLIT_SIZE - 1000), default=0, help="which held-out scenes (default 0)")
    p.add_argument("--model", default="mini", help="MLLM ('mini' = bundled)")
    p.add_argument("--tokenizer", default="mini", help="UniLIP tokenizer ('mini' = bundled)")
    p.add_argument("--generator", default="mini", help="generator directory made with the MLLM and tokenizer ('mini' = bundled)")
    p.add_argument("--no-generator", action="store_true", help="reconstruct and understand only")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("config", help="show configs and presets", description="Show and check configs.")
    config_sub = p.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    q = config_sub.add_parser("show", help="print a resolved config as YAML",
                              description="Print the config built from a preset, a YAML file and key=value overrides.")
    from unilip.config import PRESETS

    q.add_argument("--preset", choices=list(PRESETS), help="start from this preset (default: the file's, else 1b)")
    q.add_argument("--config", type=_path, help="YAML config file")
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
    q.add_argument("--out", type=_path, required=True, help="output directory (must not exist, or be empty)")
    q.add_argument("--n", type=_int(1, MAX_RECORDS), required=True, help="number of records")
    q.add_argument("--task", choices=TASKS, default="images", help="what each record holds (default: images)")
    q.add_argument("--split", choices=list(SPLIT_SEED_BASE), default="train", help="train/val/test, or heldout: scenes with held-out colour-shape pairs")
    q.add_argument("--seed", type=_int(0, SPLIT_SIZE - 1), default=0, help="index of the first record within the split's seed range (default: 0)")
    q.add_argument("--size", type=_int(16, MAX_IMAGE_SIZE), help="image size in pixels (default: the config's image_size, 64)")
    q.add_argument("--format", choices=FORMATS, default="folder", help="folder (PNG + metadata.jsonl) or wds (tar shards)")
    q.add_argument("--shard-size", type=_int(1, MAX_RECORDS), default=10_000, help="records per tar shard (wds format)")
    q.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    _add_miniworld_config_args(q)
    q.set_defaults(func=cmd_miniworld_make)

    q = mw.add_parser("sheet", help="render a sample sheet of scenes, captions, questions and edits",
                      description="Write miniworld_sheet.png and miniworld_sheet.md: what the models learn from.")
    q.add_argument("--out", type=_path, default=Path("unilip-sheet"), help="output directory")
    _add_miniworld_config_args(q)
    q.set_defaults(func=cmd_miniworld_sheet)

    q = mw.add_parser("detect", help="print the scene graph detected in images", description=(
        "Recover the scene graph of each image from its pixels and print it as JSON, one line per image. "
        "Unreadable images are reported on stderr and the exit status is 1."))
    q.add_argument("images", nargs="+", type=_path, metavar="IMAGE", help="image files")
    q.add_argument("--config", type=_path, help="YAML file of mini-world settings (the world the images come from)")
    q.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="mini-world setting, e.g. --set max_objects=4")
    q.set_defaults(func=cmd_miniworld_detect)
    def add_stage_args(q: argparse.ArgumentParser, example: str) -> None:
        q.add_argument("--config", type=_path, help=f"stage config YAML, e.g. {example}")
        q.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in loop.output_dir")
        q.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="e.g. loop.max_steps=100 optim.lr=3e-4")

    p = sub.add_parser("train", help="train a model (the stage is in the config)", description="Train a model.")
    train_sub = p.add_subparsers(dest="train_command", metavar="MODEL", required=True)
    q = train_sub.add_parser("tokenizer", help="train one UniLIP tokenizer stage", description=(
        "Train one stage of the UniLIP tokenizer (configs/tokenizer/*.yaml). Multi-process: "
        "torchrun --nproc_per_node N -m unilip.cli train tokenizer ... (or accelerate launch)."))
    add_stage_args(q, "configs/tokenizer/mini_stage1.yaml")
    q.set_defaults(func=cmd_train_tokenizer)

    q = train_sub.add_parser("mllm", help="train one stage of the mini MLLM", description=(
        "Train the mini MLLM: the vision stage (dense patch attributes) then the instruct stage (questions, captions, "
        "world knowledge). configs/mllm/*.yaml."))
    add_stage_args(q, "configs/mllm/mini_vision.yaml")
    q.set_defaults(func=cmd_train_mllm)

    q = train_sub.add_parser("generator", help="train one stage of the generator (queries, connector, DiT)", description=(
        "Train one generator stage (configs/generator/*.yaml): the frozen MLLM and UniLIP tokenizer condition and "
        "encode; the queries, the connector and the SANA DiT learn flow matching in the UniLIP latent."))
    add_stage_args(q, "configs/generator/mini.yaml")
    q.set_defaults(func=cmd_train_generator)

    q = sub.add_parser("latent-scale", help="measure the factor that gives the DiT unit-variance latents",
                       description="1 / std of a tokenizer's latents over a dataset: the generator's latent_scale "
                                   "(the official 10.6 for UniLIP-1B, 9.5 for 2B were measured so).")
    q.add_argument("--tokenizer", default="mini", help="UniLIP tokenizer directory ('mini' = bundled)")
    q.add_argument("--data", default="miniworld:train", help="image source (miniworld:SPLIT, a folder, a dataset dir, ...)")
    q.add_argument("--n", type=_int(1, MAX_RECORDS), default=2000, help="images to measure over")
    q.add_argument("--image-size", type=_int(8, MAX_IMAGE_SIZE), help="resize images to this side (default: the tokenizer's)")
    q.set_defaults(func=cmd_latent_scale)

    def add_sampling_args(q: argparse.ArgumentParser) -> None:
        q.add_argument("--model", default="mini", help="pipeline directory (mllm/, tokenizer/, generator/), repo id, or 'mini'")
        q.add_argument("-n", type=_int(1, MAX_IMAGES_PER_PROMPT), default=1, help="images per prompt")
        q.add_argument("--steps", type=_int(1, MAX_STEPS), help="sampling steps (default: the generator config's, 20)")
        q.add_argument("--guidance", type=_float(1, MAX_GUIDANCE), help="classifier-free guidance scale (default: the generator config's)")
        q.add_argument("--negative-prompt", help="the unconditional branch's prompt (default: the empty prompt)")
        q.add_argument("--seed", type=_int(0, MAX_SEED), default=0, help="image i uses seed + i: same seed, same images")
        q.add_argument("--scheduler", choices=["euler", "dpm"], default="euler", help="flow Euler or DPM-Solver++")
        q.add_argument("-o", "--out", type=_path, required=True, help="output directory (0000.png, 0001.png, ...)")

    q = sub.add_parser("generate", help="generate images from a prompt", description=(
        "Text-to-image with the UniLIP generator (the bundled mini one by default: mini-world prompts such as "
        "'a red circle to the left of a blue square')."))
    q.add_argument("prompt", nargs="+", metavar="PROMPT")
    add_sampling_args(q)
    q.set_defaults(func=cmd_generate)

    q = sub.add_parser("edit", help="edit an image by an instruction", description=(
        "Instruction-based editing: the MLLM reads the instruction and the image's UniLIP features, the DiT draws "
        "the edited image (mini: 'make the red circle blue', 'remove the square', 'add a small green triangle on the left')."))
    q.add_argument("image", type=_path, metavar="IMAGE")
    q.add_argument("instruction", nargs="+", metavar="INSTRUCTION")
    add_sampling_args(q)
    q.set_defaults(func=cmd_edit)

    q = sub.add_parser("reconstruct", help="reconstruct images with a UniLIP tokenizer",
                       description="Encode each image to the UniLIP latent and decode it back; writes <name>_recon.png.")
    q.add_argument("images", nargs="+", type=_path, metavar="IMAGE")
    q.add_argument("--model", required=True, help="tokenizer directory (save_pretrained) or Hugging Face repo id")
    q.add_argument("-o", "--out", type=_path, default=Path("reconstructions"), help="output directory")
    q.add_argument("--size", type=_int(8, MAX_IMAGE_SIZE), help="the resolution the model works at: the image is resized to SIZE x SIZE, reconstructed, and resized back to its own size (default: the model's image size)")
    q.add_argument("--pad", action="store_true", help="official 256 px mode: reflect-pad to a multiple of the token stride")
    q.set_defaults(func=cmd_reconstruct)

    def add_mllm_args(q: argparse.ArgumentParser) -> None:
        q.add_argument("--model", default="mini", help="MLLM: 'mini' (bundled), an InternVL directory or repo id")
        q.add_argument("--encoder", choices=["original", "unilip"], default="original",
                       help="the MLLM's own vision encoder, or the UniLIP encoder of --tokenizer swapped in")
        q.add_argument("--tokenizer", default="mini", help="UniLIP tokenizer for --encoder unilip ('mini' = bundled)")

    q = sub.add_parser("ask", help="ask the MLLM a question about an image",
                       description="Answer a question about an image with the MLLM (original or UniLIP encoder).")
    q.add_argument("image", type=_path, metavar="IMAGE")
    q.add_argument("question", nargs="+", metavar="QUESTION")
    add_mllm_args(q)
    q.set_defaults(func=cmd_ask)

    q = sub.add_parser("serve", help="web demo: reconstruct, ask, generate and edit in a browser", description=(
        "Serve a web page (Gradio; pip install \"unilip[demo]\") with four tabs: reconstruct an image, ask the MLLM "
        "about it (original or UniLIP encoder), generate images from a prompt, edit an image by an instruction. The "
        "models load once, at start. Binds to 127.0.0.1; other addresses need --expose (there is no login)."))
    q.add_argument("--model", default="mini", help="pipeline directory (mllm/, tokenizer/, generator/), repo id, or 'mini'")
    q.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    q.add_argument("--port", type=_int(1, 65535), default=7860, help="port (default 7860)")
    q.add_argument("--expose", action="store_true", help="allow a --host reachable from other machines (e.g. 0.0.0.0)")
    q.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda when available)")
    q.add_argument("--concurrency", type=_int(1, 64), default=1, help="requests that run at once, all tabs together (default 1)")
    q.add_argument("--queue-size", type=_int(1, 1024), default=16, help="requests that may wait; more are turned away (default 16)")
    q.set_defaults(func=cmd_serve)

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
        q.add_argument("src", type=_path, metavar="SRC", help=src_help)
        q.add_argument("dst", type=_path, metavar="DST", help=dst_help)
        q.add_argument("--preset", help="read the weights as this preset's architecture (default: 1b or 2b by width)")
        q.add_argument("--config", type=_path, help="read the weights as this config's architecture (YAML)")
        q.add_argument("--overwrite", action="store_true", help="write into a non-empty DST")
        q.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. tokenizer.image_size=448")
        q.set_defaults(func=cmd_convert)

    p = sub.add_parser("export", help="our checkpoints -> InternVL3-hf or the official layout", description=(
        "Write our checkpoints in other layouts."))
    exp = p.add_subparsers(dest="export_command", metavar="WHAT", required=True)
    q = exp.add_parser("internvl", help="an InternVL3-*-hf checkpoint with the UniLIP encoder as its vision tower",
                       description=("Write an InternVL checkpoint whose vision tower + projector are the UniLIP "
                                    "encoder's: plain transformers loads it, so VLMEvalKit / lmms-eval can score it."))
    q.add_argument("--tokenizer", required=True, help="UniLIP tokenizer directory ('mini' = bundled; an official .pth works)")
    q.add_argument("--mllm", required=True, help="the InternVL MLLM directory or repo id ('mini' = bundled)")
    q.add_argument("dst", type=_path, metavar="DST", help="output directory")
    q.set_defaults(func=cmd_export)
    q = exp.add_parser("official-tokenizer", help="a tokenizer directory -> the official .pth layout",
                       description="Write a tokenizer in the official UniLIP layout (a flat state dict .pth).")
    q.add_argument("--tokenizer", required=True, help="UniLIP tokenizer directory ('mini' = bundled)")
    q.add_argument("dst", type=_path, metavar="DST", help="output .pth file")
    q.set_defaults(func=cmd_export)

    p = sub.add_parser("reproduce", help="reproduce the paper's results in miniature", description=(
        "Reproduce the paper's results on the mini world."))
    repro = p.add_subparsers(dest="reproduce_command", metavar="WHAT", required=True)
    q = repro.add_parser("tokenizer", help="the tokenizer's claims: reconstruction vs understanding, and ablations",
                         description=("Train the UniLIP tokenizer eight ways on the mini MLLM's encoder (stage 1 only, "
                                      "stage 1 for as many steps as the full recipe, the full recipe, distillation "
                                      "weights 0.1 and 0.01, no distillation, direct fine-tuning, no stage 1) and report "
                                      "reconstruction and VQA accuracy beside the paper's claims (about 35 min on 2 "
                                      "cores; --quick is a smoke run)."))
    q.add_argument("-o", "--out", type=_path, required=True, help="output directory (runs, results.json, report.md/.html)")
    q.add_argument("--quick", action="store_true", help="a few steps and small evaluations (a smoke test, not results)")
    q.add_argument("--mllm", default="mini", help="the MLLM whose encoder is revamped ('mini' = bundled)")
    q.set_defaults(func=cmd_reproduce_tokenizer)

    q = repro.add_parser("generator", help="the generator's ablations: dual vs queries vs hidden, UniLIP vs VAE latent",
                         description=("Train the mini generator four ways with the same budget (dual conditions, "
                                      "queries only, hidden states only, and dual in a plain DC-AE autoencoder's latent) "
                                      "and score each on mini GenEval / ImgEdit / WISE beside the paper's numbers "
                                      "(about 20 min per variant on 2 cores; --quick is a smoke run)."))
    q.add_argument("-o", "--out", type=_path, required=True, help="output directory (runs, results.json, report.md/.html)")
    q.add_argument("--quick", action="store_true", help="a few steps and small evaluations (a smoke test, not results)")
    q.add_argument("--mllm", default="mini", help="the frozen MLLM ('mini' = bundled)")
    q.add_argument("--tokenizer", default="mini", help="the frozen UniLIP tokenizer ('mini' = bundled)")
    q.add_argument("--variants", help="comma-separated subset (dual,queries,hidden,vae_latent); finished variants are "
                                      "reused, so two processes can split the work and a last call writes the report")
    q.add_argument("--steps", type=_int(1, 10_000_000), help="training steps per variant (default 2000 of 64 images, ~17 min on 2 cores)")
    q.add_argument("--batch-size", type=_int(1, MAX_BATCH), help="images per step (default 64)")
    q.add_argument("--pool", type=_int(0, MAX_RECORDS), help="train on a frozen pool of N items (default 0: render every step)")
    q.add_argument("--edit-share", type=_float(0, 1), help="share of edit triplets in the training mix (default 0.3)")
    q.set_defaults(func=cmd_reproduce_generator)

    def cmd_dump(args: argparse.Namespace) -> int:
        from unilip.eval.dump import chunk_batches, dump_samples, geneval_plan, imgedit_plan, settings_name, wise_plan

        # every input is checked before the model loads and before anything is written
        if args.dump_command == "geneval":
            plan = geneval_plan(args.prompts, args.samples)
        elif args.dump_command == "wise":
            plan = wise_plan(args.prompts)
        else:
            plan = imgedit_plan(args.bench, args.images)
        chunk_batches(len(plan.items), args.batch_size, args.index, args.n_chunks)
        settings = dump_samples(_load_pipeline(args.model), plan, args.out, model=args.model, steps=args.steps,
                                guidance=args.guidance, scheduler=args.scheduler, seed=args.seed,
                                batch_size=args.batch_size, index=args.index, n_chunks=args.n_chunks)
        c, s = settings["chunk"], settings["sampling"]
        print(f"{plan.benchmark} chunk {args.index} of {args.n_chunks}: {c['prompts']} of {c['prompts_total']} prompts "
              f"({c['drawn']} drawn, {c['skipped_done']} already done; {s['steps']} steps, guidance {s['guidance']}) "
              f"in {args.out}; settings in {args.out / settings_name(args.index, args.n_chunks)}")
        return 0

    p = sub.add_parser("dump", help="write the sample folders the official GenEval / WISE / ImgEdit scorers read",
                       description=("Generate the official benchmarks' images into the folder layout their own "
                                    "scorers read (GenEval: mmdetection; WISE, ImgEdit: GPT judges), with the settings "
                                    "and seeds beside them. Split the work over GPUs with --index I --n-chunks K (one "
                                    "process per GPU, same output folder); a rerun skips finished prompts."))
    dump_sub = p.add_subparsers(dest="dump_command", metavar="BENCH", required=True)

    def add_dump_args(q: argparse.ArgumentParser, layout: str) -> None:
        q.add_argument("--model", default="mini", help="pipeline directory (mllm/, tokenizer/, generator/), repo id, or 'mini'")
        q.add_argument("--steps", type=_int(1, MAX_STEPS), help="sampling steps (default: the generator config's)")
        q.add_argument("--guidance", type=_float(1, MAX_GUIDANCE), help="classifier-free guidance scale (default: the generator config's; "
                                                       "official 4.5, ImgEdit with the 2B model 4.0)")
        q.add_argument("--seed", type=_int(0, MAX_SEED), default=0, help="base seed: sample k of prompt i has its own fixed seed, "
                                                           "whatever the chunking")
        q.add_argument("--scheduler", choices=["euler", "dpm"], default="euler", help="flow Euler or DPM-Solver++")
        q.add_argument("--batch-size", type=_int(1, MAX_BATCH), default=4, help="prompts per pipeline call (default 4); keep it when "
                                                                 "resuming or adding chunks: it fixes the last bits")
        q.add_argument("--index", type=_int(0, 9999), default=0, help="this process's chunk, 0..n-chunks-1 (default 0)")
        q.add_argument("--n-chunks", type=_int(1, 10000), default=1, help="number of processes sharing the work (default 1)")
        q.add_argument("-o", "--out", type=_path, required=True, help=f"output folder ({layout})")

    q = dump_sub.add_parser("geneval", help="GenEval: {i:05d}/samples/{k:05d}.png + {i:05d}/metadata.jsonl",
                            description=("Images for GenEval's prompts, laid out as GenEval's evaluate_images.py reads "
                                         "them: OUT/{i:05d}/metadata.jsonl (the prompt's line) and "
                                         "OUT/{i:05d}/samples/{k:05d}.png, i the prompt's position in the file."))
    q.add_argument("--prompts", type=_path, required=True, help="GenEval's evaluation_metadata.jsonl (one JSON object per line)")
    q.add_argument("--samples", type=_int(1, MAX_IMAGES_PER_PROMPT), default=4, help="images per prompt (default 4, as the official)")
    add_dump_args(q, "{i:05d}/samples/{k:05d}.png, {i:05d}/metadata.jsonl")
    q.set_defaults(func=cmd_dump)

    q = dump_sub.add_parser("wise", help="WISE: {prompt_id}.png",
                            description=("One image per WISE prompt, OUT/{prompt_id}.png, as WISE's gpt_eval.py reads "
                                         "them, from every *.json in WISE's data folder (fields 'Prompt', 'prompt_id')."))
    q.add_argument("--prompts", type=_path, required=True, help="WISE's data/ folder (cultural_common_sense.json, ...)")
    add_dump_args(q, "{prompt_id}.png")
    q.set_defaults(func=cmd_dump)

    q = dump_sub.add_parser("imgedit", help="ImgEdit single-turn: {key}.png",
                            description=("One edit per entry of ImgEdit's singleturn.json, OUT/{key}.png, as ImgEdit's "
                                         "GPT judge reads them; the source of entry key is IMAGES/<entry's 'id'>, "
                                         "and the instruction its 'prompt'. Missing sources are reported before any "
                                         "generation."))
    q.add_argument("--bench", type=_path, required=True, help="ImgEdit's Benchmark/singleturn/singleturn.json")
    q.add_argument("--images", type=_path, help="folder the entries' 'id' paths are relative to (default: the JSON's folder)")
    add_dump_args(q, "{key}.png")
    q.set_defaults(func=cmd_dump)

    p = sub.add_parser("eval", help="evaluate a model", description="Evaluate a model.")
    eval_sub = p.add_subparsers(dest="eval_command", metavar="WHAT", required=True)
    q = eval_sub.add_parser("recon", help="reconstruction metrics of a tokenizer", description=(
        "PSNR, SSIM (and the official data_range=2 SSIM, labelled), a Fréchet distance in a reference encoder's feature "
        "space, and LPIPS / rFID when their weights are on disk. Writes a summary JSON and a per-image CSV beside it."))
    q.add_argument("--model", required=True, help="tokenizer directory or Hugging Face repo id")
    q.add_argument("--data", required=True, help="miniworld:SPLIT, a dataset directory, an image folder, a .jsonl or shards")
    q.add_argument("-o", "--out", type=_path, required=True, help="summary JSON path (the CSV goes beside it)")
    q.add_argument("--n", type=_int(1, MAX_RECORDS), help="number of images (default: all; required for miniworld: and shards)")
    q.add_argument("--size", type=_int(8, MAX_IMAGE_SIZE), help="evaluation size (default: the model's image size)")
    q.add_argument("--batch-size", type=_int(1, MAX_BATCH), default=32, help="images per forward pass (default 32)")
    q.add_argument("--reference", help="tokenizer dir whose encoder is the feature space for the Fréchet distance "
                   "(the original encoder; default: the evaluated model's own)")
    q.add_argument("--pad", action="store_true", help="official 256 px mode (reflect-pad to a multiple of the token stride)")
    q.add_argument("--lpips-weights", help="directory with LPIPS weights (needs the lpips extra)")
    q.add_argument("--fid-weights", help="Inception weights file for rFID (needs the fid extra)")
    q.set_defaults(func=cmd_eval_recon)

    q = eval_sub.add_parser("understanding", help="VQA accuracy of the MLLM, per question type", description=(
        "Exact-match accuracy of the MLLM's answers per question type and overall, with chance levels, on held-out "
        "scenes (default: miniworld:test and the held-out colour-shape pairs, miniworld:heldout) and on held-out "
        "phrasings of its world knowledge."))
    add_mllm_args(q)
    q.add_argument("--data", help="miniworld:SPLIT or a dataset written by `unilip miniworld make --task vqa`")
    q.add_argument("--n", type=_int(1, MAX_RECORDS), default=1000, help="questions per split (default 1000)")
    q.add_argument("-o", "--out", type=_path, help="results JSON (answers go beside it as JSONL)")
    q.set_defaults(func=cmd_eval_understanding)

    for name, what, default_samples in (
            ("geneval-mini", "GenEval's six categories on the mini world (312 prompts), scored by the detector", 4),
            ("imgedit-mini", ("250 edits (recolour, remove, add, replace, move; 50 on held-out pairs): instruction "
                              "followed and everything else preserved, by the detector, and the PSNR outside the edit"), 1),
            ("wise-mini", "108 prompts naming colour and/or shape through world knowledge only, scored by the detector", 4)):
        q = eval_sub.add_parser(name, help=what.split(",")[0].split(":")[0], description=what + ". Writes JSON + HTML.")
        q.add_argument("--model", default="mini", help="pipeline directory, repo id, or 'mini' (bundled)")
        q.add_argument("--samples", type=_int(1, MAX_IMAGES_PER_PROMPT), default=default_samples, help=f"samples per prompt (default {default_samples})")
        q.add_argument("--steps", type=_int(1, MAX_STEPS), help="sampling steps (default: the generator config's)")
        q.add_argument("--guidance", type=_float(1, MAX_GUIDANCE), help="guidance scale (default: the generator config's)")
        q.add_argument("--seed", type=_int(0, MAX_SEED), default=0, help="base seed (sample j of prompt i has its own fixed seed)")
        q.add_argument("-o", "--out", type=_path, required=True, help="output directory for the JSON, HTML and samples")
        q.set_defaults(func=cmd_eval_generation)
    return parser


def main(argv: list[str] | None = None) -> int:
    for stream in (sys.stdout, sys.stderr):  # a prompt or file name the terminal cannot show must not crash a command
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
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


def entry() -> None:
    """The console entry point. Under torchrun, exit without the interpreter's teardown: torch 2.13's gloo can hang or
    abort while destroying its threads after training has finished and everything is written (platform_notes §5)."""
    code = main()
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    entry()
