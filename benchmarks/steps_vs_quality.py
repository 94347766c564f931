"""Quality against sampling steps and weight precision: the bundled mini pipeline scored on mini GenEval and mini
ImgEdit with each sampler at several step counts, then at the default sampler with bf16 and int8 weights, with the
seconds each evaluation took, so that the defaults are chosen by data (same seeds, same guidance, one run).

    python benchmarks/steps_vs_quality.py                   # about 18 min on 2 cores
    python benchmarks/steps_vs_quality.py --samples 1       # GenEval with 1 image per prompt: faster, noisier
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

SETTINGS = [("euler", 20, "fp32"), ("euler", 12, "fp32"), ("euler", 8, "fp32"), ("dpm", 20, "fp32"),
            ("dpm", 12, "fp32"), ("dpm", 8, "fp32"), ("unipc", 12, "fp32"), ("unipc", 8, "fp32"),
            ("euler", 20, "bf16"), ("euler", 20, "fp32+int8"), ("euler", 20, "bf16+int8")]


def main() -> None:
    import torch

    from unilip.config import get_preset
    from unilip.eval.geneval_mini import evaluate_geneval
    from unilip.eval.imgedit_mini import evaluate_imgedit
    from unilip.generation.flow import make_scheduler
    from unilip.pipeline import UniLIPPipeline

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="mini")
    ap.add_argument("--samples", type=int, default=4, help="GenEval images per prompt (default 4, as the benchmark)")
    ap.add_argument("--json", help="also write the rows here")
    args = ap.parse_args()
    world = None
    rows = []
    with torch.no_grad():
        for name, steps, mode in SETTINGS:
            parts = mode.split("+")
            pipe = UniLIPPipeline.from_pretrained(args.model, dtype=torch.bfloat16 if parts[0] == "bf16" else torch.float32)
            if "int8" in parts:
                pipe.quantize("int8")
            pipe.set_progress_bar_config(disable=True)
            world = world or dataclasses.replace(get_preset("mini").miniworld, image_size=pipe.image_size)
            pipe.scheduler = make_scheduler(name)
            t = time.perf_counter()
            gen = evaluate_geneval(pipe, world, samples=args.samples, steps=steps)
            t_gen = time.perf_counter() - t
            t = time.perf_counter()
            edit = evaluate_imgedit(pipe, world, steps=steps)
            t_edit = time.perf_counter() - t
            rows.append({"sampler": name, "steps": steps, "weights": mode, "geneval": gen["overall"], "geneval_s": t_gen,
                         "imgedit": edit["overall"], "imgedit_s": t_edit,
                         "geneval_by_category": gen.get("per_category"), "imgedit_by_type": edit.get("per_edit_type")})
            print(f"{name} {steps} {mode}: GenEval {gen['overall']:.3f} ({t_gen:.0f} s), ImgEdit {edit['overall']:.3f} ({t_edit:.0f} s)",
                  flush=True)
    print("\n| sampler | steps | weights | GenEval-mini | ImgEdit-mini | GenEval s | ImgEdit s |\n|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['sampler']} | {r['steps']} | {r['weights']} | {r['geneval']:.3f} | {r['imgedit']:.3f} | {r['geneval_s']:.0f} "
              f"| {r['imgedit_s']:.0f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
