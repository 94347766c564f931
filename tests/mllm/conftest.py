"""A tiny MLLM config shared by the MLLM tests (32 px, one layer everywhere)."""

import pytest
from tiny import TINY_MODEL




@pytest.fixture(scope="session")
def text_tokenizer():
    from unilip.mllm.chat import build_text_tokenizer

    return build_text_tokenizer(image_seq_length=4)


@pytest.fixture(scope="session")
def tiny_cfg():
    from unilip.train.mllm import load_mllm_config

    return load_mllm_config(None, TINY_MODEL)
