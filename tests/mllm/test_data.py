"""MLLM training data: patch labels are right, positions are deterministic and split between ranks."""

import numpy as np

from unilip.data.miniworld import MiniWorldConfig, Scene, SceneObject
from unilip.train.mllm_data import DenseAttributeData, InstructionMix, patch_labels, position_batches


def test_patch_labels_follow_the_objects():
    cfg = MiniWorldConfig()
    scene = Scene("white", (SceneObject("square", "blue", "large", 0.25, 0.25), SceneObject("circle", "red", "small", 0.75, 0.75)))
    labels = patch_labels(scene, cfg, 8)
    assert labels["color"].shape == (8, 8)
    assert labels["color"][2, 2] == 1 + cfg.colors.index("blue") and labels["shape"][2, 2] == 1 + cfg.shapes.index("square")
    assert labels["color"][6, 6] == 1 + cfg.colors.index("red") and labels["size"][6, 6] == 1 + list(cfg.sizes).index("small")
    assert labels["color"][0, 7] == 0 and labels["color"][7, 0] == 0  # empty corners are background


def test_positions_are_deterministic_and_disjoint_across_ranks():
    data = DenseAttributeData(MiniWorldConfig(), 8)
    a = next(position_batches(lambda p: p, list, 4, 3, 0, 2))
    b = next(position_batches(lambda p: p, list, 4, 3, 1, 2))
    assert a == [24, 25, 26, 27] and b == [28, 29, 30, 31]
    x1 = data.collate([data.make(p) for p in a])
    x2 = data.collate([data.make(p) for p in a])
    assert all(np.array_equal(x1[k].numpy(), x2[k].numpy()) for k in x1)


def test_mix_pattern_shares():
    pattern = InstructionMix(vqa=0.7, caption=0.15, knowledge=0.15).pattern()
    assert len(pattern) == 20 and pattern.count("vqa") == 14 and pattern.count("caption") == 3
