"""Generation throughput: images/s of text-to-image (20 steps, CFG on: two DiT branches per step), with the time split
into conditions (MLLM + connector, once per call), the DiT's sampling loop and decoding, measured in one run.

Weights are random; the architectures are the real ones: ``mini`` (the bundled-size MLLM and tokenizer, mini SANA)
and ``1b`` (InternVL3-1B's shapes: InternViT-300M + Qwen2.5-0.5B, SANA 0.6B, DC-AE f32c32 decoder) at 448 px. Each
case runs in a fresh subprocess, so its peak memory (max RSS) is its own.

    python benchmarks/generation_speed.py            # mini and 1b (the 1b case takes a few minutes on 2 cores)
    python benchmarks/generation_speed.py --quick    # mini only
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

CASES = [("mini", 8, "fp32"), ("mini", 8, "bf16"), ("1b", 1, "fp32"), ("1b", 1, "bf16")]  # (preset, batch, precision)


def run_case(preset: str, batch: int, precision: str, steps: int) -> dict:
    import torch

    from unilip.config import get_preset
    from unilip.generation.model import UniLIPGenerator
    from unilip.mllm.model import MLLM
    from unilip.pipeline import UniLIPPipeline
    from unilip.tokenizer import UniLIPTokenizer

    cfg = get_preset(preset)
    cfg.mllm.pretrained = cfg.tokenizer.decoder_pretrained = cfg.generator.dit_pretrained = None
    torch.manual_seed(0)
    t0 = time.perf_counter()
    gen = UniLIPGenerator(cfg, MLLM.from_config(cfg), UniLIPTokenizer.from_config(cfg)).eval()
    pipe = UniLIPPipeline(gen, progress=False)
    build_s = time.perf_counter() - t0
    prompts = ["a large red circle above two small blue squares"] * batch
    dtype = torch.bfloat16 if precision == "bf16" else None

    def autocast():
        return torch.autocast("cpu", dtype=dtype) if dtype else torch.autocast("cpu", enabled=False)

    with torch.no_grad(), autocast():
        pipe(prompts[:1], num_inference_steps=1, generator=torch.Generator().manual_seed(0), output_type="pt")  # warm-up
        t = time.perf_counter()
        cond = gen.conditions(prompts)
        gen.conditions(["Generate an image."] * batch)
        cond_s = time.perf_counter() - t
        t = time.perf_counter()
        pipe(prompts, num_inference_steps=steps, guidance_scale=3.0, generator=torch.Generator().manual_seed(0),
             output_type="pt")
        total_s = time.perf_counter() - t
        z = torch.randn(batch, *cfg.latent_shape())
        t = time.perf_counter()
        gen.images(z)
        decode_s = time.perf_counter() - t
    del cond
    return {"preset": preset, "batch": batch, "precision": precision, "steps": steps, "build_s": build_s,
            "images_per_s": batch / total_s, "seconds_per_image": total_s / batch,
            "share_conditions": cond_s / total_s, "share_decode": decode_s / total_s,
            "share_dit": 1 - (cond_s + decode_s) / total_s,
            "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="the mini cases only")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--case", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.case:
        preset, batch, precision = args.case.split(",")
        print(json.dumps(run_case(preset, int(batch), precision, args.steps)))
        return
    rows = []
    for preset, batch, precision in CASES:
        if args.quick and preset != "mini":
            continue
        out = subprocess.run([sys.executable, __file__, "--case", f"{preset},{batch},{precision}", "--steps", str(args.steps)],
                             capture_output=True, text=True)
        if out.returncode:
            print(out.stderr[-2000:], file=sys.stderr)
            continue
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"| case | images/s | s/image | conditions | DiT loop | decode | peak RSS |  ({args.steps} steps, CFG on)")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['preset']}, batch {r['batch']}, {r['precision']} | {r['images_per_s']:.3g} | {r['seconds_per_image']:.3g} "
              f"| {100 * r['share_conditions']:.0f} % | {100 * r['share_dit']:.0f} % | {100 * r['share_decode']:.0f} % "
              f"| {r['peak_rss_gib']:.1f} GiB |")


if __name__ == "__main__":
    main()
