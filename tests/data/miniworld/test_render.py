"""Renderer: exact colours inside shapes, anti-aliased edges, any resolution."""

import numpy as np

from unilip.data.miniworld import MiniWorldConfig, Scene, SceneObject, render
from unilip.data.miniworld.config import BACKGROUNDS, PALETTE
from unilip.data.miniworld.renderer import shape_coverage

CFG = MiniWorldConfig()


def _scene(shape="square", color="red", size="large", x=0.5, y=0.5, bg="white"):
    return Scene(bg, (SceneObject(shape, color, size, x, y),))


def test_shape_and_dtype_at_several_sizes():
    for px in (32, 64, 100, 256):
        img = render(_scene(), CFG, px)
        assert img.shape == (px, px, 3) and img.dtype == np.uint8


def test_fill_background_and_antialiased_edges():
    img = render(_scene("circle"), CFG, 64)
    assert tuple(img[32, 32]) == PALETTE["red"]
    assert tuple(img[1, 1]) == BACKGROUNDS["white"]
    colours = {tuple(p) for p in img.reshape(-1, 3)}
    assert len(colours) > 4  # blends between red and white exist on the edge: anti-aliasing


def test_coverage_areas_match_geometry():
    side = 0.3 * 128
    area = {s: shape_coverage(s, 0.5, 0.5, 0.3, 128).sum() for s in ("square", "circle", "triangle")}
    assert abs(area["square"] - side**2) / side**2 < 0.05
    assert abs(area["circle"] - np.pi / 4 * side**2) / side**2 < 0.05
    assert abs(area["triangle"] - side**2 / 2) / side**2 < 0.05


def test_render_is_deterministic():
    s = _scene("triangle", "blue", "small", 0.3, 0.7, "beige")
    assert np.array_equal(render(s, CFG), render(s, CFG))
