"""The mini MLLM's word-level tokenizer and chat format."""

from transformers import AutoTokenizer

from unilip.data.miniworld import MiniWorldConfig
from unilip.data.miniworld.config import PALETTE, SHAPES
from unilip.data.miniworld.dataset import make_records
from unilip.data.miniworld.knowledge import knowledge_facts
from unilip.mllm.chat import IMG_CONTEXT, chat_prompt


def test_every_world_text_is_known_one_token_per_word(text_tokenizer):
    full = MiniWorldConfig(max_objects=6, shapes=SHAPES, colors=tuple(PALETTE))
    texts = [r["caption"] for r in make_records("captions", full, "test", 0, 200)]
    texts += [r["question"] for r in make_records("vqa", full, "test", 0, 200)]
    texts += [r["instruction"] for r in make_records("edit", full, "test", 0, 200)]
    texts += [f.question for f in knowledge_facts(tuple(PALETTE), SHAPES)]
    for text in texts:
        ids = text_tokenizer(text)["input_ids"]
        assert text_tokenizer.unk_token_id not in ids, text
    for answer in ("red", "three", "yes", "left", "hexagon"):
        assert len(text_tokenizer(answer)["input_ids"]) == 1
    assert text_tokenizer("a zebra")["input_ids"][-1] == text_tokenizer.unk_token_id


def test_chat_template_matches_the_prompt_builder(text_tokenizer):
    messages = [{"role": "user", "content": [{"type": "text", "text": "what color is the circle?"}, {"type": "image"}]}]
    text = text_tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert text == chat_prompt("what color is the circle?", 4)
    ids = text_tokenizer(text)["input_ids"]
    assert ids.count(text_tokenizer.convert_tokens_to_ids(IMG_CONTEXT)) == 4
    text_only = text_tokenizer.apply_chat_template([{"role": "user", "content": "what color is grass?"}],
                                                   add_generation_prompt=True, tokenize=False)
    assert text_only == chat_prompt("what color is grass?", None)


def test_saves_and_loads_without_the_hub(text_tokenizer, tmp_path):
    text_tokenizer.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    prompt = chat_prompt("how many squares are there?", 4, "two")
    assert loaded(prompt)["input_ids"] == text_tokenizer(prompt)["input_ids"]
    assert loaded.padding_side == "left" and loaded.chat_template == text_tokenizer.chat_template
