"""Edit triplets: the target differs from the source exactly as the instruction says."""

from collections import Counter

import numpy as np
import pytest

from unilip.data.miniworld import EDIT_TYPES, REGIONS, MiniWorldConfig, Scene, SceneObject, make_edit, region_of
from unilip.data.miniworld.dataset import make_records
from unilip.data.miniworld.scene import boxes_clear, inside

CFG = MiniWorldConfig()


def _key(o):
    return (o.shape, o.color, o.size, o.x, o.y)


def test_every_edit_type_changes_exactly_what_it_says():
    records = list(make_records("edit", CFG, "train", 0, 250))
    assert Counter(r["edit_type"] for r in records) == {t: 50 for t in EDIT_TYPES}
    for r in records:
        src, tgt, kind, text = r["scene"], r["target"], r["edit_type"], r["instruction"]
        assert src.background == tgt.background
        s, t = Counter(map(_key, src.objects)), Counter(map(_key, tgt.objects))
        gone, new = list((s - t).elements()), list((t - s).elements())
        for o in tgt.objects:
            assert inside(o, CFG)
        for i, a in enumerate(tgt.objects):
            assert all(boxes_clear(a, b, CFG) for b in tgt.objects[i + 1 :])
        if kind == "remove":
            assert len(gone) == 1 and not new and gone[0][0] in text
        elif kind == "add":
            assert not gone and len(new) == 1
            shape, color, size, x, y = new[0]
            assert f"{size} {color} {shape}" in text
            assert region_of(SceneObject(shape, color, size, x, y)) == r["region"] and REGIONS[r["region"]][1] in text
        else:
            assert len(gone) == 1 and len(new) == 1
            (s0, c0, z0, x0, y0), (s1, c1, z1, x1, y1) = gone[0], new[0]
            if kind == "recolor":
                assert (s0, z0, x0, y0) == (s1, z1, x1, y1) and c0 != c1 and c1 in text
            elif kind == "replace":
                assert (c0, z0, x0, y0) == (c1, z1, x1, y1) and s0 != s1 and s1 in text
            elif kind == "move":
                assert (s0, c0, z0) == (s1, c1, z1) and (x0, y0) != (x1, y1)
                assert region_of(SceneObject(s1, c1, z1, x1, y1)) == r["region"] != region_of(SceneObject(s0, c0, z0, x0, y0))
                assert REGIONS[r["region"]][2] in text


def test_impossible_edits_return_none():
    rng = np.random.default_rng(0)
    single = Scene("white", (SceneObject("circle", "red", "small", 0.5, 0.5),))
    assert make_edit(single, "remove", CFG, rng) is None
    full = Scene("white", tuple(SceneObject("circle", "red", "small", x, 0.5) for x in (0.15, 0.5, 0.85)))
    assert make_edit(full, "add", CFG, rng) is None
    assert make_edit(full, "recolor", CFG, rng) is None  # three identical circles: none can be named
    with pytest.raises(ValueError, match="unknown edit type"):
        make_edit(single, "rotate", CFG, rng)


def test_regions_tile_the_image():
    assert len(REGIONS) == 9
    area = sum((b[2] - b[0]) * (b[3] - b[1]) for b, _, _ in REGIONS.values())
    assert abs(area - 1) < 1e-9
    assert region_of(SceneObject("circle", "red", "small", 0.1, 0.1)) == "top left"
    assert region_of(SceneObject("circle", "red", "small", 0.5, 0.5)) == "center"
    assert region_of(SceneObject("circle", "red", "small", 0.9, 0.5)) == "right"
