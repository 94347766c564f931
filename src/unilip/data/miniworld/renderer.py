"""Anti-aliased rendering of mini-world scenes.

Shapes are drawn with Pillow at ``SUPERSAMPLE`` times the target resolution and box-filtered down, so every edge
pixel holds the exact-ish fraction of the shape covering it (4x4 = 16 coverage levels). Anti-aliasing matters: a
tokenizer trained on hard aliased edges learns staircase artefacts, and a real image never has them.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from unilip.data.miniworld.config import BACKGROUNDS, PALETTE, MiniWorldConfig
from unilip.data.miniworld.scene import Scene

SUPERSAMPLE = 4


def shape_polygons(shape: str, box: tuple[float, float, float, float]) -> list[list[tuple[float, float]]]:
    """The polygons (pixel coordinates) that draw ``shape`` filling ``box`` = (x0, y0, x1, y1); circles excluded."""
    x0, y0, x1, y1 = box
    cx, cy, w, h = (x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0
    if shape == "square":
        return [[(x0, y0), (x1, y0), (x1, y1), (x0, y1)]]
    if shape == "triangle":  # isosceles, pointing up, base on the bottom edge
        return [[(cx, y0), (x1, y1), (x0, y1)]]
    if shape == "diamond":
        return [[(cx, y0), (x1, cy), (cx, y1), (x0, cy)]]
    if shape == "hexagon":  # pointy top, filling the box
        return [[(cx, y0), (x1, y0 + h / 4), (x1, y1 - h / 4), (cx, y1), (x0, y1 - h / 4), (x0, y0 + h / 4)]]
    if shape == "cross":  # a plus sign whose arms are a third of the size thick
        t = w / 6
        return [[(cx - t, y0), (cx + t, y0), (cx + t, y1), (cx - t, y1)], [(x0, cy - t), (x1, cy - t), (x1, cy + t), (x0, cy + t)]]
    raise ValueError(f"unknown shape {shape!r}")


def draw_shape(draw: ImageDraw.ImageDraw, shape: str, box: tuple[float, float, float, float], fill) -> None:
    """Draw one shape filling ``box`` (pixel coordinates, right/bottom edges exclusive)."""
    x0, y0, x1, y1 = box
    if shape == "circle":
        draw.ellipse((x0, y0, x1 - 1, y1 - 1), fill=fill)
        return
    for poly in shape_polygons(shape, (x0, y0, x1 - 1, y1 - 1)):
        draw.polygon(poly, fill=fill)


def _box_px(x: float, y: float, frac: float, px: int) -> tuple[float, float, float, float]:
    half = frac / 2
    return ((x - half) * px, (y - half) * px, (x + half) * px, (y + half) * px)


def render(scene: Scene, cfg: MiniWorldConfig, size: int | None = None) -> np.ndarray:
    """Render a scene to an (H, W, 3) uint8 array, H = W = ``size`` (default ``cfg.image_size``)."""
    return np.asarray(render_pil(scene, cfg, size))


def render_pil(scene: Scene, cfg: MiniWorldConfig, size: int | None = None) -> Image.Image:
    """Render a scene to an RGB PIL image."""
    size = size or cfg.image_size
    big = size * SUPERSAMPLE
    img = Image.new("RGB", (big, big), BACKGROUNDS[scene.background])
    draw = ImageDraw.Draw(img)
    for obj in scene.objects:
        draw_shape(draw, obj.shape, _box_px(obj.x, obj.y, cfg.sizes[obj.size], big), PALETTE[obj.color])
    return img.reduce(SUPERSAMPLE)


def shape_coverage(shape: str, x: float, y: float, frac: float, size: int) -> np.ndarray:
    """(size, size) float coverage in [0, 1] of one shape centred at (x, y) with box side ``frac`` (all in [0, 1])."""
    big = size * SUPERSAMPLE
    mask = Image.new("L", (big, big), 0)
    draw_shape(ImageDraw.Draw(mask), shape, _box_px(x, y, frac, big), 255)
    return np.asarray(mask.reduce(SUPERSAMPLE), dtype=np.float32) / 255.0
