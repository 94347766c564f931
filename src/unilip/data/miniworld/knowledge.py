"""A little world knowledge for the mini MLLM: questions that name a colour, a shape or a number indirectly.

"What colour is grass?" -> green, "which shape has three corners?" -> triangle, "what is one more than two?" ->
three. The mini MLLM learns these from text alone, so that the generation issue can test knowledge-driven prompts
("a shape with three corners in the colour of grass") in miniature, as the paper's WISE benchmark does at scale.
Each fact has several phrasings; evaluation uses phrasings held out from training.
"""

from __future__ import annotations

from dataclasses import dataclass

from unilip.data.miniworld.language import NUMBER_WORDS

# Things whose colour everybody knows, by palette colour.
COLOR_OF: dict[str, tuple[str, ...]] = {
    "red": ("a tomato", "a strawberry", "a fire truck"),
    "green": ("grass", "a leaf", "a frog"),
    "blue": ("the sky", "the sea", "a blueberry"),
    "yellow": ("a banana", "the sun", "a lemon"),
    "purple": ("a plum", "an aubergine", "lavender"),
    "orange": ("an orange", "a carrot", "a pumpkin"),
    "cyan": ("a swimming pool", "a turquoise stone"),
    "pink": ("a flamingo", "a piglet"),
    "brown": ("chocolate", "a tree trunk"),
    "black": ("coal", "the night"),
}

# Descriptions of shapes without their names.
SHAPE_CLUES: dict[str, tuple[str, ...]] = {
    "triangle": ("has three corners", "has three sides"),
    "square": ("has four equal sides", "has four corners and equal sides"),
    "circle": ("is perfectly round", "has no corners"),
    "diamond": ("looks like a square standing on a corner",),
    "hexagon": ("has six sides", "has six corners"),
    "cross": ("looks like a plus sign",),
}

_COLOR_FORMS = ("what color is {thing}?", "which color does {thing} have?", "{thing} has which color?")
_SHAPE_FORMS = ("which shape {clue}?", "what shape {clue}?", "name the shape that {clue}.")
_NUMBER_FORMS = ("what is one more than {n}?", "what is {n} plus one?", "what number comes after {n}?")
_NUMBER_BACK_FORMS = ("what is one less than {n}?", "what is {n} minus one?", "what number comes before {n}?")


@dataclass(frozen=True)
class Fact:
    question: str
    answer: str
    kind: str  # "color", "shape" or "number"
    held_out: bool = False  # asked in the phrasing kept out of training (the last form of each kind)


def _phrasings(forms: tuple[str, ...], answer: str, kind: str, **fields: str) -> list[Fact]:
    return [Fact(form.format(**fields), answer, kind, held_out=i == len(forms) - 1) for i, form in enumerate(forms)]


def knowledge_facts(colors: tuple[str, ...], shapes: tuple[str, ...], max_number: int = 6) -> list[Fact]:
    """Every phrasing of every fact about the given colours, shapes and numbers up to ``max_number``."""
    facts: list[Fact] = []
    for color in colors:
        for thing in COLOR_OF.get(color, ()):
            facts += _phrasings(_COLOR_FORMS, color, "color", thing=thing)
    for shape in shapes:
        for clue in SHAPE_CLUES.get(shape, ()):
            facts += _phrasings(_SHAPE_FORMS, shape, "shape", clue=clue)
    for n in range(max_number):
        facts += _phrasings(_NUMBER_FORMS, NUMBER_WORDS[n + 1], "number", n=NUMBER_WORDS[n])
    for n in range(1, max_number + 1):
        facts += _phrasings(_NUMBER_BACK_FORMS, NUMBER_WORDS[n - 1], "number", n=NUMBER_WORDS[n])
    return facts


# ----------------------------------------------------------------------------------- knowledge-driven image prompts

# Which things and clues the generator sees in its training prompts; the rest (the last thing of each colour, the
# last clue of each shape) are kept for `unilip eval wise-mini`, so that benchmark asks for knowledge the generator
# can only have through the MLLM (which learnt every fact, from text).
def indirect_references(kind: str, held_out: bool) -> dict[str, tuple[str, ...]]:
    """colour -> things of that colour (``kind="color"``) or shape -> clues (``kind="shape"``), train or held-out."""
    table = COLOR_OF if kind == "color" else SHAPE_CLUES
    return {key: (refs[-1:] if held_out else refs[:-1]) or refs for key, refs in table.items()}


def indirect_prompt(color: str, shape: str, mode: str, rng, held_out: bool = False) -> str:
    """A one-object prompt naming its colour and/or shape through knowledge, e.g. ``mode="both"``:
    "a shape that has three corners in the color of grass" (a green triangle).

    ``mode``: ``color`` (the shape named, the colour indirect), ``shape`` (the reverse) or ``both``.
    """
    things, clues = indirect_references("color", held_out)[color], indirect_references("shape", held_out)[shape]
    thing, clue = things[int(rng.integers(len(things)))], clues[int(rng.integers(len(clues)))]
    if mode == "color":
        return f"a {shape} in the color of {thing}"
    if mode == "shape":
        return f"a {color} shape that {clue}"
    if mode == "both":
        return f"a shape that {clue} in the color of {thing}"
    raise ValueError(f"mode: {mode!r} is not one of color, shape, both")
