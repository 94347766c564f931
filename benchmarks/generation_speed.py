"""Generation throughput before and after the speed levers, measured in one run: images/s of text-to-image and of
editing (20 steps, CFG on), the time split (conditions, DiT loop, decode), achieved FLOP/s over a matmul peak
measured in the same process, peak memory, and how far the fast images are from the fp32 ones.

Modes (each case runs in a fresh subprocess, so its peak RSS is its own):

- ``before``: fp32 weights, the cross-attention keys and values recomputed at every step (the code before the
  levers: ``generation.flow.conditions_cached`` replaced by a no-op).
- ``cache``: fp32, the conditions' keys and values computed once per call (``conditions_cached``).
- ``bf16``: bf16 weights end to end (``UniLIPPipeline.from_pretrained(dtype=torch.bfloat16)``, ``--dtype bf16``) and
  the cache; the sampler's latent and solver stay fp32.
- ``bf16c``: ``bf16`` and ``pipe.compile()`` (``--compile``: the decoder), timed after the
  warm-up calls that compile (their seconds are reported as ``compile_s``); FLOPs are not counted through compiled
  code (the bf16 count applies).

Weights are random; the architectures are the real ones: ``mini``; ``reduced`` (InternVL3-1B's and SANA 0.6B's widths
at 448 px, 6 ViT / 6 LLM / 6 DiT layers, the full DC-AE decoder); ``1b`` (InternViT-300M + Qwen2.5-0.5B, SANA 0.6B).

    python benchmarks/generation_speed.py            # every case (about 12 min on 2 cores)
    python benchmarks/generation_speed.py --quick    # mini only
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PRESETS = {"mini": (8, []), "reduced": (1, ["mllm.vision.num_layers=6", "mllm.language.num_layers=6",
                                             "generator.connector_layers=2", "generator.dit_num_layers=6"]),
           "1b": (1, [])}
MODES = ("before", "cache", "bf16", "bf16c")
CASES = [(p, m) for p in PRESETS for m in MODES if not (p == "1b" and m == "cache") and not (p == "mini" and m == "bf16c")]
PROMPT = "a large red circle above two small blue squares"


def matmul_peak(dtype) -> float:
    """FLOP/s of a 2048-square matmul in this process, in the weights' dtype: the yardstick for utilisation."""
    import torch

    a, b = torch.randn(2048, 2048, dtype=dtype), torch.randn(2048, 2048, dtype=dtype)
    a @ b
    t = time.perf_counter()
    for _ in range(5):
        a @ b
    return 2 * 2048**3 * 5 / (time.perf_counter() - t)


def run_case(preset: str, mode: str, steps: int, out: str) -> dict:
    import contextlib

    import numpy as np
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    import unilip.generation.flow as flow
    from unilip.config import UniLIPConfig, load_config
    from unilip.generation.model import UniLIPGenerator
    from unilip.mllm.model import MLLM
    from unilip.pipeline import UniLIPPipeline
    from unilip.tokenizer import UniLIPTokenizer

    batch, overrides = PRESETS[preset]
    cfg = load_config(UniLIPConfig, None, overrides, preset="1b" if preset == "reduced" else preset)
    cfg.mllm.pretrained = cfg.tokenizer.decoder_pretrained = cfg.generator.dit_pretrained = None
    if mode == "before":
        flow.conditions_cached = lambda dit: contextlib.nullcontext(dit)
    torch.manual_seed(0)
    t0 = time.perf_counter()
    gen = UniLIPGenerator(cfg, MLLM.from_config(cfg), UniLIPTokenizer.from_config(cfg)).eval().requires_grad_(False)
    dtype = torch.bfloat16 if mode.startswith("bf16") else torch.float32
    gen.to(dtype)
    pipe = UniLIPPipeline(gen, progress=False)
    if mode == "bf16c":
        pipe.compile()
    build_s = time.perf_counter() - t0

    spent = {"conditions": 0.0, "source": 0.0, "decode": 0.0}

    def timed(name, fn):
        def wrapper(*args, **kwargs):
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[name] += time.perf_counter() - t
        return wrapper

    gen.conditions = timed("conditions", gen.conditions)
    gen.source_features = timed("source", gen.source_features)
    gen.images = timed("decode", gen.images)
    source = torch.rand(3, cfg.tokenizer.image_size, cfg.tokenizer.image_size, generator=torch.Generator().manual_seed(1))

    def call(n_steps, edit):
        return pipe([PROMPT] * batch, image=source if edit else None, num_inference_steps=n_steps, guidance_scale=3.0,
                    generator=[torch.Generator().manual_seed(i) for i in range(batch)], output_type="pt").images

    result = {"preset": preset, "mode": mode, "batch": batch, "steps": steps, "build_s": build_s}
    with torch.no_grad():
        t = time.perf_counter()
        call(1, False)  # warm-up: allocations, oneDNN kernel choice (and compilation)
        if mode == "bf16c":
            call(1, True)  # an edit's conditions are longer: their shapes compile too
        result["compile_s"] = time.perf_counter() - t
        for task, edit in (("t2i", False), ("edit", True)):
            best = None
            for _ in range(3 if preset == "mini" else 1):  # the mini calls take a fraction of a second: best of 3
                for k in spent:
                    spent[k] = 0.0
                t = time.perf_counter()
                images = call(steps, edit)
                total = time.perf_counter() - t
                if best is None or total < best[0]:
                    best = total, dict(spent)
            total, split = best
            np.save(f"{out}/{preset}-{mode}-{task}.npy", images.float().numpy())
            flops = []
            for n in (1, 2) if mode != "bf16c" else ():  # FLOPs of a call = f(1) + (steps - 1) * (f(2) - f(1))
                with FlopCounterMode(display=False) as counter:
                    call(n, edit)
                flops.append(counter.get_total_flops())
            total_flops = flops[0] + (steps - 1) * (flops[1] - flops[0]) if flops else float("nan")
            result[task] = {"images_per_s": batch / total, "seconds": total,
                            "share_conditions": (split["conditions"] + split["source"]) / total,
                            "share_decode": split["decode"] / total,
                            "share_dit": 1 - (split["conditions"] + split["source"] + split["decode"]) / total,
                            "gflops": total_flops / 1e9, "achieved_flops": total_flops / total}
    result["matmul_peak_flops"] = matmul_peak(dtype)
    result["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="the mini cases only")
    ap.add_argument("--presets", help="comma-separated subset of mini,reduced,1b")
    ap.add_argument("--modes", help="comma-separated subset of the modes (the ratio column needs before)")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--case", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.case:
        preset, mode = args.case.split(",")
        print(json.dumps(run_case(preset, mode, args.steps, args.out)))
        return
    rows = {}
    with tempfile.TemporaryDirectory() as out:
        for preset, mode in CASES:
            if (args.quick and preset != "mini" or args.presets and preset not in args.presets.split(",")
                    or args.modes and mode not in args.modes.split(",")):
                continue
            proc = subprocess.run([sys.executable, __file__, "--case", f"{preset},{mode}", "--steps", str(args.steps),
                                   "--out", out], capture_output=True, text=True)
            if proc.returncode:
                print(f"{preset} {mode} failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
                continue
            rows[preset, mode] = json.loads(proc.stdout.strip().splitlines()[-1])
        import numpy as np

        for (preset, mode), r in rows.items():  # the fast images against the fp32 ones, same seeds
            for task in ("t2i", "edit"):
                if not (Path(out) / f"{preset}-before-{task}.npy").is_file():
                    r[task]["max_abs_diff"] = r[task]["mean_abs_diff"] = float("nan")
                    continue
                ref, got = (np.load(Path(out) / f"{preset}-{m}-{task}.npy") for m in ("before", mode))
                r[task]["max_abs_diff"], r[task]["mean_abs_diff"] = float(np.abs(got - ref).max()), float(np.abs(got - ref).mean())
    print(f"| case | task | images/s | x before | conditions | DiT loop | decode | % of matmul peak | vs fp32 images "
          f"(max / mean abs, [0, 1]) | peak RSS |  ({args.steps} steps, CFG on)")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for (preset, mode), r in rows.items():
        for task in ("t2i", "edit"):
            t, base = r[task], rows.get((preset, "before"), r)[task]
            print(f"| {preset} b{r['batch']} {mode} | {task} | {t['images_per_s']:.3g} | {t['images_per_s'] / base['images_per_s']:.2f} "
                  f"| {100 * t['share_conditions']:.0f} % | {100 * t['share_dit']:.0f} % | {100 * t['share_decode']:.0f} % "
                  f"| {100 * t['achieved_flops'] / r['matmul_peak_flops']:.0f} % | {t['max_abs_diff']:.3f} / {t['mean_abs_diff']:.4f} "
                  f"| {r['peak_rss_gib']:.1f} GiB |")
    print("\nGFLOP per call: " + ", ".join(f"{p} {m}: t2i {r['t2i']['gflops']:.0f}, edit {r['edit']['gflops']:.0f}"
                                         for (p, m), r in rows.items()))


if __name__ == "__main__":
    main()
