"""The paper's generation ablations in miniature: ``unilip reproduce generator -o DIR [--quick]``.

With the same frozen mini MLLM and UniLIP tokenizer, train the generator four ways with the same budget and score
each on the three mini benchmarks:

===============  ======================================================================================
``dual``         multimodal hidden states + query outputs condition the DiT (UniLIP's design)
``queries``      the query outputs only (MetaQuery / BLIP3-o style)
``hidden``       the hidden states only (the prompt's and the source image's positions, no queries)
``vae_latent``   dual conditions, but the DiT generates the latent of a plain DC-AE autoencoder trained on the
                 same images (first, with the same loop) instead of the UniLIP latent
===============  ======================================================================================

Writes ``results.json`` and ``report.md`` / ``report.html`` (our numbers beside the paper's) under ``DIR``. The
variants share every setting but the one they ablate; nothing is tuned towards the expected answer.
"""

from __future__ import annotations

import html
import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from unilip.errors import UniLIPError
from unilip.train.generator_data import GenerationMix

logger = logging.getLogger("unilip.reproduce")

PAPER = {  # UniLIP paper, ablation tables (1B): ImgEdit overall, WISE overall, GenEval by target latent
    "imgedit": {"dual": 3.81, "queries": 3.38, "hidden": 3.62},
    "wise": {"dual": 0.56, "queries": 0.52, "hidden": 0.47},
    "latent": {"dual": 0.56, "vae_latent": 0.48},
}
VARIANTS = {"dual": [], "queries": ["stage.condition_mode=queries"], "hidden": ["stage.condition_mode=hidden"],
            "vae_latent": []}


@dataclass
class GeneratorReproduceSettings:
    steps: int = 2000  # per variant, batch 64: ~17 min on 2 cores (the budget: <= 20 min each)
    batch_size: int = 64
    pool: int = 0  # > 0: train on a frozen pool of this many items (train.frozen_pool), each step skips the frozen parts
    edit: float = GenerationMix.edit  # the share of edit triplets in the training mix (mix.edit, its default)
    vae_steps: int = 1500  # the VAE baseline's autoencoder (before its generator's budget)
    geneval_samples: int = 1
    imgedit_edits: int = 200
    imgedit_heldout: int = 50
    wise_samples: int = 2
    prompts: int | None = None  # a subset of the GenEval / WISE prompts (smoke runs only)
    sample_steps: int | None = None  # sampling steps (None: the generator config's 20)

    @classmethod
    def quick(cls) -> GeneratorReproduceSettings:
        return cls(steps=3, batch_size=8, vae_steps=3, geneval_samples=1, imgedit_edits=5, imgedit_heldout=5,
                   wise_samples=1, prompts=6, sample_steps=2)


def _train_autoencoder(out: Path, s: GeneratorReproduceSettings, world, latent_shape) -> Path:
    from unilip.generation.vae_baseline import PixelAutoencoder
    from unilip.train.autoencoder import AutoencoderTask
    from unilip.train.loop import LoopConfig, OptimConfig, train

    if (out / "final" / "model.safetensors").is_file():
        return out / "final"
    torch.manual_seed(0)
    channels, size, _ = latent_shape
    model = PixelAutoencoder(world.image_size, channels, size)
    loop = LoopConfig(output_dir=str(out), max_steps=s.vae_steps, batch_size=32, save_every=s.vae_steps,
                      report_every=0, log_every=max(1, s.vae_steps // 20), progress=False)
    train(AutoencoderTask(model, world, loop.batch_size), loop,
          OptimConfig(lr=5e-4, warmup_steps=min(200, s.vae_steps // 5 + 1), weight_decay=1e-4),
          resume=(out / "config.yaml").exists() or any(out.glob("checkpoint-*")))
    return out / "final"


def _latent_scale(autoencoder, world, n: int = 512) -> float:
    """1 / std of the latents of ``n`` validation scenes (what ``unilip latent-scale`` measures)."""
    import numpy as np

    from unilip.data.miniworld import render
    from unilip.data.miniworld.scene import sample_split

    images = torch.from_numpy(np.stack([render(sc, world) for sc in sample_split(world, "val", 0, n)])).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        return float(1 / torch.cat([autoencoder.eval().encode(c) for c in images.split(128)]).std())


def reproduce_generator(out: str | Path, mllm: str = "mini", tokenizer: str = "mini", quick: bool = False,
                        variants: list[str] | None = None, steps: int | None = None, batch_size: int | None = None,
                        pool: int | None = None, edit: float | None = None) -> dict[str, Any]:
    """Train and score the variants (default: all four); write results.json + report.md + report.html under ``out``.

    A variant whose ``eval/<name>/result.json`` exists is not redone, so an interrupted run continues, and two
    processes can split the variants (``variants=[...]``; one thread each is faster on a small CPU than one process
    with two) before a last call without ``variants`` writes the whole report. ``steps``: the per-variant training
    budget (default 2000 steps of 64; the variants always share it); ``batch_size``, ``pool`` (a frozen pool of that
    many items: the same images in fewer seconds) and ``edit`` (the share of edits) likewise.
    """
    from unilip.eval.geneval_mini import evaluate_geneval
    from unilip.eval.imgedit_mini import evaluate_imgedit
    from unilip.eval.wise_mini import evaluate_wise
    from unilip.pipeline import UniLIPPipeline
    from unilip.generation.model import UniLIPGenerator
    from unilip.generation.vae_baseline import PixelAutoencoder
    from unilip.pretrained import resolve_model
    from unilip.tokenizer import UniLIPTokenizer
    from unilip.train.generator import (
        GeneratorTask,
        load_generator_config,
        train_generator,
    )

    t0 = time.perf_counter()
    out = Path(out)
    runs = out / "runs"
    s = GeneratorReproduceSettings.quick() if quick else GeneratorReproduceSettings()
    for key, value in (("steps", steps), ("batch_size", batch_size), ("pool", pool), ("edit", edit)):
        if value is not None:
            setattr(s, key, value)
    tok_dir = resolve_model(tokenizer, "tokenizer")
    world = load_generator_config(None, []).model.miniworld
    unilip_scale = _latent_scale(UniLIPTokenizer.from_pretrained(tok_dir).float(), world)
    # configs/generator/mini.yaml's recipe, written out so that an installed package needs no repository checkout
    base = [f"model.mllm.pretrained={resolve_model(mllm, 'mllm')}", f"tokenizer={tok_dir}",
            "stage.trainable={queries: 1.0, connector: 1.0, projector: 1.0, dit: 1.0}", "optim.lr=6e-4",
            "optim.weight_decay=0.01", "optim.min_lr_ratio=0.1", "loop.ema_decay=0.999",
            f"loop.max_steps={s.steps}", f"loop.batch_size={s.batch_size}", f"loop.save_every={max(1, s.steps // 4)}",
            f"pool={s.pool}", f"mix.edit={s.edit}",
            "loop.report_every=0", "loop.progress=false", f"optim.warmup_steps={min(300, s.steps // 5 + 1)}"]
    results: dict[str, Any] = {"settings": asdict(s), "quick": quick, "paper": PAPER, "variants": {},
                               "latent_scale": {"unilip": unilip_scale}}
    for name in variants or list(VARIANTS):
        if name not in VARIANTS:
            raise UniLIPError(f"variant {name!r}: not one of {', '.join(VARIANTS)}")
        done = out / "eval" / name / "result.json"
        if done.is_file():  # finished by an earlier (or a parallel) invocation
            results["variants"][name] = json.loads(done.read_text())
            results["latent_scale"].update(results["variants"][name].get("latent_scale", {}))
            continue
        t = time.perf_counter()
        run = runs / name
        overrides = VARIANTS[name]
        extra = [*overrides, f"model.generator.latent_scale={unilip_scale}"]
        if name == "vae_latent":
            ae_dir = _train_autoencoder(runs / "autoencoder", s, world, load_generator_config(None, []).model.latent_shape())
            scale = _latent_scale(PixelAutoencoder.from_pretrained(ae_dir), world)
            extra = [f"autoencoder={ae_dir}", f"model.generator.latent_scale={scale}"]
            results["latent_scale"]["vae"] = scale
        cfg = load_generator_config(None, [*base, f"loop.output_dir={run}", *extra])
        if not (run / "final" / "model.safetensors").is_file():
            train_generator(cfg, resume=any(run.glob("checkpoint-*")))
        task = GeneratorTask(cfg)  # the frozen parts, around which the trained weights load
        model = UniLIPPipeline(UniLIPGenerator.from_pretrained(run / "final", task.model.conditioner.mllm, task.model.tokenizer,
                                                               cfg.model, autoencoder=task.model.autoencoder), progress=False)
        ev = out / "eval" / name
        steps = {"steps": s.sample_steps, "out_dir": ev}
        r = {"geneval": evaluate_geneval(model, world, n_prompts=s.prompts, samples=s.geneval_samples, **steps),
             "imgedit": evaluate_imgedit(model, world, n=s.imgedit_edits, n_heldout=s.imgedit_heldout, **steps),
             "wise": evaluate_wise(model, world, samples=s.wise_samples, n_prompts=s.prompts, **steps)}
        r["train_seconds_and_eval"] = time.perf_counter() - t
        if name == "vae_latent":
            r["latent_scale"] = {"vae": results["latent_scale"]["vae"]}
        done.write_text(json.dumps(r, indent=2) + "\n")
        results["variants"][name] = r
        logger.info("%s: geneval %.3f imgedit %.3f wise %.3f", name, r["geneval"]["overall"], r["imgedit"]["overall"],
                    r["wise"]["overall"])
    results["seconds"] = time.perf_counter() - t0
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    md = report_markdown(results)
    (out / "report.md").write_text(md)
    (out / "report.html").write_text("<!doctype html><meta charset=utf-8><title>unilip reproduce generator</title>"
                                     f"<pre>{html.escape(md)}</pre>"
                                     + "".join(f'<p><a href="eval/{n}/geneval-mini.html">{n}: samples</a></p>'
                                               for n in results["variants"]))
    return results


def report_markdown(results: dict[str, Any]) -> str:
    v = results["variants"]
    lines = ["# The generator's ablations in miniature", "",
             f"Settings: {json.dumps(results['settings'])}{' (QUICK: a smoke run, not results)' if results['quick'] else ''}", "",
             "| variant | mini GenEval | mini ImgEdit (ok) | mini WISE | WISE direct | paper ImgEdit | paper WISE | paper GenEval (latent) |",
             "|---|---|---|---|---|---|---|---|"]
    for name, r in v.items():
        p = results["paper"]
        lines.append(f"| {name} | {r['geneval']['overall']:.3f} | {r['imgedit']['overall']:.3f} | {r['wise']['overall']:.3f} | "
                     f"{r['wise']['direct']:.3f} | {p['imgedit'].get(name, '-')} | {p['wise'].get(name, '-')} | "
                     f"{p['latent'].get(name, '-')} |")
    lines += ["", "Editing in detail (means over the five edit types): ok needs the instruction followed *and* everything "
              "else preserved; with little training the partial measures separate the variants first.", "",
              "| variant | followed | preserved | right content | PSNR outside the edit (dB) |", "|---|---|---|---|---|"]
    for name, r in v.items():
        e = r["imgedit"]
        mean = {key: sum(e[key].values()) / len(e[key]) for key in ("followed", "preserved", "content", "psnr_outside")
                if isinstance(e.get(key), dict) and e[key]}
        lines.append(f"| {name} | " + " | ".join(f"{mean[k]:.3f}" if k in mean else "-"
                                                  for k in ("followed", "preserved", "content")) +
                     (f" | {mean['psnr_outside']:.2f} |" if "psnr_outside" in mean else " | - |"))
    lines += ["", "Per category (GenEval) and per edit type (ImgEdit):", ""]
    for name, r in v.items():
        lines.append(f"- **{name}**: GenEval {json.dumps({k: round(x, 3) for k, x in r['geneval']['per_category'].items()})}; "
                     f"ImgEdit {json.dumps({k: round(x, 3) for k, x in r['imgedit']['per_edit_type'].items()})}")
    return "\n".join(lines) + "\n"
