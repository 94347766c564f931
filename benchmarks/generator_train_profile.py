"""Where a training step of the mini generator spends its time, and how much the frozen pool and the optimizer save.

One run, one machine, the bundled mini MLLM and tokenizer, ``configs/generator/mini.yaml`` (batch 64, 30 % edits):

- ``before``: what a step did before the frozen pool: render the batch, encode the target latents and source
  features, one causal MLLM pass over prompt + queries with gradients through every position, connector, DiT;
- ``prefix``: the same rendering and frozen encoders, but the MLLM's prompt positions run once without gradients and
  only the queries run on their key/value cache (``Conditioner.prefix`` / ``extend``);
- ``pool``: ``pool=N``: the latents and prefixes of a fixed pool computed once, each step runs queries, connector
  and DiT only; then with fused AdamW and with a larger batch, first with the connector in one pass over the
  longest prompt's length, then (what training does) in chunks of 64 each trimmed to its longest prompt
  of the length-sorted batch (``UniLIPGenerator.conditions_of``).

Each variant reports ms per section, images/s and its ratio to ``before``; the FLOPs of a step (forward + backward,
``torch.utils.flop_counter``) over its time give the FLOP/s, set against the fp32 matmul peak measured here too.

    python benchmarks/generator_train_profile.py [--steps 8] [--pool 2048] [--compile] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

OVERRIDES = ["model.mllm.pretrained=mini", "tokenizer=mini", "eval_prompts=0"]


def matmul_peak(n: int = 1024, reps: int = 20) -> float:
    """GFLOP/s of a large fp32 matmul: the ceiling a step's FLOP/s is compared with."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n**3 * reps / (time.perf_counter() - t0) / 1e9


def one_pass_conditions(model, prompts, features):
    """The conditions as computed before the prefix split: prompt + queries in one causal pass, gradients through
    every position (a reference; `tests/generation/test_conditioner.py` checks the split equals it)."""
    from unilip.generation.connector import positions_from_mask
    from unilip.mllm.chat import IMG_CONTEXT

    c = model.conditioner
    tok = c.mllm.tokenizer
    enc = tok(c.prompts(prompts, features is not None), return_tensors="pt", padding=True)
    embeds = c.language_model.get_input_embeddings()(enc["input_ids"])
    image = enc["input_ids"] == tok.convert_tokens_to_ids(IMG_CONTEXT)
    if features is not None:
        embeds = embeds.masked_scatter(image[..., None], features)
    n = c.queries.shape[1]
    embeds = torch.cat([embeds, c.queries.expand(len(prompts), -1, -1)], 1)
    mask = torch.cat([enc["attention_mask"], torch.ones(len(prompts), n, dtype=torch.long)], 1)
    hidden = c.language_model(inputs_embeds=embeds, attention_mask=mask, position_ids=positions_from_mask(mask)).last_hidden_state
    if features is not None:
        image = torch.cat([image, torch.zeros(len(prompts), n, dtype=torch.bool)], 1)
        hidden = hidden.masked_scatter(image[..., None], features)
    return model.connector(hidden, mask), mask


class Timer:
    def __init__(self):
        self.ms = defaultdict(float)
        self.t = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.ms[name] += (now - self.t) * 1000
        self.t = now


def run_variant(task, variant: str, steps: int, batch_size: int, fused: bool, pool=None, chunked: bool = True) -> dict:
    """``chunked=False``: the connector in one pass over the batch's longest prompt (sorting then changes nothing)."""
    from unilip.generation.flow import flow_matching_loss
    from unilip.generation.model import CONDITION_CHUNK
    from unilip.train.ema import EMA
    from unilip.train.loop import build_optimizer
    from unilip.train.frozen_pool import FrozenPool

    model = task.model
    torch.manual_seed(0)
    opt = build_optimizer(task.param_groups(), task.cfg.optim)
    if fused:
        opt = torch.optim.AdamW(opt.param_groups, lr=task.cfg.optim.lr, fused=True)
    ema = EMA(model, 0.999)
    task.train_mode()
    timer, flops = Timer(), 0.0
    for i in range(steps + 2):
        if i == 2:  # two warm-up steps
            timer = Timer()
        first = i * batch_size
        if pool is None:
            batch = task.data.collate([task.data.make(p) for p in range(first, first + batch_size)])
            timer.lap("render")
            x0 = model.latents(batch["images"])
            timer.lap("target latents")
            k = 0 if batch["sources"] is None else batch["sources"].shape[0]
            features = model.source_features(batch["sources"])
            timer.lap("source features")
        else:
            batch = FrozenPool.collate([pool.item(p) for p in range(first, first + batch_size)])
            x0, prefix = batch["latents"], batch["prefix"]
            timer.lap("pool batch")
        counter = FlopCounterMode(display=False) if i == 1 else None
        with counter if counter is not None else nullcontext():
            if variant == "before":
                prompts = batch["prompts"]
                parts = [one_pass_conditions(model, prompts[: len(prompts) - k], None)]
                if k:
                    parts.append(one_pass_conditions(model, prompts[len(prompts) - k:], features))
                length = max(c.shape[1] for c, _ in parts)
                conditions = torch.cat([F.pad(c, (0, 0, 0, length - c.shape[1])) for c, _ in parts])
                mask = torch.cat([F.pad(m, (0, length - m.shape[1])) for _, m in parts])
                timer.lap("MLLM + connector")
            else:
                if pool is None:
                    prefix = model.prefix(batch["prompts"], batch["sources"])
                    timer.lap("MLLM prefix (no grad)")
                conditions, mask = model.conditions_of(prefix, chunk=CONDITION_CHUNK if chunked else batch_size)
                timer.lap("queries + connector")
            loss = flow_matching_loss(model.dit, x0, conditions, mask)
            timer.lap("DiT")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            timer.lap("backward")
        if counter is not None:
            flops = counter.get_total_flops()
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
        opt.step()
        timer.lap("AdamW" + (" (fused)" if fused else ""))
        ema.update(model)
        timer.lap("EMA")
    total = sum(timer.ms.values()) / steps
    return {"variant": variant, "batch": batch_size, "fused": fused, "ms_per_step": total,
            "images_per_s": batch_size / total * 1000, "train_gflop_per_step": flops / 1e9,
            "sections_ms": {k: v / steps for k, v in timer.ms.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--pool", type=int, default=2048, help="items in the frozen pool of the pooled variants")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--compile", action="store_true",
                        help="also the batch-256 pool variant with the connector and DiT under torch.compile "
                             "(inductor, dynamic shapes; two warm-up steps do not cover all the compilation: see the "
                             "compile time reported)")
    args = parser.parse_args()
    from unilip.train.frozen_pool import FrozenPool
    from unilip.train.generator import GeneratorTask, load_generator_config

    torch.manual_seed(0)
    task = GeneratorTask(load_generator_config("configs/generator/mini.yaml", OVERRIDES))
    peak = matmul_peak()
    results = [run_variant(task, "before", args.steps, 64, False), run_variant(task, "prefix", args.steps, 64, False)]
    t0 = time.perf_counter()
    pool = FrozenPool(task.model, task.data, args.pool, progress=False)
    build_ms_per_item = (time.perf_counter() - t0) * 1000 / args.pool
    for batch, fused in ((64, False), (64, True)):
        results.append(run_variant(task, "pool", args.steps, batch, fused, pool))
    results.append(run_variant(task, "pool, connector in one pass", args.steps, 256, True, pool, chunked=False))
    results.append(run_variant(task, "pool, length-sorted, connector in chunks of 64", args.steps, 256, True, pool))
    if args.compile:
        task.model.dit.compile(dynamic=True)
        task.model.connector.compile(dynamic=True)
        t0 = time.perf_counter()
        run_variant(task, "pool", 2, 256, True, pool)  # compile, and recompile once for the dynamic shapes
        compile_s = time.perf_counter() - t0
        r = run_variant(task, "pool + compile", args.steps, 256, True, pool)
        r["train_gflop_per_step"], r["compile_s"] = results[-1]["train_gflop_per_step"], compile_s  # eager's count
        results.append(r)
        print(f"torch.compile: {compile_s:.0f} s to compile (4 steps included)")
    base = results[0]["images_per_s"]
    print(f"fp32 matmul peak: {peak:.0f} GFLOP/s; pool build: {build_ms_per_item:.2f} ms per item "
          f"({pool.nbytes / args.pool / 1024:.1f} KiB per item)\n")
    print("| variant | batch | AdamW | ms/step | images/s | x before | GFLOP/step | GFLOP/s | % of matmul peak |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        gflops = r["train_gflop_per_step"] / r["ms_per_step"] * 1000
        r["gflop_per_s"], r["peak_fraction"] = gflops, gflops / peak
        print(f"| {r['variant']} | {r['batch']} | {'fused' if r['fused'] else 'default'} | {r['ms_per_step']:.0f} | "
              f"{r['images_per_s']:.1f} | {r['images_per_s'] / base:.2f} | {r['train_gflop_per_step']:.1f} | "
              f"{gflops:.0f} | {100 * r['peak_fraction']:.0f} % |")
    for r in results:
        print(f"\n{r['variant']} (batch {r['batch']}, {'fused' if r['fused'] else 'default'} AdamW):")
        for name, ms in r["sections_ms"].items():
            print(f"  {name:24s} {ms:7.1f} ms  {100 * ms / r['ms_per_step']:5.1f} %")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"matmul_peak_gflop_s": peak, "pool_build_ms_per_item": build_ms_per_item, "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
