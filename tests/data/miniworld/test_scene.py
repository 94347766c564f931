"""Scene sampler: seeded, JSON-round-trippable, non-overlapping, configurable, and split-disjoint."""

import json

import numpy as np
import pytest

from unilip.data.miniworld import MiniWorldConfig, Scene, sample_scene, sample_split, scene_seed
from unilip.data.miniworld.config import PALETTE, SHAPES
from unilip.data.miniworld.scene import SPLIT_SEED_BASE, boxes_clear, inside, split_of_seed
from unilip.errors import ConfigError

CFG = MiniWorldConfig()


def test_same_seed_same_scene_and_different_seeds_differ():
    assert sample_scene(CFG, 123) == sample_scene(CFG, 123)
    scenes = sample_split(CFG, "train", 0, 50)
    assert len({json.dumps(s.to_dict()) for s in scenes}) == 50


def test_scene_graph_is_plain_json_and_round_trips():
    for scene in sample_split(CFG, "val", 0, 20):
        data = json.loads(json.dumps(scene.to_dict()))
        assert Scene.from_dict(data) == scene


def test_malformed_scene_graph_is_a_clear_error():
    with pytest.raises(ConfigError, match="malformed"):
        Scene.from_dict({"background": "white", "objects": [{"shape": "circle"}]})
    with pytest.raises(ConfigError, match="unknown background"):
        Scene.from_dict({"background": "mauve", "objects": []})


def test_objects_inside_and_never_touching_with_defaults_and_crowded_config():
    crowded = MiniWorldConfig(min_objects=6, max_objects=6, shapes=SHAPES, colors=tuple(PALETTE))
    crowded.validate()
    for cfg in (CFG, crowded):
        for scene in sample_split(cfg, "train", 0, 200):
            assert cfg.min_objects <= len(scene.objects) <= cfg.max_objects
            assert scene.background in cfg.backgrounds
            for i, a in enumerate(scene.objects):
                assert inside(a, cfg)
                assert a.shape in cfg.shapes and a.color in cfg.colors and a.size in cfg.sizes
                assert all(boxes_clear(a, b, cfg) for b in scene.objects[i + 1 :])


def test_attributes_are_all_used():
    scenes = sample_split(CFG, "train", 0, 300)
    objs = [o for s in scenes for o in s.objects]
    assert {o.shape for o in objs} == set(CFG.shapes)
    assert {o.color for o in objs} == set(CFG.colors)
    assert {o.size for o in objs} == set(CFG.sizes)
    assert {len(s.objects) for s in scenes} == {1, 2, 3}
    assert any(len(s.objects) > len({(o.color, o.shape) for o in s.objects}) for s in scenes)  # repeats, for counting


def test_heldout_pairs_only_in_heldout_split():
    held = CFG.heldout_set()
    for split in ("train", "val", "test"):
        for scene in sample_split(CFG, split, 0, 300):
            assert not {(o.color, o.shape) for o in scene.objects} & held
    for scene in sample_split(CFG, "heldout", 0, 50):
        assert {(o.color, o.shape) for o in scene.objects} & held


def test_splits_are_disjoint_seed_ranges():
    assert scene_seed("train", 5) == 5
    assert scene_seed("val", 5) == SPLIT_SEED_BASE["val"] + 5
    assert len(set(SPLIT_SEED_BASE.values())) == 4
    for split in SPLIT_SEED_BASE:
        assert split_of_seed(scene_seed(split, 999)) == split
    with pytest.raises(ConfigError, match="unknown split"):
        scene_seed("dev", 0)
    with pytest.raises(ConfigError, match="index"):
        scene_seed("train", -1)


@pytest.mark.parametrize(
    "kwargs, key",
    [
        ({"max_objects": 7}, "max_objects"),
        ({"min_objects": 3, "max_objects": 2}, "min_objects"),
        ({"shapes": ("circle", "blob")}, "shapes"),
        ({"colors": ("red", "red")}, "colors"),
        ({"sizes": {"small": 0.9}}, "sizes.small"),
        ({"heldout_pairs": ("red star",)}, "heldout_pairs"),
        ({"max_objects": 6, "sizes": {"small": 0.45}}, "max_objects"),
    ],
)
def test_invalid_configs_name_the_key(kwargs, key):
    with pytest.raises(ConfigError, match=f"^{key}"):
        MiniWorldConfig(**kwargs).validate()


def test_positions_survive_json_exactly():
    rng = np.random.default_rng(0)
    for scene in sample_split(CFG, "train", 0, 20):
        for o in scene.objects:
            assert round(o.x, 4) == o.x and round(o.y, 4) == o.y
    assert rng is not None
