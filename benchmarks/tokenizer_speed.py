"""Tokenizer throughput: encode, decode and train-step images/s, peak memory, and achieved FLOP/s as a fraction of
a matmul peak measured in the same run.

Each case runs in a fresh subprocess so its peak memory (max RSS on CPU, max allocated on CUDA) is its own. Weights
are random; the architectures are the real ones (``mini``, and ``1b`` = InternViT-300M + D 896 + DC-AE f32c32).
FLOPs are counted with ``torch.utils.flop_counter`` on the meta device (no compute), for one image.

    python benchmarks/tokenizer_speed.py                  # the CPU table (several minutes: 1b at 448 is slow)
    python benchmarks/tokenizer_speed.py --quick          # mini only
    python benchmarks/tokenizer_speed.py --device cuda    # the 1b cases in bf16 with gradient checkpointing on a GPU
    python benchmarks/tokenizer_speed.py --compile-cases  # eager vs compiled blocks, for the train step
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

CASES = [  # (preset, image size, batch size, precision): bf16 = autocast over fp32 weights, bf16w = bf16 weights;
    # a trailing "c" (fp32c, bf16c) = the same with every block compiled (regional torch.compile, --compile-cases)
    ("mini", 64, 32, "fp32"),
    ("mini", 64, 32, "bf16"),
    ("mini", 64, 32, "bf16w"),
    ("1b", 224, 2, "fp32"),
    ("1b", 224, 2, "bf16"),
    ("1b", 224, 2, "bf16w"),
    ("1b", 448, 1, "fp32"),
    ("1b", 448, 1, "bf16"),
    ("1b", 448, 1, "bf16w"),
]
COMPILE_CASES = [("mini", 64, 32, "fp32"), ("mini", 64, 32, "fp32c"), ("1b", 224, 2, "bf16"), ("1b", 224, 2, "bf16c")]
BLOCKS = ("InternVLVisionLayer", "ResidualMLPBlock", "ResBlock", "EfficientViTBlock")  # what regional compile compiles
GPU_CASES = [("1b", 448, 16, "bf16"), ("1b", 224, 64, "bf16")]


def build(preset: str, size: int, device: str):
    import torch

    from unilip.config import get_preset
    from unilip.tokenizer import UniLIPTokenizer

    cfg = get_preset(preset)
    cfg.mllm.pretrained = None
    cfg.tokenizer.decoder_pretrained = None
    torch.manual_seed(0)
    model = UniLIPTokenizer.from_config(cfg).to(device)
    return model


def count_flops(preset: str, size: int) -> dict[str, float]:
    """FLOPs for one image: encode, decode, and a train step (forward + backward + the distillation teacher's forward)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        model = build(preset, size, "meta")
        teacher = build(preset, size, "meta").encoder
        x = torch.rand(1, 3, size, size)
    out = {}
    with FlopCounterMode(display=False) as c:
        teacher(x)
    out["encode_features"] = c.get_total_flops()
    with FlopCounterMode(display=False) as c:
        z = model.encode(x)
    out["encode"] = c.get_total_flops()
    with FlopCounterMode(display=False) as c:
        model.decode(z, size=size)
    out["decode"] = c.get_total_flops()
    with FlopCounterMode(display=False) as c:
        model(x)
    forward = c.get_total_flops()
    # A train step = forward + backward (2x forward: grads of activations and of weights) + the teacher's forward.
    # Counted from the forward because torch's counter over-counts grouped-convolution backward passes.
    out["train"] = 3 * forward + out["encode_features"]
    return out


def matmul_peak(device: str, dtype_name: str) -> float:
    """FLOP/s of a large square matmul in this process: the yardstick for 'achieved FLOP/s'."""
    import torch

    dtype = torch.bfloat16 if dtype_name.startswith("bf16") else torch.float32
    n = 2048 if device == "cpu" else 8192
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    reps = 5 if device == "cpu" else 50
    sync(device)
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    sync(device)
    return 2 * n**3 * reps / (time.perf_counter() - t)


def sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def timed(fn, device: str, reps: int) -> float:
    fn()  # warm-up (allocations, kernel selection)
    sync(device)
    t = time.perf_counter()
    for _ in range(reps):
        fn()
    sync(device)
    return (time.perf_counter() - t) / reps


def run_case(preset: str, size: int, batch: int, precision: str, device: str, checkpointing: bool) -> dict:
    import copy

    import torch

    model = build(preset, size, device)
    teacher = copy.deepcopy(model.encoder).requires_grad_(False).eval()
    compiled = precision.endswith("c")
    precision = precision.removesuffix("c")
    if compiled:  # each block compiled once and reused by its siblings (same code, same shapes)
        for module in [*model.modules(), *teacher.modules()]:
            if type(module).__name__ in BLOCKS:
                module.compile(dynamic=False)  # dynamic shapes failed in inductor here (torch 2.13)
    if checkpointing:
        model.enable_gradient_checkpointing()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    x = torch.rand(batch, 3, size, size, device=device)
    dtype = torch.bfloat16 if precision == "bf16" else None
    if precision == "bf16w":  # inference with bf16 weights (--dtype bf16): no training step (AdamW wants fp32 masters)
        model.to(torch.bfloat16)

    def autocast():
        return torch.autocast(device, dtype=dtype) if dtype else torch.autocast(device, enabled=False)

    with torch.no_grad(), autocast():
        z = model.encode(x)
    reps = 3 if size <= 64 or device == "cuda" else 1
    reps = max(reps, 3) if compiled else reps  # the warm-up call compiles; time steady steps

    def encode():
        with torch.no_grad(), autocast():
            model.encode(x)

    def decode():
        with torch.no_grad(), autocast():
            model.decode(z, size=size)

    def train_step():
        with autocast():
            out = model(x)
            with torch.no_grad():
                target = teacher(x)
            loss = ((out.reconstruction.float() - x) ** 2).mean() + ((out.features.float() - target.float()) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    result = {"preset": preset, "size": size, "batch": batch, "precision": precision + "c" * compiled, "device": device,
              "checkpointing": checkpointing}
    for name, fn in (("encode", encode), ("decode", decode), ("train", train_step)):
        if name == "train" and precision == "bf16w":
            result["train_img_s"] = float("nan")
            continue
        result[f"{name}_img_s"] = batch / timed(fn, device, reps)
    if device == "cuda":
        result["peak_mem_gib"] = torch.cuda.max_memory_allocated() / 2**30
    else:
        result["peak_mem_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    result["matmul_peak_flops"] = matmul_peak(device, precision)
    return result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="mini only")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--compile-cases", action="store_true", help="eager vs compiled blocks (mini fp32, 1b 224 bf16)")
    ap.add_argument("--case", help=argparse.SUPPRESS)  # internal: run one case, print JSON
    args = ap.parse_args()
    if args.case:
        preset, size, batch, precision, ckpt = args.case.split(",")
        print(json.dumps(run_case(preset, int(size), int(batch), precision, args.device, ckpt == "1")))
        return
    cases = GPU_CASES if args.device == "cuda" else [c for c in CASES if not args.quick or c[0] == "mini"]
    cases = [c for c in COMPILE_CASES if not args.quick or c[0] == "mini"] if args.compile_cases else cases
    flops_cache: dict[tuple[str, int], dict[str, float]] = {}
    header = f"{'case':28s} {'encode img/s':>12s} {'decode img/s':>12s} {'train img/s':>12s} {'peak GiB':>9s} {'train % of matmul peak':>23s}"
    print(header)
    for preset, size, batch, precision in cases:
        ckpt = args.device == "cuda" and size >= 448
        spec = f"{preset},{size},{batch},{precision},{int(ckpt)}"
        proc = subprocess.run([sys.executable, __file__, "--device", args.device, "--case", spec], capture_output=True, text=True)
        name = f"{preset} {size}px b{batch} {precision}{' ckpt' if ckpt else ''}"
        if proc.returncode != 0:
            print(f"{name:28s} failed: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode}")
            continue
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        if (preset, size) not in flops_cache:
            flops_cache[(preset, size)] = count_flops(preset, size)
        achieved = flops_cache[(preset, size)]["train"] * r["train_img_s"]
        print(f"{name:28s} {r['encode_img_s']:12.2f} {r['decode_img_s']:12.2f} {r['train_img_s']:12.3f} {r['peak_mem_gib']:9.2f} "
              f"{100 * achieved / r['matmul_peak_flops']:22.1f}%")
    print("\nFLOPs per image (G): " + ", ".join(f"{p} {s}px: " + " / ".join(f"{k} {v / 1e9:.1f}" for k, v in f.items())
                                            for (p, s), f in flops_cache.items()))


if __name__ == "__main__":
    main()
