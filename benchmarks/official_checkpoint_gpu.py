"""The published-checkpoint path at full size, for a machine with a CUDA GPU: write a random UniLIP-1B in the official
layout, convert it with ``convert_official_generator``, load the converted pipeline in bf16 and generate at 448 px
(20 steps, CFG), reporting conversion time, seconds per image and peak GPU memory: one JSON line per mode.

    python benchmarks/official_checkpoint_gpu.py                       # 1b on cuda: bf16, bf16+offload, bf16+seqoffload, bf16+int8, fp32
    python benchmarks/official_checkpoint_gpu.py --preset mini --device cpu --dtype fp32   # a quick check anywhere

Weights are random (no real checkpoint can be fetched here); the shapes, names and code path are the real ones. The
text tokenizer is the mini world's (a small vocabulary): it changes the embedding table's size, not the speed.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="1b", choices=["mini", "1b", "2b"])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--modes", default="bf16,bf16+offload,bf16+seqoffload,bf16+int8,fp32",
                        help="comma-separated: a dtype (bf16, fp32), optionally +offload (model CPU offload) or +seqoffload (sequential, per layer), and/or +int8")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()

    import torch

    from unilip.config import get_preset
    from unilip.convert import convert_official_generator, export_official_generator
    from unilip.generation.model import UniLIPGenerator
    from unilip.pipeline import UniLIPPipeline
    from unilip.mllm.model import MLLM
    from unilip.tokenizer import UniLIPTokenizer

    cfg = get_preset(args.preset)
    cfg.mllm.pretrained = cfg.tokenizer.decoder_pretrained = cfg.generator.dit_pretrained = None
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        gen = UniLIPGenerator(cfg, MLLM.from_config(cfg), UniLIPTokenizer.from_config(cfg)).eval()
        export_official_generator(UniLIPPipeline(gen), Path(tmp) / "official")
        del gen
        write_s = time.perf_counter() - t
        t = time.perf_counter()
        convert_official_generator(Path(tmp) / "official", Path(tmp) / "ours", cfg if args.preset == "mini" else None)
        convert_s = time.perf_counter() - t
        for mode in args.modes.split(","):
            run_mode(args, mode, Path(tmp) / "ours", write_s, convert_s)


def run_mode(args, mode: str, directory: Path, write_s: float, convert_s: float) -> None:
    import gc

    import torch

    from unilip.pipeline import UniLIPPipeline

    parts = mode.split("+")
    dtype = torch.bfloat16 if parts[0] == "bf16" else torch.float32
    cuda = args.device.startswith("cuda")
    if cuda:
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    pipe = UniLIPPipeline.from_pretrained(directory, dtype=dtype)
    if "int8" in parts:
        pipe.quantize("int8")
    if "seqoffload" in parts:
        pipe = pipe.enable_sequential_cpu_offload(args.device)
    else:
        pipe = pipe.enable_model_cpu_offload(args.device) if "offload" in parts else pipe.to(args.device)
    prompts = ["a corgi wearing sunglasses on a skateboard"] * args.batch
    pipe(prompts[:1], num_inference_steps=2, output_type="pt")  # warm-up
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t = time.perf_counter()
    images = pipe(prompts, num_inference_steps=args.steps, guidance_scale=4.5, output_type="pt",
                  generator=torch.Generator().manual_seed(0)).images
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t
    print(json.dumps({
        "preset": args.preset, "device": torch.cuda.get_device_name() if cuda else args.device, "mode": mode,
        "image_size": images.shape[-1], "batch": args.batch, "steps": args.steps, "write_official_s": round(write_s, 1),
        "convert_s": round(convert_s, 1), "seconds_per_image": round(seconds / args.batch, 3),
        "peak_gpu_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None,
        "finite": bool(torch.isfinite(images).all())}), flush=True)
    del pipe, images


if __name__ == "__main__":
    main()
