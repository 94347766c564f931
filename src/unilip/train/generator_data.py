"""Training data for the generator: captioned images to generate and (source, instruction, target) edits.

Two kinds of source. ``miniworld:SPLIT`` renders captioned scenes and edit triplets on the fly; a small share of
single-object captions name the colour or shape through world knowledge ("a shape that has three corners in the
color of grass"), with the things and clues kept apart from ``unilip eval wise-mini``'s. At scale, JSONL manifests:
``train`` lines ``{"image": path, "prompt": text}`` and ``edit_train`` lines ``{"source": path, "image": path,
"prompt": text}`` (paths relative to the manifest), read in a seeded permutation per epoch; unreadable images are
skipped (the next record is used) and counted.

Position ``p`` of the stream is an edit when ``p`` falls in the edit share of a fixed pattern of 20. Classifier-free
guidance dropout replaces the instruction with the unconditional prompt (an edit keeps its source image). Items
depend only on ``p``, so a resumed run sees exactly the batches it would have seen.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unilip.data.miniworld import make_records
from unilip.data.miniworld.config import MiniWorldConfig
from unilip.data.miniworld.language import framed, group_phrases, join_and, relation_caption
from unilip.errors import ConfigError
from unilip.generation.conditioner import UNCONDITIONAL_EDIT, UNCONDITIONAL_GENERATE
from unilip.train.mllm_data import image_tensor
from unilip.data.miniworld.knowledge import indirect_prompt

INDIRECT_MODES = ("color", "shape", "both")


@dataclass
class GenerationMix:
    """What the generator trains on: shares of edits and of knowledge-phrased captions, and the CFG dropout."""

    train: str = "miniworld:train"  # or a JSONL manifest of {"image", "prompt"}
    edit_train: str | None = None  # with a manifest `train`: a JSONL manifest of {"source", "image", "prompt"}
    image_size: int | None = None  # manifests: resize + centre-crop to this (default: the tokenizer's image size)
    edit: float = 0.3  # share of edit triplets (0 = text-to-image only)
    knowledge: float = 0.05  # share of single-object captions rephrased through world knowledge
    loose: float = 0.15  # share of captions naming shapes only ("an image of two circles and a square"): colour free
    # share of captions of several objects restated as one spatial relation between two of them ("a red circle to the
    # left of a blue square"), where one fits: the scene's caption states one for only ~4 % of the stream
    relation: float = 0.0
    cfg_dropout: float = 0.1  # official: 10 % of prompts replaced by the unconditional one

    def validate(self) -> None:
        for key in ("edit", "knowledge", "loose", "relation", "cfg_dropout"):
            if not 0 <= getattr(self, key) <= 1:
                raise ConfigError(f"mix.{key}: must lie in [0, 1] (got {getattr(self, key)})")
        if not self.train.startswith("miniworld:") and self.edit > 0 and not self.edit_train:
            raise ConfigError("mix.edit_train: a manifest `train` with edit > 0 needs an edit manifest (or set edit: 0)")


class GenerationData:
    """``make(p)`` -> {image, prompt, source or None}; ``collate`` -> {images, prompts, sources}."""

    def __init__(self, cfg: MiniWorldConfig, mix: GenerationMix, image_size: int | None = None):
        self.cfg, self.mix = cfg, mix
        n_edit = round(20 * mix.edit)
        self.pattern = ["edit"] * n_edit + ["caption"] * (20 - n_edit)
        self.split = mix.train.split(":", 1)[1] if mix.train.startswith("miniworld:") else None
        if self.split is None:
            size = mix.image_size or image_size or cfg.image_size
            self.manifests = {"caption": Manifest(mix.train, ("image",), size)}
            if mix.edit_train:
                self.manifests["edit"] = Manifest(mix.edit_train, ("source", "image"), size)

    def make(self, position: int) -> dict[str, Any]:
        rng = np.random.default_rng([position, 17])
        kind = self.pattern[position % 20]
        if self.split is None:
            item = self.manifests[kind].item(position // 20 * self.pattern.count(kind) + self.pattern[:position % 20].count(kind))
            if rng.random() < self.mix.cfg_dropout:
                item["prompt"] = UNCONDITIONAL_EDIT if kind == "edit" else UNCONDITIONAL_GENERATE
            return item
        if kind == "edit":
            record = next(make_records("edit", self.cfg, self.split, position, 1))
            prompt = UNCONDITIONAL_EDIT if rng.random() < self.mix.cfg_dropout else record["instruction"]
            return {"image": image_tensor(record["target"], self.cfg), "prompt": prompt,
                    "source": image_tensor(record["scene"], self.cfg)}
        record = next(make_records("captions", self.cfg, self.split, position, 1))
        prompt, scene = record["caption"], record["scene"]
        if len(scene.objects) == 1 and rng.random() < self.mix.knowledge:
            obj = scene.objects[0]
            prompt = indirect_prompt(obj.color, obj.shape, INDIRECT_MODES[int(rng.integers(3))], rng)
        elif rng.random() < self.mix.loose:
            prompt = framed(join_and(group_phrases(scene.objects, ("shape",))), rng)
        elif self.mix.relation and len(scene.objects) > 1 and rng.random() < self.mix.relation:
            prompt = relation_caption(scene, rng) or prompt
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


class Manifest:
    """A JSONL manifest read in a seeded permutation per epoch: ``item(i)`` is the i-th record of the stream.

    Each line holds image paths under ``keys`` (relative paths are relative to the manifest) and a ``prompt``. An
    unreadable image skips to the next record, with a warning counted by :class:`~unilip.data.images.SkipCounter`.
    """

    def __init__(self, path: str, keys: tuple[str, ...], image_size: int, seed: int = 0):
        from unilip.data.images import SkipCounter
        from unilip.data.sources import _read_jsonl

        self.path, self.keys, self.size, self.seed = Path(path), keys, image_size, seed
        self.rows = []
        for line_no, row in _read_jsonl(self.path, path):
            if not all(isinstance(row.get(k), str) for k in (*keys, "prompt")):
                raise ConfigError(f"{path}: line {line_no} needs string fields {[*keys, 'prompt']}")
            self.rows.append(row)
        if not self.rows:
            raise ConfigError(f"{path}: the manifest is empty")
        self.skipped = SkipCounter("generator training images")

    def _row(self, i: int) -> dict[str, Any]:
        n = len(self.rows)
        order = np.random.default_rng([self.seed, i // n]).permutation(n)
        return self.rows[int(order[i % n])]

    def item(self, i: int) -> dict[str, Any]:
        from unilip.data.images import load_image
        from unilip.data.loader import eval_transform
        from unilip.errors import ImageLoadError

        for attempt in range(len(self.rows)):
            row = self._row(i + attempt)
            try:
                images = {k: eval_transform(load_image(self._resolve(row[k])), self.size) for k in self.keys}
            except ImageLoadError as err:
                self.skipped.skip(err)
                continue
            self.skipped.ok()
            return {"image": images["image"], "prompt": row["prompt"], "source": images.get("source")}
        raise ConfigError(f"{self.path}: no readable image in the whole manifest")

    def _resolve(self, name: str) -> Path:
        p = Path(name).expanduser()
        return p if p.is_absolute() else self.path.parent / p
