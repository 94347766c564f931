"""Every word the mini world can say: its captions, questions, edit instructions, knowledge facts and the prompts
the models are given. The mini MLLM's word-level tokenizer (:func:`unilip.mllm.chat.build_text_tokenizer`) is built
over this list, so one word is one token and no text of the world is ever unknown."""

from __future__ import annotations

import re

from unilip.data.miniworld.config import PALETTE, SHAPES, MiniWorldConfig
from unilip.data.miniworld.edits import REGIONS
from unilip.data.miniworld.language import NUMBER_WORDS, RELATION_PHRASES, plural

# Instructions the unilip models are prompted with (understanding, captioning, and the generation issue's prompts).
PROMPT_TEXTS = (
    "describe the image.", "generate an image:", "generate an image.", "edit the image:", "edit the image.",
    "user", "assistant", "answer with one word.",
)
_WORD = re.compile(r"\w+|[^\w\s]+")  # the same split as tokenizers' Whitespace pre-tokenizer


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def world_vocabulary(n_samples: int = 400) -> list[str]:
    """Every word the mini world's captions, questions, edits, knowledge facts and prompts can use, sorted.

    Drawn from the richest world (all shapes, all colours, up to 6 objects), so one vocabulary serves every config.
    """
    from unilip.data.miniworld.dataset import make_records
    from unilip.data.miniworld.knowledge import knowledge_facts

    full = MiniWorldConfig(max_objects=6, shapes=SHAPES, colors=tuple(PALETTE))
    vocab: set[str] = set()
    texts = list(PROMPT_TEXTS) + list(NUMBER_WORDS) + list(RELATION_PHRASES.values()) + ["left", "right", "above", "below", "yes", "no"]
    texts += list(PALETTE) + list(SHAPES) + [plural(s) for s in SHAPES] + list(full.sizes) + ["small", "large"]
    texts += [phrase for _, at, to in REGIONS.values() for phrase in (at, to)]
    for task, key in (("captions", "caption"), ("vqa", "question"), ("vqa", "answer"), ("edit", "instruction")):
        texts += [r[key] for r in make_records(task, full, "train", 0, n_samples)]
    texts += [t for f in knowledge_facts(tuple(PALETTE), SHAPES) for t in (f.question, f.answer)]
    for text in texts:
        vocab.update(words(text))
    return sorted(vocab)
