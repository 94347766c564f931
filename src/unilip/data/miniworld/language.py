"""Words about mini-world scenes: relations, referring expressions and captions.

Everything here reads a scene graph and writes English; nothing looks at pixels. Captions come in several templates
(lists with counts, sizes, a total count, or a spatial relation) so that a text encoder cannot key on one phrasing.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from unilip.data.miniworld.scene import Scene, SceneObject

NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
PLURALS = {"cross": "crosses"}
RELATIONS = ("left", "right", "above", "below")
RELATION_PHRASES = {"left": "to the left of", "right": "to the right of", "above": "above", "below": "below"}

# A relation is stated only when one axis clearly dominates, so that a human would agree with it.
_RELATION_RATIO = 1.5
_RELATION_MIN = 0.1


def plural(noun: str) -> str:
    return PLURALS.get(noun, noun + "s")


def article(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def counted(n: int, phrase: str) -> str:
    """'a red circle', 'two red circles' ('phrase' ends with the noun)."""
    if n == 1:
        return article(phrase)
    words = phrase.split(" ")
    return " ".join([NUMBER_WORDS[n], *words[:-1], plural(words[-1])])


def join_and(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def relation(a: SceneObject, b: SceneObject) -> str | None:
    """Where a is relative to b ('left', 'right', 'above', 'below'), or None when no axis clearly dominates."""
    dx, dy = a.x - b.x, a.y - b.y
    if abs(dx) >= _RELATION_RATIO * abs(dy) and abs(dx) >= _RELATION_MIN:
        return "left" if dx < 0 else "right"
    if abs(dy) >= _RELATION_RATIO * abs(dx) and abs(dy) >= _RELATION_MIN:
        return "above" if dy < 0 else "below"
    return None


def relation_sentence(a: SceneObject, b: SceneObject) -> str:
    """'a red circle to the left of a blue square': where ``a`` is relative to ``b`` (a relation must fit)."""
    return f"{article(describe(a, ('color', 'shape')))} {RELATION_PHRASES[relation(a, b)]} {article(describe(b, ('color', 'shape')))}"


def describe(obj: SceneObject, attrs: tuple[str, ...]) -> str:
    """The object named by some of its attributes, in English order: size, colour, shape."""
    return " ".join(getattr(obj, a) for a in ("size", "color", "shape") if a in attrs)


def refer(scene: Scene, index: int, allowed: tuple[str, ...] = ("size", "color", "shape")) -> str | None:
    """The shortest description of object ``index`` that fits no other object ('circle', 'red circle', ...).

    ``allowed`` limits the attributes (a colour question cannot name the colour). None when no description is unique.
    """
    obj = scene.objects[index]
    for attrs in (("shape",), ("color", "shape"), ("size", "shape"), ("size", "color", "shape")):
        if not set(attrs) <= set(allowed):
            continue
        if not any(all(getattr(o, a) == getattr(obj, a) for a in attrs) for j, o in enumerate(scene.objects) if j != index):
            return describe(obj, attrs)
    return None


def group_phrases(objects: tuple[SceneObject, ...], attrs: tuple[str, ...]) -> list[str]:
    """'two red circles', 'a blue square', ...: objects grouped by ``attrs``, in order of first appearance."""
    groups = Counter(describe(o, attrs) for o in objects)
    return [counted(n, phrase) for phrase, n in groups.items()]


def caption(scene: Scene, rng: np.random.Generator) -> str:
    """A caption of the whole scene in one of several templates, chosen by ``rng``."""
    objs = scene.objects
    styles = ["list", "sized", "count"]
    if len(objs) == 2 and relation(objs[0], objs[1]) is not None and describe(objs[0], ("color", "shape")) != describe(objs[1], ("color", "shape")):
        styles += ["relation", "relation"]  # stated half the time when it can be
    style = styles[int(rng.integers(len(styles)))]
    if style == "relation":
        a, b = (objs[0], objs[1]) if rng.random() < 0.5 else (objs[1], objs[0])
        return relation_sentence(a, b)
    order = list(objs)
    if rng.random() < 0.5:  # left to right, or the sampler's order
        order.sort(key=lambda o: o.x)
    attrs = ("size", "color", "shape") if style == "sized" else ("color", "shape")
    body = join_and(group_phrases(tuple(order), attrs))
    if style == "count":
        return f"{NUMBER_WORDS[len(objs)]} {'object' if len(objs) == 1 else 'objects'}: {body}"
    return framed(body, rng)


def relation_caption(scene: Scene, rng: np.random.Generator) -> str | None:
    """'a red circle to the left of a blue square' for two objects of the scene that a relation fits (chosen by
    ``rng``), or None when no two objects differ in colour or shape with one axis clearly dominating."""
    objs = scene.objects
    pairs = [(a, b) for a in objs for b in objs if a is not b and relation(a, b) is not None
             and describe(a, ("color", "shape")) != describe(b, ("color", "shape"))]
    if not pairs:
        return None
    return relation_sentence(*pairs[int(rng.integers(len(pairs)))])


def framed(body: str, rng: np.random.Generator) -> str:
    """``body`` as is, or as "a picture of ...", "an image of ...", "there is/are ...", chosen by ``rng``."""
    frames = ["{}", "a picture of {}", "an image of {}", "there {} {}"]
    frame = frames[int(rng.integers(len(frames)))]
    if frame.startswith("there"):
        return frame.format("is" if body.startswith(("a ", "an ")) else "are", body)
    return frame.format(body)
