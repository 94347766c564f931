"""Numbers and texts checked where they enter: the CLI, the Python API and the configs share these limits.

Why one module: a NaN guidance scale, a seed of 2^64, ``-n 10**9`` or a 100,000-character prompt can only end in
black images, NaN weights, an exhausted memory or a command that never ends. Each entry point calls the same check,
so every such value is refused before any model loads, with one line naming the argument and the allowed range.
Imports nothing but :mod:`unilip.errors`.
"""

from __future__ import annotations

import math
from typing import Any

from unilip.errors import UniLIPError

#: Seeds go to ``torch.Generator.manual_seed`` after adding an image's index, so they stay well inside int64.
MAX_SEED = 2**62
#: Sampling steps: 1000 is far beyond any flow-matching schedule's use (the official default is 20).
MAX_STEPS = 1000
#: The samplers a call may name (diffusers flow schedulers; ``unilip.generation.flow.make_scheduler`` builds them).
SCHEDULERS = ("euler", "dpm", "unipc")
#: Images per prompt, scenes of the demo, records of a dataset, samples of an evaluation per prompt.
MAX_IMAGES_PER_PROMPT = 64
MAX_RECORDS = 10_000_000
#: Classifier-free guidance: 1 is off, the official default 4.5; beyond 50 there is only saturated noise.
MAX_GUIDANCE = 50.0
#: Side of an image a command resizes to (``--size``, ``--image-size``): 4096 px is 50 M RGB floats already.
MAX_IMAGE_SIZE = 4096
#: Characters of a prompt, a question or an edit instruction (CLI, Python API and web page alike): the longest
#: official benchmark prompts are a few hundred characters, and the LM's positions are bounded.
MAX_TEXT_CHARS = 1000
#: Pixels of an image a user hands a command or the web page (decoded size): 16.8 MP, any photo, not a bomb.
MAX_INPUT_PIXELS = 4096 * 4096
#: Pixels of an image after a resize (shorter side to the model's size) and before its crop.
MAX_RESIZED_PIXELS = 64_000_000
#: Batch sizes of evaluation commands.
MAX_BATCH = 4096


def short(value: Any, limit: int = 200) -> str:
    """``repr(value)`` cut to ``limit`` characters, so an error message never echoes a megabyte of input."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def check_int(name: str, value: Any, lo: int, hi: int) -> int:
    """``value`` as an int in ``[lo, hi]``, or :class:`UniLIPError` naming ``name`` and the range."""
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            as_int = int(value)
        except (TypeError, ValueError, OverflowError):
            raise UniLIPError(f"{name}: expected a whole number in [{lo}, {hi}], got {short(value)}") from None
        if isinstance(value, bool) or as_int != value:
            raise UniLIPError(f"{name}: expected a whole number in [{lo}, {hi}], got {short(value)}")
        value = as_int
    if not lo <= value <= hi:
        raise UniLIPError(f"{name}: must be in [{lo}, {hi}] (got {short(value, 40)})")
    return value


def check_float(name: str, value: Any, lo: float, hi: float, *, lo_open: bool = False, hi_open: bool = False) -> float:
    """``value`` as a finite float in ``[lo, hi]`` (``(lo`` / ``hi)`` when open), or :class:`UniLIPError`."""
    span = f"{'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise UniLIPError(f"{name}: expected a number in {span}, got {short(value)}") from None
    if isinstance(value, bool) or not math.isfinite(number):
        raise UniLIPError(f"{name}: expected a finite number in {span}, got {short(value)}")
    if number < lo or number > hi or (lo_open and number == lo) or (hi_open and number == hi):
        raise UniLIPError(f"{name}: must be in {span} (got {number:g})")
    return number


def check_text(name: str, value: Any, max_chars: int = MAX_TEXT_CHARS) -> str:
    """A non-empty prompt / question / instruction of at most ``max_chars`` characters, stripped."""
    if not isinstance(value, str):
        raise UniLIPError(f"{name}: expected text, got {type(value).__name__}")
    text = value.strip()
    if not text:
        raise UniLIPError(f"{name}: is empty")
    if len(text) > max_chars:
        raise UniLIPError(f"{name}: {len(text)} characters; at most {max_chars} are allowed")
    if "\x00" in text:
        raise UniLIPError(f"{name}: contains a NUL character")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # bytes that were not UTF-8 on the command line arrive as lone surrogates
        raise UniLIPError(f"{name}: is not valid UTF-8 text (check the terminal's or the file's encoding)") from None
    return text


def check_image_pair(x, y) -> None:
    """Two image batches of one shape (B, C, H, W), as every paired metric and loss needs."""
    if x.ndim != 4 or x.shape != y.shape:
        raise UniLIPError(f"expected two image batches of the same shape (B, C, H, W); got {tuple(x.shape)} and "
                          f"{tuple(y.shape)}")
