"""How fast the mini world is made: scenes per second for each stage, and each stage's share of a dataset write.

Run: python benchmarks/miniworld_speed.py [--n 2000]. Machines here are noisy, so compare the ratios printed in
one run, not absolute numbers across runs.
"""

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from unilip.data.miniworld import MiniWorldConfig, caption, detect, render, sample_split
from unilip.data.miniworld.dataset import _png, make_records, write_dataset


def rate(fn, n: int) -> float:
    t = time.perf_counter()
    fn()
    return n / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    n = ap.parse_args().n
    cfg = MiniWorldConfig()
    scenes = sample_split(cfg, "train", 0, n)
    rng = np.random.default_rng(0)
    rates = {
        "sample scene graph": rate(lambda: sample_split(cfg, "train", 0, n), n),
        "render 64 px": rate(lambda: [render(s, cfg) for s in scenes], n),
        "encode PNG": rate(lambda: [_png(s, cfg, 64) for s in scenes], n),
        "caption": rate(lambda: [caption(s, rng) for s in scenes], n),
        "vqa records (no pixels)": rate(lambda: list(make_records("vqa", cfg, "train", 0, n)), n),
        "edit records (no pixels)": rate(lambda: list(make_records("edit", cfg, "train", 0, n)), n),
        "detect": rate(lambda: [detect(render(s, cfg), cfg) for s in scenes[: n // 4]], n // 4),
    }
    with tempfile.TemporaryDirectory() as tmp:
        for task in ("images", "captions", "vqa", "edit"):
            for fmt in ("folder", "wds"):
                rates[f"write {task} ({fmt})"] = rate(lambda: write_dataset(Path(tmp) / f"{task}-{fmt}", task, n, cfg, fmt=fmt), n)
    base = rates["write images (folder)"]
    print(f"{'stage':32s} {'scenes/s':>10s} {'x write images':>15s}")
    for name, r in rates.items():
        print(f"{name:32s} {r:10.0f} {r / base:15.2f}")


if __name__ == "__main__":
    main()
