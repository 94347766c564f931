"""The difficulty knobs of the mini world, in one dataclass.

Every model in unilip (mini MLLM, tokenizer, generator) learns this world on two CPU cores, so how hard the world is
matters as much as the models: more objects, shapes, colours or sizes make every learning curve slower (the measured
curves on 2 CPU cores: README.md, "The mini MLLM and the embedded default"). All of it is chosen here, and nowhere
else.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from unilip.errors import ConfigError

# Fill colours, sRGB. Chosen to be far apart from each other and from every background (min distance > 100), so
# that the detector can name them from pixels even with noise.
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (240, 200, 30),
    "purple": (140, 60, 180),
    "orange": (245, 130, 30),
    "cyan": (30, 190, 200),
    "pink": (240, 110, 180),
    "brown": (120, 70, 30),
    "black": (30, 30, 30),
}

# Light, neutral backgrounds: never mentioned in captions, so any of them is a valid picture of a caption.
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "white": (250, 250, 250),
    "light gray": (222, 222, 222),
    "beige": (238, 230, 205),
}

# Every shape the renderer and the detector know. Axis-aligned, each filling a square box of the object's size.
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond", "hexagon", "cross")

MAX_OBJECTS = 6


@dataclass
class MiniWorldConfig:
    """What a mini-world scene may contain.

    Sizes, gaps and margins are fractions of the image side, so one scene renders at any resolution.
    """

    image_size: int = 64  # pixels per side of a rendered scene
    min_objects: int = 1
    max_objects: int = 3  # at most MAX_OBJECTS (6)
    shapes: tuple[str, ...] = ("circle", "square", "triangle")  # a subset of SHAPES
    colors: tuple[str, ...] = ("red", "green", "blue", "yellow", "purple", "orange")  # a subset of PALETTE
    backgrounds: tuple[str, ...] = ("white", "light gray", "beige")  # a subset of BACKGROUNDS
    # Object sizes (side of the bounding box, fraction of the image). 0.2 / 0.3 are 13 / 19 px at 64 px: large
    # enough that a triangle, a circle and a square are told apart at a glance.
    sizes: dict[str, float] = field(default_factory=lambda: {"small": 0.2, "large": 0.3})
    min_gap: float = 0.04  # smallest distance between two bounding boxes (2.5 px at 64 px): objects never touch
    margin: float = 0.02  # smallest distance from a bounding box to the image border
    repeat_prob: float = 0.3  # chance that a new object copies an earlier one's colour and shape (for counting)
    # Colour-shape pairs that never appear in the train / val / test splits, only in the "heldout" split: the
    # compositional test ("a red triangle" must be generated without ever having been seen).
    heldout_pairs: tuple[str, ...] = ("red triangle", "green circle", "blue square")

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first invalid key."""
        if not 16 <= self.image_size <= 4096:
            raise ConfigError(f"image_size: must be between 16 and 4096 pixels (got {self.image_size})")
        if not 1 <= self.max_objects <= MAX_OBJECTS:
            raise ConfigError(f"max_objects: must be between 1 and {MAX_OBJECTS} (got {self.max_objects})")
        if not 1 <= self.min_objects <= self.max_objects:
            raise ConfigError(f"min_objects: must be between 1 and max_objects {self.max_objects} (got {self.min_objects})")
        _check_subset("shapes", self.shapes, SHAPES)
        _check_subset("colors", self.colors, tuple(PALETTE))
        _check_subset("backgrounds", self.backgrounds, tuple(BACKGROUNDS))
        if not self.sizes:
            raise ConfigError("sizes: needs at least one size, e.g. {small: 0.2, large: 0.3}")
        for name, frac in self.sizes.items():
            if not 0.05 <= frac <= 0.5:
                raise ConfigError(f"sizes.{name}: must be a fraction of the image between 0.05 and 0.5 (got {frac})")
        if len(set(self.sizes.values())) != len(self.sizes):
            raise ConfigError(f"sizes: two sizes have the same value ({self.sizes}); the detector could not tell them apart")
        if not 0.0 <= self.min_gap <= 0.2:
            raise ConfigError(f"min_gap: must be between 0 and 0.2 (got {self.min_gap})")
        if not 0.0 <= self.margin <= 0.2:
            raise ConfigError(f"margin: must be between 0 and 0.2 (got {self.margin})")
        if not 0.0 <= self.repeat_prob <= 1.0:
            raise ConfigError(f"repeat_prob: must be between 0 and 1 (got {self.repeat_prob})")
        for pair in self.heldout_pairs:
            color, _, shape = pair.rpartition(" ")
            if color not in self.colors or shape not in self.shapes:
                raise ConfigError(
                    f"heldout_pairs: {pair!r} must be '<colour> <shape>' with a colour from {list(self.colors)} "
                    f"and a shape from {list(self.shapes)}"
                )
        if len(self.heldout_pairs) >= len(self.colors) * len(self.shapes):
            raise ConfigError("heldout_pairs: holds out every colour-shape pair; the training splits would be empty")
        # A full scene of the smallest objects must fit easily, or sampling would loop for ever. (Scenes that
        # happen to draw large objects and do not fit are redrawn by the sampler.)
        smallest = min(self.sizes.values()) + self.min_gap
        if self.max_objects * smallest**2 > 0.5 * (1 - 2 * self.margin) ** 2:
            raise ConfigError(
                f"max_objects: {self.max_objects} objects of size {min(self.sizes.values())} do not fit in one image; "
                "lower max_objects, the sizes or min_gap"
            )

    def heldout_set(self) -> set[tuple[str, str]]:
        """The held-out pairs as (colour, shape) tuples."""
        return {tuple(p.rpartition(" ")[::2]) for p in self.heldout_pairs}  # type: ignore[misc]


def _check_subset(key: str, values: tuple[str, ...], allowed: tuple[str, ...]) -> None:
    if not values:
        raise ConfigError(f"{key}: needs at least one value from {list(allowed)}")
    for v in values:
        if v not in allowed:
            raise ConfigError(f"{key}: unknown value {v!r}; allowed: {list(allowed)}")
    if len(set(values)) != len(values):
        raise ConfigError(f"{key}: has duplicates ({list(values)})")
