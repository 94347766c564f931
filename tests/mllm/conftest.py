"""A tiny MLLM config shared by the MLLM tests (32 px, one layer everywhere)."""

import pytest

TINY_MLLM = [
    "model.mllm.vision.hidden_size=32", "model.mllm.vision.num_layers=1", "model.mllm.vision.num_heads=2",
    "model.mllm.vision.intermediate_size=64", "model.mllm.vision.image_size=32",
    "model.mllm.language.hidden_size=32", "model.mllm.language.num_layers=1", "model.mllm.language.num_heads=2",
    "model.mllm.language.num_kv_heads=1", "model.mllm.language.intermediate_size=64",
    "model.tokenizer.image_size=32", "model.tokenizer.decoder_block_out_channels=[8, 8, 16, 16, 32]",
    "model.tokenizer.decoder_attention_head_dim=8", "model.generator.connector_layers=1",
    "model.miniworld.image_size=32", "model.miniworld.sizes={small: 0.3, large: 0.45}", "model.miniworld.max_objects=2",
]


@pytest.fixture(scope="session")
def text_tokenizer():
    from unilip.mllm.vocab import build_text_tokenizer

    return build_text_tokenizer(image_seq_length=4)


@pytest.fixture(scope="session")
def tiny_cfg():
    from unilip.train.mllm import load_mllm_config

    return load_mllm_config(None, TINY_MLLM)
