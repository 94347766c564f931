"""The detector's accuracy on clean, noisy and blurred renders (the numbers in the README).

Run: python benchmarks/detector_accuracy.py [--n 500]. Deterministic: same numbers every run.
"""

import argparse

from unilip.data.miniworld import MiniWorldConfig, detector_accuracy
from unilip.data.miniworld.config import PALETTE, SHAPES

CONDITIONS = [("clean", 0, 0), ("noise std 16", 16, 0), ("noise std 32", 32, 0), ("blur sigma 1.0", 0, 1.0),
              ("blur sigma 1.5", 0, 1.5), ("noise 16 + blur 1.0", 16, 1.0)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=500)
    n = ap.parse_args().n
    worlds = {
        "default (3 shapes, 6 colours, 1-3 objects)": MiniWorldConfig(),
        "hardest (6 shapes, 10 colours, 1-6 objects)": MiniWorldConfig(max_objects=6, shapes=SHAPES, colors=tuple(PALETTE)),
    }
    print(f"{n} test-split scenes per cell; object accuracy / exact scenes")
    print(f"{'condition':22s} " + " ".join(f"{w:>46s}" for w in worlds))
    for name, noise, blur in CONDITIONS:
        cells = []
        for cfg in worlds.values():
            r = detector_accuracy(cfg, n=n, noise_std=noise, blur_sigma=blur)
            cells.append(f"{100 * r['object_accuracy']:.1f} % / {100 * r['scene_exact']:.1f} %")
        print(f"{name:22s} " + " ".join(f"{c:>46s}" for c in cells))


if __name__ == "__main__":
    main()
