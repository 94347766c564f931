"""The conditioner: frozen MLLM + learnable queries; editing puts the source features at the image positions."""

import pytest
import torch
from tiny import TINY_MODEL

from unilip.errors import UniLIPError
from unilip.generation import Conditioner
from unilip.generation.conditioner import UNCONDITIONAL_GENERATE
from unilip.mllm.chat import IMG_CONTEXT


@pytest.fixture(scope="module")
def mllm():
    from unilip.mllm.model import MLLM
    from unilip.mllm.chat import build_text_tokenizer
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


def _one_pass(c, instructions, features=None):
    """The reference: one causal LM pass over prompt + queries (what the prefix/extend split must equal)."""
    from unilip.generation.connector import positions_from_mask

    tok = c.mllm.tokenizer
    enc = tok(c.prompts(instructions, features is not None), return_tensors="pt", padding=True)
    embeds = c.language_model.get_input_embeddings()(enc["input_ids"])
    image = enc["input_ids"] == tok.convert_tokens_to_ids(IMG_CONTEXT)
    if features is not None:
        embeds = embeds.masked_scatter(image[..., None], features)
    embeds = torch.cat([embeds, c.queries.expand(len(instructions), -1, -1)], 1)
    mask = torch.cat([enc["attention_mask"], torch.ones(len(instructions), c.queries.shape[1], dtype=torch.long)], 1)
    hidden = c.language_model(inputs_embeds=embeds, attention_mask=mask, position_ids=positions_from_mask(mask)).last_hidden_state
    image = torch.cat([image, torch.zeros(len(instructions), c.queries.shape[1], dtype=torch.bool)], 1)
    return (hidden.masked_scatter(image[..., None], features) if features is not None else hidden), mask


@pytest.mark.parametrize("edit", [False, True])
def test_queries_on_a_cached_prefix_equal_one_pass_and_prefixes_restack(mllm, edit):
    from unilip.generation.conditioner import Prefix

    torch.manual_seed(1)
    c = Conditioner(mllm, num_queries=3)
    texts = ["a red circle", "two blue squares above a green triangle", UNCONDITIONAL_GENERATE]
    features = torch.randn(3, 4, 32) if edit else None
    with torch.no_grad():
        ref, ref_mask = _one_pass(c, texts, features)
    hidden, mask = c(texts, features)
    assert torch.equal(mask, ref_mask)
    torch.testing.assert_close(hidden[mask.bool()], ref[ref_mask.bool()], rtol=1e-5, atol=1e-6)
    # a prefix split into items and restacked in another order gives each item the same conditions
    prefix = c.prefix(texts, features)
    items = prefix.split()
    assert [p.hidden.shape[1] for p in items] == prefix.mask.sum(1).tolist()
    again, again_mask = c.extend(Prefix.stack([items[2], items[0], items[1]]))
    for new, old in ((0, 2), (1, 0), (2, 1)):
        torch.testing.assert_close(again[new][again_mask[new].bool()], hidden[old][mask[old].bool()], rtol=1e-5, atol=1e-6)
    again[again_mask.bool()].square().mean().backward()
    assert c.queries.grad.abs().sum() > 0
