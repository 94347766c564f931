"""The conditioner: frozen MLLM + learnable queries; editing puts the source features at the image positions."""

import pytest
import torch
from tiny import TINY_MODEL

from unilip.errors import UniLIPError
from unilip.generation import Conditioner
from unilip.generation.conditioner import UNCONDITIONAL_GENERATE
from unilip.mllm.vocab import IMG_CONTEXT


@pytest.fixture(scope="module")
def mllm():
    from unilip.mllm.model import MLLM
    from unilip.mllm.vocab import build_text_tokenizer
    from unilip.train.mllm import load_mllm_config

    torch.manual_seed(0)
    return MLLM.from_config(load_mllm_config(None, TINY_MODEL).model, build_text_tokenizer(image_seq_length=4))


def test_shapes_queries_last_and_the_mllm_frozen(mllm):
    c = Conditioner(mllm, num_queries=5)
    hidden, mask = c(["a red circle", "two blue squares above a green triangle"])
    assert hidden.shape[:2] == mask.shape and hidden.shape[2] == 32 and mask[:, -5:].all()
    assert mask[0].sum() < mask[1].sum() and not mask[0, 0]  # the shorter prompt is left-padded
    assert not any(p.requires_grad for p in c.mllm.parameters())
    hidden[mask.bool()].square().mean().backward()
    assert c.queries.grad.abs().sum() > 0  # gradients reach the queries through the frozen LM


def test_text_positions_match_the_mllms_own_causal_forward(mllm):
    c = Conditioner(mllm, num_queries=3)
    hidden, _ = c(["a red circle"])
    ids = mllm.tokenizer(c.prompts(["a red circle"], edit=False), return_tensors="pt")["input_ids"]
    with torch.no_grad():
        ref = c.language_model(input_ids=ids).last_hidden_state
    torch.testing.assert_close(hidden[:, : ids.shape[1]], ref)  # the queries come after: causal text is unchanged


def test_a_prompts_conditions_do_not_depend_on_its_batch(mllm):
    c = Conditioner(mllm, num_queries=3)
    with torch.no_grad():
        alone, _ = c(["a red circle"])
        batch, mask = c(["a red circle", "a large yellow square to the left of a small blue triangle"])
    valid = batch[0][mask[0].bool()]
    torch.testing.assert_close(valid, alone[0], rtol=1e-4, atol=1e-5)


def test_editing_overwrites_the_image_positions_with_the_source_features(mllm):
    c = Conditioner(mllm, num_queries=3)
    features = torch.randn(2, 4, 32)
    hidden, mask = c(["make the red circle blue", "remove the square"], features)
    ids = mllm.tokenizer(c.prompts(["make the red circle blue", "remove the square"], edit=True), return_tensors="pt",
                         padding=True)["input_ids"]
    image = ids == mllm.tokenizer.convert_tokens_to_ids(IMG_CONTEXT)
    assert image.sum() == 8
    torch.testing.assert_close(hidden[:, : ids.shape[1]][image].view(2, 4, 32), features)
    # the text after the image has read it: other features give other hidden states there
    other, _ = c(["make the red circle blue", "remove the square"], features + 1)
    assert (other[:, -1] - hidden[:, -1]).abs().max() > 1e-4


def test_prompt_texts(mllm):
    c = Conditioner(mllm, num_queries=2)
    gen = c.prompts(["a red circle", UNCONDITIONAL_GENERATE], edit=False)
    assert "Generate an image: a red circle" in gen[0] and gen[0].endswith("<img>")
    assert "Generate an image.<|im_end|>" in gen[1]  # the unconditional prompt is not wrapped again
    edit = c.prompts(["remove the square"], edit=True)[0]
    assert "Edit the image: remove the square\n<img>" + IMG_CONTEXT * 4 + "</img>" in edit
    assert all(mllm.tokenizer.unk_token_id not in ids for ids in mllm.tokenizer(gen + [edit])["input_ids"])


def test_wrong_source_features_are_a_clear_error(mllm):
    c = Conditioner(mllm, num_queries=2)
    with pytest.raises(UniLIPError, match=r"expected \(1, 4, 32\)"):
        c(["remove the square"], torch.randn(1, 3, 32))
