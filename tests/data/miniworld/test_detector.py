"""Detector: recovers the scene graph from pixels (>= 99 % of objects on 500 clean renders)."""

import numpy as np
import pytest

from unilip.data.miniworld import (
    MiniWorldConfig,
    Scene,
    SceneObject,
    detect,
    detector_accuracy,
    match_objects,
    perturb,
    render,
)
from unilip.data.miniworld.config import PALETTE, SHAPES

CFG = MiniWorldConfig()


def test_object_accuracy_on_500_clean_renders():
    result = detector_accuracy(CFG, n=500, split="test")
    assert result["object_accuracy"] >= 0.99
    assert result["background_accuracy"] == 1.0


def test_noisy_and_blurred_renders_stay_accurate():
    # Measured: 100 % with noise std 16-32 or blur sigma 1.0-1.5 on the default world (see README). Guard at 95 %.
    assert detector_accuracy(CFG, n=100, noise_std=24.0)["object_accuracy"] >= 0.95
    assert detector_accuracy(CFG, n=100, blur_sigma=1.2)["object_accuracy"] >= 0.95


def test_all_shapes_and_colours_and_other_resolutions():
    cfg = MiniWorldConfig(max_objects=6, shapes=SHAPES, colors=tuple(PALETTE))
    assert detector_accuracy(cfg, n=100)["object_accuracy"] >= 0.98
    big = MiniWorldConfig(image_size=128)
    assert detector_accuracy(big, n=50)["object_accuracy"] >= 0.98


def test_detects_what_was_drawn():
    scene = Scene("beige", (SceneObject("triangle", "blue", "large", 0.3, 0.3), SceneObject("circle", "orange", "small", 0.75, 0.7)))
    found = detect(render(scene, CFG), CFG)
    assert found.background == "beige"
    assert sorted((o.shape, o.color, o.size) for o in found.objects) == [("circle", "orange", "small"), ("triangle", "blue", "large")]
    assert match_objects(found, scene) == 2


def test_empty_image_has_no_objects_and_garbage_finds_few():
    assert detect(render(Scene("white", ()), CFG), CFG).objects == ()
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    assert len(detect(noise, CFG).objects) <= 6


def test_match_objects_counts_only_exact_matches():
    a = Scene("white", (SceneObject("circle", "red", "small", 0.3, 0.3),))
    assert match_objects(a, a) == 1
    assert match_objects(Scene("white", (SceneObject("square", "red", "small", 0.3, 0.3),)), a) == 0
    assert match_objects(Scene("white", (SceneObject("circle", "red", "small", 0.6, 0.3),)), a) == 0


def test_rejects_non_square_input():
    with pytest.raises(ValueError, match="square"):
        detect(np.zeros((64, 32, 3), np.uint8), CFG)


def test_perturb_is_seeded():
    img = render(Scene("white", (SceneObject("circle", "red", "small", 0.3, 0.3),)), CFG)
    a = perturb(img, np.random.default_rng(1), 10, 1.0)
    b = perturb(img, np.random.default_rng(1), 10, 1.0)
    assert np.array_equal(a, b) and not np.array_equal(a, img)
