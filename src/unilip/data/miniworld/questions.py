"""Questions with one-word answers about mini-world scenes, balanced per type.

Four types: ``count`` (zero .. max_objects), ``color`` (one of the configured colours), ``exist`` (yes / no, with
hard negatives that share a colour or a shape with something present) and ``position`` (left / right / above /
below, asked only when one axis clearly dominates). :func:`question_with_answer` writes a question whose answer is
given, so a dataset can draw the answer uniformly first: a model that always says the same word scores chance.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from unilip.data.miniworld.config import MiniWorldConfig
from unilip.data.miniworld.language import (
    NUMBER_WORDS,
    RELATIONS,
    plural,
    refer,
    relation,
)
from unilip.data.miniworld.scene import Scene

QUESTION_TYPES = ("count", "color", "exist", "position")


@dataclass(frozen=True)
class Question:
    question: str
    answer: str
    qtype: str


def answer_space(qtype: str, cfg: MiniWorldConfig) -> tuple[str, ...]:
    """Every answer a question of this type can have (chance level = 1 / len)."""
    if qtype == "count":
        return NUMBER_WORDS[: cfg.max_objects + 1]
    if qtype == "color":
        return tuple(cfg.colors)
    if qtype == "exist":
        return ("yes", "no")
    if qtype == "position":
        return RELATIONS
    raise ValueError(f"unknown question type {qtype!r}; allowed: {QUESTION_TYPES}")


def _pick(rng: np.random.Generator, options: list):
    return options[int(rng.integers(len(options)))] if options else None


def _count_questions(scene: Scene, cfg: MiniWorldConfig, forbidden: set[tuple[str, str]]) -> dict[int, list[str]]:
    """Every count question about the scene, by its answer."""
    objs = scene.objects
    out: dict[int, list[str]] = {}
    out.setdefault(len(objs), []).extend(["how many objects are there?", "how many shapes are in the picture?"])
    for shape in cfg.shapes:
        out.setdefault(sum(o.shape == shape for o in objs), []).append(f"how many {plural(shape)} are there?")
    for color in cfg.colors:
        out.setdefault(sum(o.color == color for o in objs), []).append(f"how many {color} objects are there?")
        for shape in cfg.shapes:
            if (color, shape) not in forbidden:
                n = sum(o.color == color and o.shape == shape for o in objs)
                out.setdefault(n, []).append(f"how many {color} {plural(shape)} are there?")
    for size in cfg.sizes:
        out.setdefault(sum(o.size == size for o in objs), []).append(f"how many {size} objects are there?")
    return out


def _exist_question(scene: Scene, yes: bool, cfg: MiniWorldConfig, forbidden: set[tuple[str, str]], rng: np.random.Generator) -> str | None:
    present = {(o.color, o.shape) for o in scene.objects}
    if yes:
        color, shape = _pick(rng, sorted(present))
        forms = [f"is there a {color} {shape}?", f"is there a {shape}?", f"are there any {color} objects?"]
        return _pick(rng, forms)
    colors, shapes = {c for c, _ in present}, {s for _, s in present}
    absent = [(c, s) for c in cfg.colors for s in cfg.shapes if (c, s) not in present and (c, s) not in forbidden]
    hard = [(c, s) for c, s in absent if c in colors or s in shapes]  # shares a colour or a shape with the scene
    forms = [f"is there a {c} {s}?" for c, s in (hard or absent)]
    forms += [f"is there a {s}?" for s in cfg.shapes if s not in shapes]
    forms += [f"are there any {c} objects?" for c in cfg.colors if c not in colors]
    return _pick(rng, forms)


def question_with_answer(
    scene: Scene, qtype: str, answer: str, cfg: MiniWorldConfig, rng: np.random.Generator, forbidden: set[tuple[str, str]] = frozenset()
) -> Question | None:
    """A question of type ``qtype`` about ``scene`` whose answer is ``answer``, or None when the scene has none.

    ``forbidden`` lists (colour, shape) pairs the question may not mention (the held-out pairs, outside "heldout").
    """
    objs = scene.objects
    text: str | None = None
    if qtype == "count":
        text = _pick(rng, _count_questions(scene, cfg, forbidden).get(NUMBER_WORDS.index(answer), []))
    elif qtype == "color":
        refs = [refer(scene, i, ("size", "shape")) for i, o in enumerate(objs) if o.color == answer]
        ref = _pick(rng, [r for r in refs if r])
        if ref:
            text = _pick(rng, [f"what color is the {ref}?", f"which color does the {ref} have?"])
    elif qtype == "exist":
        text = _exist_question(scene, answer == "yes", cfg, forbidden, rng)
    elif qtype == "position":
        pairs = []
        for i, a in enumerate(objs):
            for j, b in enumerate(objs):
                if i != j and relation(a, b) == answer:
                    ra, rb = refer(scene, i), refer(scene, j)
                    if ra and rb:
                        pairs.append((ra, rb))
        pair = _pick(rng, pairs)
        if pair:
            a, b = pair
            text = _pick(rng, [f"where is the {a} relative to the {b}?", f"where is the {a} compared to the {b}?"])
    else:
        raise ValueError(f"unknown question type {qtype!r}; allowed: {QUESTION_TYPES}")
    return Question(text, answer, qtype) if text else None
