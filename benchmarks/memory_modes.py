"""Memory per precision mode on this machine (CPU RSS): the 1b pipeline (random weights, real shapes) loaded as fp32,
bf16, fp32 + int8 or bf16 + int8 weights, with what stays resident after loading and the peak during one 448 px
text-to-image call (20 steps, CFG), and that call's seconds. Each mode runs in a fresh subprocess.

    python benchmarks/memory_modes.py                 # 1b (about 8 min on 2 cores)
    python benchmarks/memory_modes.py --preset mini   # seconds
    python benchmarks/memory_modes.py --offload-table # the weights an accelerator holds at once, per offload mode

Accelerator memory (model offload, GPU peaks) is measured by ``benchmarks/official_checkpoint_gpu.py`` on a GPU; the
offload table computes, from the real module shapes (built on the meta device), the weight bytes that are on the
execution device at the worst moment of a call under each offload mode (activations not included).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time

MODES = ("fp32", "bf16", "fp32+int8", "bf16+int8")


def rss_gib() -> float:
    """This process's resident memory now (``/proc/self/statm``), GiB."""
    import os

    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**30


def tensor_bytes(module) -> int:
    """Bytes the module's parameters and buffers hold (a quantized tensor counts its int8 data and its scales)."""
    def nbytes(t) -> int:
        if hasattr(t, "__tensor_flatten__"):
            names, _ = t.__tensor_flatten__()
            return sum(nbytes(getattr(t, n)) for n in names)
        return t.numel() * t.element_size()

    seen, total = set(), 0
    for t in [*module.parameters(), *module.buffers()]:
        if id(t) not in seen:
            seen.add(id(t))
            total += nbytes(t)
    return total


def run_mode(preset: str, mode: str, steps: int) -> dict:
    import ctypes
    import gc

    import torch

    from unilip.config import get_preset
    from unilip.generation.model import UniLIPGenerator
    from unilip.mllm.model import MLLM
    from unilip.pipeline import UniLIPPipeline
    from unilip.tokenizer import UniLIPTokenizer

    cfg = get_preset(preset)
    cfg.mllm.pretrained = cfg.tokenizer.decoder_pretrained = cfg.generator.dit_pretrained = None
    torch.manual_seed(0)
    parts = mode.split("+")
    dtype = torch.bfloat16 if parts[0] == "bf16" else torch.float32
    torch.set_default_dtype(dtype)  # the weights are made in their own dtype: no fp32 copy ever exists in bf16 modes
    gen = UniLIPGenerator(cfg, MLLM.from_config(cfg), UniLIPTokenizer.from_config(cfg)).to(dtype)
    torch.set_default_dtype(torch.float32)
    pipe = UniLIPPipeline(gen.eval().requires_grad_(False), progress=False)
    if "int8" in parts:
        pipe.quantize("int8")
    with torch.no_grad():  # warm-up: kernel choice and first allocations are not the call's
        pipe("a red circle", num_inference_steps=1, output_type="pt")
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)  # hand freed heap pages back, so RSS shows what is alive
    weights = tensor_bytes(pipe.generator) / 2**30
    resident = rss_gib()
    peak, done = [resident], threading.Event()

    def watch():
        while not done.is_set():
            peak.append(rss_gib())
            time.sleep(0.01)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    t = time.perf_counter()
    with torch.no_grad():
        images = pipe("a red circle above two blue squares", num_inference_steps=steps, guidance_scale=3.0,
                      generator=torch.Generator().manual_seed(0), output_type="pt").images
    seconds = time.perf_counter() - t
    done.set()
    watcher.join()
    return {"preset": preset, "mode": mode, "weights_gib": weights, "resident_gib": resident, "peak_gib": max(peak), "seconds": seconds,
            "finite": bool(torch.isfinite(images).all())}


def offload_table(preset: str, dtype_name: str) -> None:
    """Weight GiB on the execution device at the worst moment of an edit call: no offload = everything; model offload
    = the largest stage (encoder | MLLM + queries + connector | DiT | decoder); sequential = what is not offloaded
    (queries, projections, the offloaded modules' buffers) + the largest single module whose own weights load at once."""
    import torch

    from unilip.config import get_preset
    from unilip.generation.model import UniLIPGenerator
    from unilip.mllm.model import MLLM
    from unilip.pipeline import UniLIPPipeline
    from unilip.tokenizer import UniLIPTokenizer

    cfg = get_preset(preset)
    cfg.mllm.pretrained = cfg.tokenizer.decoder_pretrained = cfg.generator.dit_pretrained = None
    dtype = torch.bfloat16 if dtype_name == "bf16" else torch.float32
    with torch.device("meta"):
        gen = UniLIPGenerator(cfg, MLLM.from_config(cfg), UniLIPTokenizer.from_config(cfg)).to(dtype)
    pipe = UniLIPPipeline(gen, progress=False)
    gib = lambda m: tensor_bytes(m) / 2**30  # noqa: E731
    own = lambda m: sum(t.numel() * t.element_size() for t in m.parameters(recurse=False)) / 2**30  # noqa: E731
    stages = [[gen.tokenizer.encoder], [gen.conditioner, gen.connector], [gen.dit], [gen.pixel_decoder]]
    model_peak = max(sum(gib(m) for m in stage) for stage in stages)
    units = pipe.sequential_offload_units()
    offloaded = {id(p) for u in units for p in u.parameters()}
    resident = sum(p.numel() * p.element_size() for p in gen.parameters() if id(p) not in offloaded) / 2**30
    resident += sum(b.numel() * b.element_size() for u in units for b in u.buffers()) / 2**30
    largest = max(own(m) for u in units for m in u.modules())
    print(f"| {preset} {dtype_name} weights on the device | no offload | model offload | sequential offload |")
    print("|---|---|---|---|")
    print(f"| GiB | {gib(gen):.2f} | {model_peak:.2f} | {resident + largest:.3f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="1b")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--mode", help=argparse.SUPPRESS)
    ap.add_argument("--offload-table", action="store_true", help="the computed table of weights on the device per "
                    "offload mode (no model is run)")
    ap.add_argument("--dtype", default="bf16", help="for --offload-table: bf16 or fp32")
    args = ap.parse_args()
    if args.offload_table:
        offload_table(args.preset, args.dtype)
        return
    if args.mode:
        print(json.dumps(run_mode(args.preset, args.mode, args.steps)))
        return
    print(f"| {args.preset} weights | tensors | resident after load | peak during a call | s per image |  ({args.steps} steps, CFG)")
    print("|---|---|---|---|---|")
    for mode in MODES:
        proc = subprocess.run([sys.executable, __file__, "--preset", args.preset, "--steps", str(args.steps), "--mode", mode],
                              capture_output=True, text=True)
        if proc.returncode:
            print(f"| {mode} | failed: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode} |")
            continue
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"| {mode} | {r['weights_gib']:.2f} GiB | {r['resident_gib']:.2f} GiB | {r['peak_gib']:.2f} GiB | {r['seconds']:.1f} |",
              flush=True)


if __name__ == "__main__":
    main()
