"""Edit triplets (source scene, instruction, target scene) for five kinds of edit.

``recolor``, ``remove``, ``add``, ``replace`` (the shape) and ``move``. The target is computed from the source's
scene graph, so it is exact; the instruction names the object by its shortest unique description. ``add`` and
``move`` name one of nine image regions, so a scorer can check the result without knowing the exact position.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from unilip.data.miniworld.config import MiniWorldConfig
from unilip.data.miniworld.language import article, refer
from unilip.data.miniworld.scene import Scene, SceneObject, place

EDIT_TYPES = ("recolor", "remove", "add", "replace", "move")

# The 3 x 3 grid of regions: name -> (box in [0, 1] coordinates, "at" phrase, "to" phrase).
_THIRDS = (0.0, 1 / 3, 2 / 3, 1.0)
REGIONS: dict[str, tuple[tuple[float, float, float, float], str, str]] = {}
for _r, _row in enumerate(("top", "", "bottom")):
    for _c, _col in enumerate(("left", "", "right")):
        _name = f"{_row} {_col}".strip() or "center"
        _box = (_THIRDS[_c], _THIRDS[_r], _THIRDS[_c + 1], _THIRDS[_r + 1])
        if _row and _col:
            _at, _to = f"in the {_name} corner", f"to the {_name} corner"
        elif _row:
            _at, _to = f"at the {_name}", f"to the {_name}"
        elif _col:
            _at, _to = f"on the {_name}", f"to the {_name} side"
        else:
            _at, _to = "in the center", "to the center"
        REGIONS[_name] = (_box, _at, _to)


@dataclass(frozen=True)
class Edit:
    instruction: str
    edit_type: str
    source: Scene
    target: Scene
    region: str | None = None  # for "add" and "move": where the object must end up


def region_of(obj: SceneObject) -> str:
    """The region that holds the object's centre."""
    col = min(int(obj.x * 3), 2)
    row = min(int(obj.y * 3), 2)
    return [name for name, (box, _, _) in REGIONS.items() if box[0] == _THIRDS[col] and box[1] == _THIRDS[row]][0]


def _pick(rng: np.random.Generator, options: list):
    return options[int(rng.integers(len(options)))] if options else None


def make_edit(
    scene: Scene, edit_type: str, cfg: MiniWorldConfig, rng: np.random.Generator, forbidden: set[tuple[str, str]] = frozenset()
) -> Edit | None:
    """An edit of ``edit_type`` on ``scene``, or None when the scene allows none (e.g. remove the only object).

    ``forbidden`` lists (colour, shape) pairs that the target may not contain (held-out pairs outside "heldout").
    """
    objs = list(scene.objects)
    refs = [(i, refer(scene, i)) for i in range(len(objs))]
    refs = [(i, r) for i, r in refs if r]
    if edit_type == "add":
        if len(objs) >= cfg.max_objects:
            return None
        color, shape = _pick(rng, [(c, s) for c in cfg.colors for s in cfg.shapes if (c, s) not in forbidden])
        size = _pick(rng, list(cfg.sizes))
        region = _pick(rng, list(REGIONS))
        new = place(shape, color, size, objs, cfg, rng, region=REGIONS[region][0])
        if new is None:
            return None
        verb = _pick(rng, ["add", "put", "draw"])
        text = f"{verb} {article(f'{size} {color} {shape}')} {REGIONS[region][1]}"
        return Edit(text, edit_type, scene, scene.with_objects(objs + [new]), region)
    if not refs:
        return None
    i, ref = _pick(rng, refs)
    obj = objs[i]
    if edit_type == "remove":
        if len(objs) < 2:
            return None
        text = f"{_pick(rng, ['remove', 'delete', 'take away', 'erase'])} the {ref}"
        return Edit(text, edit_type, scene, scene.with_objects(objs[:i] + objs[i + 1 :]))
    if edit_type == "recolor":
        color = _pick(rng, [c for c in cfg.colors if c != obj.color and (c, obj.shape) not in forbidden])
        if color is None:
            return None
        forms = [f"make the {ref} {color}", f"change the color of the {ref} to {color}", f"paint the {ref} {color}"]
        objs[i] = SceneObject(obj.shape, color, obj.size, obj.x, obj.y)
        return Edit(_pick(rng, forms), edit_type, scene, scene.with_objects(objs))
    if edit_type == "replace":
        shape = _pick(rng, [s for s in cfg.shapes if s != obj.shape and (obj.color, s) not in forbidden])
        if shape is None:
            return None
        forms = [f"turn the {ref} into {article(shape)}", f"replace the {ref} with {article(f'{obj.color} {shape}')}", f"change the {ref} into {article(shape)}"]
        objs[i] = SceneObject(shape, obj.color, obj.size, obj.x, obj.y)
        return Edit(_pick(rng, forms), edit_type, scene, scene.with_objects(objs))
    if edit_type == "move":
        region = _pick(rng, [r for r in REGIONS if r != region_of(obj)])
        others = objs[:i] + objs[i + 1 :]
        moved = place(obj.shape, obj.color, obj.size, others, cfg, rng, region=REGIONS[region][0])
        if moved is None:
            return None
        objs[i] = moved
        return Edit(f"move the {ref} {REGIONS[region][2]}", edit_type, scene, scene.with_objects(objs), region)
    raise ValueError(f"unknown edit type {edit_type!r}; allowed: {EDIT_TYPES}")
