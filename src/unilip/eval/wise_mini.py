"""Mini WISE: one-object prompts that name the colour, the shape or both only through world knowledge ("a shape that
has no corners in the color of the sea"), scored by the detector (an object of that colour and shape).

The things and clues asked here are those the generator never saw in its training prompts (``indirect_references``
held out); the mini MLLM learnt every one of them from text. So what this measures is knowledge reaching the image
through the MLLM's hidden states -- the paper's WISE claim in miniature. The same objects named directly are scored
alongside (``direct``), the ceiling the knowledge prompts can reach.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np

from unilip.data.miniworld import detect
from unilip.data.miniworld.config import MiniWorldConfig
from unilip.data.miniworld.language import article
from unilip.eval.gen_common import generate_for, spread_subset, tally, write_benchmark
from unilip.data.miniworld.knowledge import indirect_references

FRAMES = ("{}", "a picture of {}")


def wise_prompts(cfg: MiniWorldConfig) -> list[dict[str, Any]]:
    """Every colour x shape x {colour, shape, both indirect} x frame with the held-out things and clues (>= 100
    for the default world), plus each object named directly (category ``direct``)."""
    things, clues = indirect_references("color", True), indirect_references("shape", True)
    held = cfg.heldout_set()
    prompts = []
    for color, shape in itertools.product(cfg.colors, cfg.shapes):
        bodies = {"color": [f"a {shape} in the color of {t}" for t in things.get(color, ())],
                  "shape": [f"a {color} shape that {c}" for c in clues.get(shape, ())],
                  "both": [f"a shape that {c} in the color of {t}" for c in clues.get(shape, ()) for t in things.get(color, ())]}
        for category, texts in bodies.items():
            for text, frame in itertools.product(texts, FRAMES):
                prompts.append({"category": category, "prompt": frame.format(text), "color": color, "shape": shape,
                                "heldout": (color, shape) in held})
        prompts.append({"category": "direct", "prompt": article(f"{color} {shape}"), "color": color, "shape": shape,
                        "heldout": (color, shape) in held})
    return prompts


def evaluate_wise(pipe, cfg: MiniWorldConfig, samples: int = 4, seed: int = 0, out_dir: str | Path | None = None,
                  steps: int | None = None, guidance: float | None = None, n_prompts: int | None = None) -> dict[str, Any]:
    """Generate ``samples`` images per prompt and score them (``n_prompts``: an evenly spread subset, for smoke runs)."""
    specs = spread_subset(wise_prompts(cfg), n_prompts)
    images = generate_for(pipe, [s["prompt"] for s in specs], samples, seed, steps=steps, guidance=guidance)
    rows = []
    for k, image in enumerate(images):
        s = specs[k // samples]
        scene = detect(image, cfg)
        rows.append({"prompt": s["prompt"], "category": s["category"], "heldout": s["heldout"], "sample": k % samples,
                     "ok": any(o.color == s["color"] and o.shape == s["shape"] for o in scene.objects),
                     "detected": [f"{o.color} {o.shape}" for o in scene.objects]})
    knowledge = [r for r in rows if r["category"] != "direct"]
    summary = tally(knowledge)
    summary["direct"] = float(np.mean([r["ok"] for r in rows if r["category"] == "direct"]))
    summary.update({"prompts": len([s for s in specs if s["category"] != "direct"]), "samples_per_prompt": samples,
                    "seed": seed})
    if out_dir is not None:
        write_benchmark("wise-mini", summary, rows, images, out_dir)
    return summary
