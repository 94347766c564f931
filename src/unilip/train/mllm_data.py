"""Training data for the mini MLLM, generated on the fly and indexed by position (so resume is exact).

Two kinds, one per training stage:

- **dense attributes** (vision pre-training): an image and, for every ViT patch, the colour, shape and size of
  the object covering most of it (or "background"). A fast, dense objective that gives the vision encoder the
  semantics InternViT gets from CLIP-style pre-training at scale;
- **instructions**: mini-world questions with one-word answers, captions ("describe the image."), and text-only
  world-knowledge questions, in the InternVL chat format; the loss is on the answer tokens only.

Item ``p`` of a stream is a pure function of (split, p): batches are positions ``[s*G + r*B, s*G + (r+1)*B)``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from unilip.data.miniworld.config import MiniWorldConfig
from unilip.data.miniworld.dataset import make_records
from unilip.data.miniworld.renderer import render, shape_coverage
from unilip.data.miniworld.scene import Scene, sample_scene, scene_seed
from unilip.errors import ConfigError
from unilip.data.miniworld.knowledge import knowledge_facts
from unilip.mllm.chat import chat_prompt

IGNORE = -100  # label of tokens the loss skips (prompt, padding)
ATTRIBUTES = ("color", "shape", "size")  # the classes the vision stage predicts for every patch (+ the centre)


def position_batches(make: Callable[[int], Any], collate: Callable[[list], Any], batch_size: int, start_step: int,
                     rank: int, world_size: int) -> Iterator[Any]:
    """Batches of items ``make(p)`` for positions ``p`` of step s, rank r: ``[s*G + r*B, s*G + (r+1)*B)``."""
    step = start_step
    while True:
        first = step * batch_size * world_size + rank * batch_size
        yield collate([make(p) for p in range(first, first + batch_size)])
        step += 1


def image_tensor(scene: Scene, cfg: MiniWorldConfig) -> torch.Tensor:
    """(3, S, S) float in [0, 1]."""
    return torch.from_numpy(np.array(render(scene, cfg))).permute(2, 0, 1).float() / 255


# ------------------------------------------------------------------------------------------------ dense attributes


def patch_labels(scene: Scene, cfg: MiniWorldConfig, patch_size: int) -> dict[str, np.ndarray]:
    """Per-patch labels of the object covering most of each patch (if it covers >= 25 % of it): class ids of its
    colour, shape and size (0 = background), and its centre ``center`` (x, y in [0, 1]; -1 on background)."""
    size = cfg.image_size
    grid = size // patch_size
    cover = np.zeros((len(scene.objects) + 1, grid, grid), np.float32)
    cover[0] = 0.25  # background wins unless an object covers at least a quarter of the patch
    for i, o in enumerate(scene.objects, start=1):
        c = shape_coverage(o.shape, o.x, o.y, cfg.sizes[o.size], size)
        cover[i] = c.reshape(grid, patch_size, grid, patch_size).mean(axis=(1, 3))
    owner = cover.argmax(0)  # (grid, grid), 0 = background
    table = {
        "color": [0] + [1 + cfg.colors.index(o.color) for o in scene.objects],
        "shape": [0] + [1 + cfg.shapes.index(o.shape) for o in scene.objects],
        "size": [0] + [1 + list(cfg.sizes).index(o.size) for o in scene.objects],
    }
    labels = {k: np.asarray(v, np.int64)[owner] for k, v in table.items()}
    centers = np.asarray([(-1.0, -1.0)] + [(o.x, o.y) for o in scene.objects], np.float32)
    labels["center"] = centers[owner]  # (grid, grid, 2)
    return labels


@dataclass
class DenseAttributeData:
    """Images of a split and their patch labels; ``make(p)`` -> dict, ``collate`` -> batch of tensors."""

    cfg: MiniWorldConfig
    patch_size: int
    split: str = "train"

    def make(self, position: int) -> dict[str, Any]:
        scene = sample_scene(self.cfg, scene_seed(self.split, position), self.split)
        return {"image": image_tensor(scene, self.cfg), **patch_labels(scene, self.cfg, self.patch_size)}

    @staticmethod
    def collate(items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        out = {"images": torch.stack([it["image"] for it in items])}
        for key in ATTRIBUTES:
            out[key] = torch.from_numpy(np.stack([it[key] for it in items])).flatten(1)  # (B, grid*grid)
        out["center"] = torch.from_numpy(np.stack([it["center"] for it in items])).flatten(1, 2)  # (B, grid*grid, 2)
        return out


# ---------------------------------------------------------------------------------------------------- instructions


@dataclass
class InstructionMix:
    """Shares of each instruction kind in the stream (positions are assigned by a fixed pattern of 20)."""

    vqa: float = 0.7
    caption: float = 0.15
    knowledge: float = 0.15
    # "where is the red circle?" -> "top left": a grounding curriculum (training only), which teaches the language
    # model to read where an object is from the image tokens, the step relative-position questions build on
    location: float = 0.0

    def validate(self) -> None:
        shares = [getattr(self, k) for k in self.KINDS]
        if min(shares) < 0 or sum(shares) <= 0:
            raise ConfigError("mix: shares must be >= 0 and not all 0")

    KINDS = ("vqa", "caption", "knowledge", "location")

    def pattern(self) -> list[str]:
        total = sum(getattr(self, k) for k in self.KINDS)
        counts = {k: round(20 * getattr(self, k) / total) for k in self.KINDS}
        return [k for k, n in counts.items() for _ in range(n)] or ["vqa"]


class InstructionData:
    """Chat-format examples; ``make(p)`` -> dict, ``collate`` -> padded tensors (+ pixel values of image items)."""

    def __init__(self, cfg: MiniWorldConfig, tokenizer, image_seq_length: int, mix: InstructionMix, split: str = "train"):
        self.cfg, self.tokenizer, self.n_img, self.split = cfg, tokenizer, image_seq_length, split
        self.pattern = mix.pattern()
        facts = knowledge_facts(cfg.colors, cfg.shapes, cfg.max_objects)
        self.facts = [f for f in facts if not f.held_out]

    def make(self, position: int) -> dict[str, Any]:
        kind = self.pattern[position % len(self.pattern)]
        if kind == "knowledge":
            fact = self.facts[int(np.random.default_rng([position, 11]).integers(len(self.facts)))]
            return self._example(fact.question, fact.answer, None)
        if kind == "location":
            return self._location(position)
        if kind == "caption":
            record = next(make_records("captions", self.cfg, self.split, position, 1))
            return self._example("describe the image.", record["caption"], record["scene"])
        record = next(make_records("vqa", self.cfg, self.split, position, 1))
        return self._example(record["question"], record["answer"], record["scene"])

    def _location(self, position: int) -> dict[str, Any]:
        """'where is the {object}?' -> its region ('top left', 'center', ...), for an object the scene can name."""
        from unilip.data.miniworld.edits import region_of
        from unilip.data.miniworld.language import refer

        rng = np.random.default_rng([position, 13])
        for attempt in range(64):
            scene = sample_scene(self.cfg, scene_seed(self.split, position * 64 + attempt), self.split)
            named = [(i, r) for i, r in ((i, refer(scene, i)) for i in range(len(scene.objects))) if r]
            if named:
                i, ref = named[int(rng.integers(len(named)))]
                return self._example(f"where is the {ref}?", region_of(scene.objects[i]), scene)
        raise RuntimeError(f"no scene with a nameable object near position {position}")

    def _example(self, question: str, answer: str, scene: Scene | None) -> dict[str, Any]:
        prompt = self.tokenizer(chat_prompt(question, self.n_img if scene is not None else None))["input_ids"]
        target = self.tokenizer(f"{answer}{self.tokenizer.eos_token}")["input_ids"]
        return {"ids": prompt + target, "labels": [IGNORE] * len(prompt) + target,
                "image": image_tensor(scene, self.cfg) if scene is not None else None}

    def collate(self, items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        width = max(len(it["ids"]) for it in items)
        pad = self.tokenizer.pad_token_id
        ids = torch.full((len(items), width), pad, dtype=torch.long)
        labels = torch.full((len(items), width), IGNORE, dtype=torch.long)
        mask = torch.zeros((len(items), width), dtype=torch.long)
        for i, it in enumerate(items):  # right padding for training
            n = len(it["ids"])
            ids[i, :n], labels[i, :n], mask[i, :n] = torch.tensor(it["ids"]), torch.tensor(it["labels"]), 1
        batch = {"input_ids": ids, "labels": labels, "attention_mask": mask}
        images = [it["image"] for it in items if it["image"] is not None]
        if images:
            batch["images"] = torch.stack(images)
        return batch
