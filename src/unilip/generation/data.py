"""Training data for the generator, from the mini world: captioned scenes to generate and edit triplets.

Position ``p`` of the stream is an edit when ``p`` falls in the edit share of a fixed pattern of 20, else a caption;
a small share of single-object captions name the colour or shape through world knowledge ("a shape that has three
corners in the color of grass"), with the things and clues kept apart from ``unilip eval wise-mini``'s. Classifier-free
guidance dropout replaces the instruction with the unconditional prompt (the source image of an edit is kept).
Items depend only on ``p``, so a resumed run sees exactly the batches it would have seen.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from unilip.data.miniworld import make_records
from unilip.data.miniworld.config import MiniWorldConfig
from unilip.data.miniworld.language import group_phrases, join_and
from unilip.errors import ConfigError
from unilip.generation.conditioner import UNCONDITIONAL_EDIT, UNCONDITIONAL_GENERATE
from unilip.mllm.data import image_tensor
from unilip.mllm.knowledge import indirect_prompt

INDIRECT_MODES = ("color", "shape", "both")


@dataclass
class GenerationMix:
    """What the generator trains on: shares of edits and of knowledge-phrased captions, and the CFG dropout."""

    split: str = "train"
    edit: float = 0.3  # share of edit triplets (0 = text-to-image only)
    knowledge: float = 0.05  # share of single-object captions rephrased through world knowledge
    loose: float = 0.15  # share of captions naming shapes only ("two circles and a square"): colour left free
    cfg_dropout: float = 0.1  # official: 10 % of prompts replaced by the unconditional one

    def validate(self) -> None:
        for key in ("edit", "knowledge", "loose", "cfg_dropout"):
            if not 0 <= getattr(self, key) <= 1:
                raise ConfigError(f"mix.{key}: must lie in [0, 1] (got {getattr(self, key)})")


class GenerationData:
    """``make(p)`` -> {image, prompt, source or None}; ``collate`` -> {images, prompts, sources, is_edit}."""

    def __init__(self, cfg: MiniWorldConfig, mix: GenerationMix):
        self.cfg, self.mix = cfg, mix
        n_edit = round(20 * mix.edit)
        self.pattern = ["edit"] * n_edit + ["caption"] * (20 - n_edit)

    def make(self, position: int) -> dict[str, Any]:
        rng = np.random.default_rng([position, 17])
        if self.pattern[position % 20] == "edit":
            record = next(make_records("edit", self.cfg, self.mix.split, position, 1))
            prompt = UNCONDITIONAL_EDIT if rng.random() < self.mix.cfg_dropout else record["instruction"]
            return {"image": image_tensor(record["target"], self.cfg), "prompt": prompt,
                    "source": image_tensor(record["scene"], self.cfg)}
        record = next(make_records("captions", self.cfg, self.mix.split, position, 1))
        prompt, scene = record["caption"], record["scene"]
        if len(scene.objects) == 1 and rng.random() < self.mix.knowledge:
            obj = scene.objects[0]
            prompt = indirect_prompt(obj.color, obj.shape, INDIRECT_MODES[int(rng.integers(3))], rng)
        elif rng.random() < self.mix.loose:
            prompt = join_and(group_phrases(scene.objects, ("shape",)))
        if rng.random() < self.mix.cfg_dropout:
            prompt = UNCONDITIONAL_GENERATE
        return {"image": image_tensor(scene, self.cfg), "prompt": prompt, "source": None}

    @staticmethod
    def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
        """Generation items first, then edits (each group gets its conditions in one MLLM call)."""
        items = [it for it in items if it["source"] is None] + [it for it in items if it["source"] is not None]
        sources = [it["source"] for it in items if it["source"] is not None]
        return {"images": torch.stack([it["image"] for it in items]), "prompts": [it["prompt"] for it in items],
                "sources": torch.stack(sources) if sources else None}
