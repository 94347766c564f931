"""Latency of each tab of ``unilip serve`` on the bundled mini weights: the handler a tab's button runs, timed
in-process (no browser, no HTTP), median and spread over a few runs after one warm-up; plus the one-off model load.

Each tab runs with the page's defaults: Reconstruct and Ask on a 64 px mini-world scene (Ask with both encoders),
Generate two images at 20 steps (guidance 2, the mini generator's config), Edit one image at 20 steps.

    python benchmarks/serve_latency.py              # 5 runs per tab
    python benchmarks/serve_latency.py --runs 11 --threads 1
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="timed runs per tab (after one warm-up)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    args = parser.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from unilip.serve import handlers as h

    models = h.DemoModels.load("mini", "cpu")
    with tempfile.TemporaryDirectory() as tmp:
        ex = h.make_examples(models, tmp, n=1)
        image, question, _ = ex.questions[0]
        edit_image, instruction = ex.edits[0]
        tabs = {
            "reconstruct": lambda: h.reconstruct(models, ex.images[0]),
            "ask (original encoder)": lambda: h.ask(models, image, question, "original"),
            "ask (UniLIP encoder)": lambda: h.ask(models, image, question, "unilip"),
            "generate (2 images, 20 steps)": lambda: h.generate(models, ex.prompts[0], 20, 2.0, 0, 2),
            "edit (20 steps)": lambda: h.edit(models, edit_image, instruction, 20, 2.0, 0),
        }
        results = {"load_s": round(models.seconds_to_load, 2), "threads": torch.get_num_threads(), "runs": args.runs,
                   "tabs": {}}
        for name, fn in tabs.items():
            fn()  # warm-up: first calls allocate and pick kernels
            times = []
            for _ in range(args.runs):
                t0 = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t0)
            results["tabs"][name] = {"median_s": round(statistics.median(times), 3), "min_s": round(min(times), 3),
                                     "max_s": round(max(times), 3)}
    print(f"models loaded in {results['load_s']} s; {results['threads']} torch threads; {args.runs} runs per tab")
    print(f"{'tab':32s} {'median':>8s} {'min':>8s} {'max':>8s}")
    for name, r in results["tabs"].items():
        print(f"{name:32s} {r['median_s']:7.3f}s {r['min_s']:7.3f}s {r['max_s']:7.3f}s")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
