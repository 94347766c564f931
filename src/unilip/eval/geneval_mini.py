"""Mini GenEval: GenEval's six categories on the mini world, scored by the mini-world detector.

Categories and rules follow GenEval's (``single_object``: the named shape is there; ``two_object``: both shapes;
``counting``: exactly N of the shape; ``colors``: an object of that shape and colour; ``position``: both coloured
objects, the first on the stated side of the second; ``color_attr``: both coloured objects). Prompts come in four
frames ("...", "a picture of ...", "an image of ...", "there is ..."), the colour-shape pairs held out of every
training split included and reported apart. ``samples`` images per prompt at fixed per-image seeds.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np

from unilip.data.miniworld import detect
from unilip.data.miniworld.config import MiniWorldConfig
from unilip.data.miniworld.language import (
    NUMBER_WORDS,
    RELATION_PHRASES,
    article,
    counted,
)
from unilip.data.miniworld.scene import Scene
from unilip.eval.gen_common import generate_for, spread_subset, tally, write_benchmark

CATEGORIES = ("single_object", "two_object", "counting", "colors", "position", "color_attr")
FRAMES = ("{}", "a picture of {}", "an image of {}", "there {} {}")
RELATION_MARGIN = 0.05  # GenEval-style: the first object's centre beyond the second's by this much on the stated axis


def _frame(frame: str, body: str) -> str:
    if frame.startswith("there"):
        return frame.format("is" if body.startswith(("a ", "an ")) else "are", body)
    return frame.format(body)


def geneval_prompts(cfg: MiniWorldConfig, per_category: int = 90, seed: int = 0) -> list[dict[str, Any]]:
    """>= 300 prompts (with the default 90 per category for the combinatorial ones) with what each requires."""
    rng = np.random.default_rng(seed)
    held = cfg.heldout_set()
    prompts: list[dict[str, Any]] = []

    def add(category: str, body: str, objects: list[dict], frame: str, relation=None):
        heldout = any((o.get("color"), o["shape"]) in held for o in objects)
        prompts.append({"category": category, "prompt": _frame(frame, body), "objects": objects,
                        "relation": relation, "heldout": heldout})

    for shape, frame in itertools.product(cfg.shapes, FRAMES):
        add("single_object", article(shape), [{"shape": shape, "min": 1}], frame)
    for (a, b), frame in itertools.product(itertools.combinations(cfg.shapes, 2), FRAMES):
        add("two_object", f"{article(a)} and {article(b)}", [{"shape": a, "min": 1}, {"shape": b, "min": 1}], frame)
    for shape, n, frame in itertools.product(cfg.shapes, range(1, cfg.max_objects + 1), FRAMES):
        add("counting", counted(n, shape) if n > 1 else f"{NUMBER_WORDS[1]} {shape}",
            [{"shape": shape, "count": n}], frame)
    for color, shape, frame in itertools.product(cfg.colors, cfg.shapes, FRAMES):
        add("colors", article(f"{color} {shape}"), [{"shape": shape, "color": color, "min": 1}], frame)
    pairs = [(c, s) for c in cfg.colors for s in cfg.shapes]
    for category in ("position", "color_attr"):
        for _ in range(per_category):
            (c1, s1), (c2, s2) = (pairs[i] for i in rng.choice(len(pairs), 2, replace=False))
            objs = [{"shape": s1, "color": c1, "min": 1}, {"shape": s2, "color": c2, "min": 1}]
            if category == "position":
                rel = str(rng.choice(list(RELATION_PHRASES)))
                add(category, f"{article(f'{c1} {s1}')} {RELATION_PHRASES[rel]} {article(f'{c2} {s2}')}", objs, "{}", rel)
            else:
                add(category, f"{article(f'{c1} {s1}')} and {article(f'{c2} {s2}')}", objs,
                    FRAMES[int(rng.integers(len(FRAMES)))])
    return prompts


def _holds(rel: str, a, b) -> bool:
    dx, dy = a.x - b.x, a.y - b.y
    return {"left": dx < -RELATION_MARGIN, "right": dx > RELATION_MARGIN,
            "above": dy < -RELATION_MARGIN, "below": dy > RELATION_MARGIN}[rel]


def satisfies(scene: Scene, spec: dict[str, Any]) -> bool:
    """Whether a detected scene meets a prompt's requirements (GenEval's rules, see the module docstring)."""
    found = []
    for req in spec["objects"]:
        hits = [o for o in scene.objects if o.shape == req["shape"] and req.get("color") in (None, o.color)]
        if "count" in req and len(hits) != req["count"]:
            return False
        if len(hits) < req.get("min", 0):
            return False
        found.append(hits)
    if spec.get("relation"):
        return any(_holds(spec["relation"], a, b) for a in found[0] for b in found[1] if a is not b)
    return True


def evaluate_geneval(pipe, cfg: MiniWorldConfig, n_prompts: int | None = None, samples: int = 4, seed: int = 0,
                     out_dir: str | Path | None = None, grid_path: str | Path | None = None, steps: int | None = None,
                     guidance: float | None = None, categories: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Generate ``samples`` images per prompt and score them; ``n_prompts`` takes an evenly spread subset (for the
    training curve), ``categories`` some categories only. Writes ``geneval-mini.json`` / ``.html`` to ``out_dir`` and
    a sample grid to ``grid_path``."""
    specs = [s for s in geneval_prompts(cfg) if categories is None or s["category"] in categories]
    specs = spread_subset(specs, n_prompts)
    images = generate_for(pipe, [s["prompt"] for s in specs], samples, seed, steps=steps, guidance=guidance)
    rows = []
    for k, image in enumerate(images):
        spec = specs[k // samples]
        scene = detect(image, cfg)
        rows.append({"prompt": spec["prompt"], "category": spec["category"], "heldout": spec["heldout"],
                     "sample": k % samples, "ok": satisfies(scene, spec),
                     "detected": [f"{o.color} {o.shape}" for o in scene.objects]})
    summary = tally(rows)
    summary.update({"prompts": len(specs), "samples_per_prompt": samples, "seed": seed})
    if out_dir is not None:
        write_benchmark("geneval-mini", summary, rows, images, out_dir)
    if grid_path is not None:
        import torch

        from unilip.eval.grid import save_grid

        t = torch.from_numpy(images[: 8 * (len(images) // 8)]).permute(0, 3, 1, 2).float() / 255
        save_grid(list(t[:32].split(8)), grid_path)
    return summary


__all__ = ["CATEGORIES", "evaluate_geneval", "geneval_prompts", "satisfies"]
