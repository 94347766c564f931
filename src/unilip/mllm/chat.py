"""The MLLM's chat format (InternVL's) and the mini MLLM's text tokenizer: word-level, over the mini world's words.

Built with the ``tokenizers`` library and wrapped as transformers' ``PreTrainedTokenizerFast``, so it saves beside
the model (``tokenizer.json``) and loads with ``AutoTokenizer.from_pretrained`` — no hub download. One word is one
token, so every one-word answer is exactly one token.

The chat format is InternVL's (Qwen2's ``<|im_start|>`` / ``<|im_end|>``), with an image written as ``<img>``,
``image_seq_length`` x ``<IMG_CONTEXT>``, ``</img>``; :func:`chat_prompt` and the saved ``chat_template`` agree.
"""

from __future__ import annotations

import re

from unilip.errors import UniLIPError

PAD, UNK, IM_START, IM_END = "<pad>", "<unk>", "<|im_start|>", "<|im_end|>"
IMG_START, IMG_END, IMG_CONTEXT = "<img>", "</img>", "<IMG_CONTEXT>"
SPECIAL_TOKENS = (PAD, UNK, IM_START, IM_END, IMG_START, IMG_END, IMG_CONTEXT)

def chat_template(image_seq_length: int) -> str:
    """The Jinja chat template saved with the tokenizer (messages whose content is text or [{type: text|image}];
    put the text first, as :func:`chat_prompt` does)."""
    image = IMG_START + IMG_CONTEXT * image_seq_length + IMG_END
    return (
        "{% for m in messages %}" + IM_START + "{{ m['role'] }}\n"
        "{% if m['content'] is string %}{{ m['content'] }}{% else %}{% for c in m['content'] %}"
        "{% if c['type'] == 'image' %}{{ '\\n' }}" + image + "{% else %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}"
        + IM_END + "\n{% endfor %}{% if add_generation_prompt %}" + IM_START + "assistant\n{% endif %}"
    )


# Markup a user cannot type: our special tokens, and any Qwen2-style `<|...|>` control token of a converted InternVL.
_MARKUP = re.compile("|".join([re.escape(t) for t in SPECIAL_TOKENS if t.startswith("<")] + [r"<\|[^|<>\s]*\|>"]),
                     re.IGNORECASE)


def check_plain_text(text: str) -> None:
    """Refuse a prompt, question or instruction that holds chat markup (``<img>``, ``<IMG_CONTEXT>``, ``<|im_end|>``):
    typed into the template it would end the user's turn or claim image positions that carry no image."""
    found = _MARKUP.search(text)
    if found:
        raise UniLIPError(f"the text contains {found.group(0)!r}, which is chat markup (a special token of the "
                          "MLLM's template) and cannot be part of a prompt, question or instruction")


def chat_prompt(question: str, image_seq_length: int | None, answer: str | None = None) -> str:
    """One user turn (``question``, then an image when ``image_seq_length`` is given) and the assistant's start;
    with ``answer``, the finished assistant turn (for training).

    The question comes before the image, as in UniLIP's own editing prompts ("Edit the image: ...\n<image>"): with
    causal attention every image token can then check itself against the question ("am I the red circle?"), which
    a 4-layer language model needs to find the objects a question names (image first, it answered "where is the
    triangle?" with another object's place about half the time).
    """
    check_plain_text(question)
    image = f"\n{IMG_START}{IMG_CONTEXT * image_seq_length}{IMG_END}" if image_seq_length else ""
    text = f"{IM_START}user\n{question}{image}{IM_END}\n{IM_START}assistant\n"
    return text if answer is None else f"{text}{answer}{IM_END}\n"


def build_text_tokenizer(vocabulary: list[str] | None = None, image_seq_length: int = 16):
    """A word-level ``PreTrainedTokenizerFast`` over ``vocabulary`` (default: the mini world's, :func:`unilip.data.miniworld.vocabulary.world_vocabulary`)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    if vocabulary is None:
        from unilip.data.miniworld.vocabulary import world_vocabulary

        vocabulary = world_vocabulary()
    entries = list(SPECIAL_TOKENS) + [w for w in vocabulary if w not in SPECIAL_TOKENS]
    core = Tokenizer(models.WordLevel(vocab={w: i for i, w in enumerate(entries)}, unk_token=UNK))
    core.normalizer = normalizers.Lowercase()
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, unk_token=UNK, pad_token=PAD, eos_token=IM_END,
        additional_special_tokens=[IM_START, IMG_START, IMG_END, IMG_CONTEXT], padding_side="left",  # generation appends on the right
    )
    tokenizer.chat_template = chat_template(image_seq_length)
    return tokenizer
