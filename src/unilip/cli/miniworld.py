"""``unilip miniworld make | sheet | detect``: write mini-world datasets, show what the models learn from, and read
a scene graph back from pixels."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from unilip.checks import MAX_IMAGE_SIZE, MAX_RECORDS
from unilip.cli.args import int_in, path_arg, user_image
from unilip.data.miniworld.dataset import FORMATS, TASKS
from unilip.data.miniworld.scene import SPLIT_SEED_BASE, SPLIT_SIZE
from unilip.errors import UniLIPError


def _miniworld_config(args: argparse.Namespace):
    """The mini-world config from ``--config`` and ``key=value`` overrides (``--size`` sets image_size)."""
    from unilip.config_io import load_config
    from unilip.data.miniworld.config import MiniWorldConfig

    overrides = list(args.overrides)
    if getattr(args, "size", None):
        overrides.append(f"image_size={args.size}")
    return load_config(MiniWorldConfig, args.config, overrides)


def cmd_make(args: argparse.Namespace) -> int:
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


def cmd_sheet(args: argparse.Namespace) -> int:
    from unilip.data.miniworld.sheet import write_sample_sheet

    png, md = write_sample_sheet(args.out, _miniworld_config(args))
    print(f"wrote {png}\nwrote {md}")
    return 0


def cmd_detect(args: argparse.Namespace) -> int:
    import numpy as np

    from unilip.data.miniworld.detector import detect

    cfg = _miniworld_config(args)
    failed = 0
    for path in args.images:
        try:
            image = np.asarray(user_image(path))
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


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=path_arg, help="YAML file of mini-world settings (keys of MiniWorldConfig)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="mini-world settings, e.g. max_objects=4 'shapes=[circle, square]'")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("miniworld", help="the mini world: make datasets, detect scenes",
                       description="The mini world: procedural scenes of coloured shapes.")
    mw = p.add_subparsers(dest="miniworld_command", metavar="ACTION", required=True)

    q = mw.add_parser("make", help="write a dataset", description=(
        "Write a mini-world dataset: PNGs + metadata.jsonl (--format folder) or webdataset tar shards (--format wds). "
        "Splits are disjoint seed ranges; record i of a split comes from that split's seed range, so "
        "(--split, --seed, --n) reproduce a dataset exactly."))
    q.add_argument("--out", type=path_arg, required=True, help="output directory (must not exist, or be empty)")
    q.add_argument("--n", type=int_in(1, MAX_RECORDS), required=True, help="number of records")
    q.add_argument("--task", choices=TASKS, default="images", help="what each record holds (default: images)")
    q.add_argument("--split", choices=list(SPLIT_SEED_BASE), default="train", help="train/val/test, or heldout: scenes with held-out colour-shape pairs")
    q.add_argument("--seed", type=int_in(0, SPLIT_SIZE - 1), default=0, help="index of the first record within the split's seed range (default: 0)")
    q.add_argument("--size", type=int_in(16, MAX_IMAGE_SIZE), help="image size in pixels (default: the config's image_size, 64)")
    q.add_argument("--format", choices=FORMATS, default="folder", help="folder (PNG + metadata.jsonl) or wds (tar shards)")
    q.add_argument("--shard-size", type=int_in(1, MAX_RECORDS), default=10_000, help="records per tar shard (wds format)")
    q.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    _add_config_args(q)
    q.set_defaults(func=cmd_make)

    q = mw.add_parser("sheet", help="render a sample sheet of scenes, captions, questions and edits",
                      description="Write miniworld_sheet.png and miniworld_sheet.md: what the models learn from.")
    q.add_argument("--out", type=path_arg, default=Path("unilip-sheet"), help="output directory")
    _add_config_args(q)
    q.set_defaults(func=cmd_sheet)

    q = mw.add_parser("detect", help="print the scene graph detected in images", description=(
        "Recover the scene graph of each image from its pixels and print it as JSON, one line per image. "
        "Unreadable images are reported on stderr and the exit status is 1."))
    q.add_argument("images", nargs="+", type=path_arg, metavar="IMAGE", help="image files")
    q.add_argument("--config", type=path_arg, help="YAML file of mini-world settings (the world the images come from)")
    q.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="mini-world setting, e.g. --set max_objects=4")
    q.set_defaults(func=cmd_detect)
