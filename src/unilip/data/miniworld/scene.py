"""Mini-world scene graphs and the seeded scene sampler.

A scene is a background and a few axis-aligned objects, each with a shape, a colour, a named size and the centre of
its bounding box in [0, 1] image coordinates (x to the right, y downwards). Scenes are plain data: ``to_dict`` gives
JSON, ``Scene.from_dict`` reads it back, and the same scene renders at any resolution.

Splits are disjoint seed ranges: scene ``i`` of split ``s`` is drawn from seed ``SPLIT_SEED_BASE[s] + i``, so a
dataset is reproducible from (split, first index, count) and no test scene can leak into training.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

import numpy as np

from unilip.data.miniworld.config import BACKGROUNDS, PALETTE, SHAPES, MiniWorldConfig
from unilip.errors import ConfigError

Split = Literal["train", "val", "test", "heldout"]
SPLIT_SIZE = 1_000_000_000
# train / val / test hold out `heldout_pairs`; "heldout" scenes contain at least one held-out pair.
SPLIT_SEED_BASE: dict[str, int] = {"train": 0, "val": SPLIT_SIZE, "test": 2 * SPLIT_SIZE, "heldout": 3 * SPLIT_SIZE}

_COORD_DECIMALS = 4  # positions are stored rounded, so a scene read back from JSON renders to the same pixels


@dataclass(frozen=True)
class SceneObject:
    """One object: a shape of a colour and a named size, centred at (x, y) in [0, 1] image coordinates."""

    shape: str
    color: str
    size: str
    x: float
    y: float

    def box(self, cfg: MiniWorldConfig) -> tuple[float, float, float, float]:
        """Bounding box (x0, y0, x1, y1) in [0, 1] coordinates."""
        half = cfg.sizes[self.size] / 2
        return (self.x - half, self.y - half, self.x + half, self.y + half)


@dataclass(frozen=True)
class Scene:
    """A mini-world scene graph. ``seed`` records where it came from (None for hand-made or edited scenes)."""

    background: str
    objects: tuple[SceneObject, ...]
    seed: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"background": self.background, "objects": [asdict(o) for o in self.objects], "seed": self.seed}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Scene:
        """Read a scene graph written by :meth:`to_dict` (checks names, so a typo fails here, not in rendering)."""
        try:
            objects = tuple(SceneObject(**{k: o[k] for k in ("shape", "color", "size", "x", "y")}) for o in data["objects"])
            scene = cls(background=data["background"], objects=objects, seed=data.get("seed"))
        except (KeyError, TypeError) as e:
            raise ConfigError(f"scene graph: malformed ({e!r}); expected background, objects[shape, color, size, x, y]") from e
        for o in scene.objects:
            if o.shape not in SHAPES or o.color not in PALETTE:
                raise ConfigError(f"scene graph: unknown shape or colour in {o}")
        if scene.background not in BACKGROUNDS:
            raise ConfigError(f"scene graph: unknown background {scene.background!r}; allowed: {list(BACKGROUNDS)}")
        return scene

    def with_objects(self, objects: list[SceneObject] | tuple[SceneObject, ...]) -> Scene:
        """The same scene with other objects (and no seed: it no longer comes from the sampler)."""
        return replace(self, objects=tuple(objects), seed=None)


def boxes_clear(a: SceneObject, b: SceneObject, cfg: MiniWorldConfig) -> bool:
    """True when the bounding boxes of a and b are at least ``cfg.min_gap`` apart (on either axis)."""
    ax0, ay0, ax1, ay1 = a.box(cfg)
    bx0, by0, bx1, by1 = b.box(cfg)
    gap = max(bx0 - ax1, ax0 - bx1, by0 - ay1, ay0 - by1)
    return gap >= cfg.min_gap - 1e-9


def inside(obj: SceneObject, cfg: MiniWorldConfig) -> bool:
    """True when the object's bounding box keeps ``cfg.margin`` from every border."""
    x0, y0, x1, y1 = obj.box(cfg)
    m = cfg.margin - 1e-9
    return x0 >= m and y0 >= m and x1 <= 1 - m and y1 <= 1 - m


def place(
    shape: str,
    color: str,
    size: str,
    others: list[SceneObject] | tuple[SceneObject, ...],
    cfg: MiniWorldConfig,
    rng: np.random.Generator,
    region: tuple[float, float, float, float] = (0.0, 0.0, 1.0, 1.0),
    tries: int = 200,
) -> SceneObject | None:
    """An object at a random free position whose centre lies in ``region`` (x0, y0, x1, y1), or None.

    Rejection sampling: draw a centre, keep it when the box is inside the image and clear of every other object.
    """
    half = cfg.sizes[size] / 2
    lo_x, hi_x = max(region[0], cfg.margin + half), min(region[2], 1 - cfg.margin - half)
    lo_y, hi_y = max(region[1], cfg.margin + half), min(region[3], 1 - cfg.margin - half)
    if lo_x > hi_x or lo_y > hi_y:
        return None
    for _ in range(tries):
        x = round(float(rng.uniform(lo_x, hi_x)), _COORD_DECIMALS)
        y = round(float(rng.uniform(lo_y, hi_y)), _COORD_DECIMALS)
        obj = SceneObject(shape, color, size, x, y)
        in_region = region[0] <= x < region[2] and region[1] <= y < region[3]  # rounding may step out of it
        if in_region and inside(obj, cfg) and all(boxes_clear(obj, o, cfg) for o in others):
            return obj
    return None


def allowed_pairs(cfg: MiniWorldConfig, split: str) -> list[tuple[str, str]]:
    """The (colour, shape) pairs a split may draw from: all but the held-out ones, except in "heldout"."""
    pairs = [(c, s) for c in cfg.colors for s in cfg.shapes]
    if split == "heldout":
        return pairs
    held = cfg.heldout_set()
    return [p for p in pairs if p not in held]


def scene_seed(split: str, index: int) -> int:
    """The seed of scene ``index`` of ``split`` (splits are disjoint seed ranges)."""
    if split not in SPLIT_SEED_BASE:
        raise ConfigError(f"split: unknown split {split!r}; allowed: {list(SPLIT_SEED_BASE)}")
    if not 0 <= index < SPLIT_SIZE:
        raise ConfigError(f"index: must be in [0, {SPLIT_SIZE}) (got {index})")
    return SPLIT_SEED_BASE[split] + index


def split_of_seed(seed: int) -> str:
    """The split a scene seed belongs to."""
    for name, base in SPLIT_SEED_BASE.items():
        if base <= seed < base + SPLIT_SIZE:
            return name
    raise ValueError(f"seed {seed} is outside every split range")


def sample_scene(cfg: MiniWorldConfig, seed: int, split: str | None = None) -> Scene:
    """Draw the scene of ``seed``; ``split`` (default: the one the seed belongs to) decides the allowed pairs.

    Each new object copies an earlier one's colour and shape with probability ``cfg.repeat_prob`` (so counts above
    one are common), otherwise draws a pair uniformly. In the "heldout" split the first object is a held-out pair.
    A draw whose objects do not fit is redrawn (from the same random stream, so the seed still decides).
    """
    split = split or split_of_seed(seed)
    rng = np.random.default_rng(seed)
    pairs = allowed_pairs(cfg, split)
    held = sorted(cfg.heldout_set())
    size_names = list(cfg.sizes)
    for _ in range(1000):
        n = int(rng.integers(cfg.min_objects, cfg.max_objects + 1))
        background = cfg.backgrounds[int(rng.integers(len(cfg.backgrounds)))]
        objects: list[SceneObject] = []
        for k in range(n):
            if k == 0 and split == "heldout" and held:
                color, shape = held[int(rng.integers(len(held)))]
            elif k > 0 and rng.random() < cfg.repeat_prob:
                prev = objects[int(rng.integers(len(objects)))]
                color, shape = prev.color, prev.shape
            else:
                color, shape = pairs[int(rng.integers(len(pairs)))]
            size = size_names[int(rng.integers(len(size_names)))]
            obj = place(shape, color, size, objects, cfg, rng)
            if obj is None:
                break
            objects.append(obj)
        if len(objects) == n:
            return Scene(background=background, objects=tuple(objects), seed=seed)
    raise RuntimeError(f"could not place the objects of scene {seed}; the config is too crowded")  # pragma: no cover


def sample_split(cfg: MiniWorldConfig, split: str, start: int, n: int) -> list[Scene]:
    """Scenes ``start .. start + n - 1`` of a split."""
    return [sample_scene(cfg, scene_seed(split, start + i), split) for i in range(n)]
