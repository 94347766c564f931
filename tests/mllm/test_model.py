"""The MLLM wrapper: building, the encoder swap, answering, and what the loss sees."""

import copy

import pytest
import torch

from unilip.errors import UniLIPError
from unilip.train.mllm_data import IGNORE, InstructionData, InstructionMix
from unilip.mllm.model import MLLM
from unilip.tokenizer import UniLIPTokenizer


@pytest.fixture(scope="module")
def tiny(tiny_cfg, text_tokenizer, tmp_path_factory):
    torch.manual_seed(0)
    mllm = MLLM.from_config(tiny_cfg.model, text_tokenizer)
    path = tmp_path_factory.mktemp("mllm")
    mllm.save_pretrained(path)
    return mllm, path


def test_build_save_load_answer(tiny):
    mllm, path = tiny
    assert mllm.image_seq_length == 4 and mllm.image_size == 32
    loaded = MLLM.from_pretrained(path)
    images = torch.rand(2, 3, 32, 32)
    questions = ["what color is the circle?", "how many objects are there?"]
    assert loaded.answer(questions, images) == mllm.answer(questions, images)
    assert all(isinstance(a, str) for a in loaded.answer(["what color is grass?"]))


def test_unilip_encoder_swaps_in_exactly(tiny, tiny_cfg):
    mllm, path = tiny
    cfg = copy.deepcopy(tiny_cfg.model)
    cfg.mllm.pretrained = str(path)
    tok = UniLIPTokenizer.from_config(cfg)  # its encoder is the MLLM's vision tower + projector
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        theirs = mllm.model.model.get_image_features(pixel_values=mllm.pixel_values(x)).pooler_output
        assert torch.equal(tok.features(x), theirs)
        for p in tok.encoder.parameters():
            p.add_(0.01)
        swapped = MLLM.from_pretrained(path)
        swapped.use_encoder(tok.encoder)
        assert torch.equal(swapped.model.model.get_image_features(pixel_values=swapped.pixel_values(x)).pooler_output,
                           tok.features(x))
        assert torch.equal(swapped.model.lm_head.weight, mllm.model.lm_head.weight)  # nothing else changes


def test_a_mismatched_encoder_is_refused(tiny, tiny_cfg):
    mllm, _ = tiny
    cfg = copy.deepcopy(tiny_cfg.model)
    cfg.mllm.pretrained = None
    cfg.mllm.vision.num_layers = 2
    other = UniLIPTokenizer.from_config(cfg)
    with pytest.raises(UniLIPError, match="does not fit"):
        mllm.use_encoder(other.encoder)


def test_with_encoder_shares_the_language_model_and_answers_as_a_swapped_copy(tiny, tiny_cfg):
    mllm, path = tiny
    cfg = copy.deepcopy(tiny_cfg.model)
    cfg.mllm.pretrained = str(path)
    tok = UniLIPTokenizer.from_config(cfg)
    with torch.no_grad():
        for p in tok.encoder.parameters():
            p.add_(0.05)  # a revamped encoder, unlike the MLLM's own
    before = {k: v.clone() for k, v in mllm.model.state_dict().items()}
    shared = mllm.with_encoder(tok.encoder)
    copied = copy.deepcopy(mllm)
    copied.use_encoder(tok.encoder)
    x = torch.rand(3, 3, 32, 32)
    questions = ["what color is the circle?", "how many objects are there?", "is there a square?"]
    assert shared.answer(questions, x) == copied.answer(questions, x)
    with torch.no_grad():
        feats = shared.model.model.get_image_features(pixel_values=shared.pixel_values(x)).pooler_output
        assert torch.equal(feats, tok.features(x))
    assert shared.model.model.vision_tower is tok.encoder.vision_tower  # the encoder itself, no copy
    assert shared.model.model.language_model is mllm.model.model.language_model and shared.model.lm_head is mllm.model.lm_head
    after = mllm.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # the original sees through its own encoder still
    assert mllm.model.model.vision_tower is not tok.encoder.vision_tower
    cfg.mllm.pretrained, cfg.mllm.vision.num_layers = None, 2
    with pytest.raises(UniLIPError, match="does not fit"):
        mllm.with_encoder(UniLIPTokenizer.from_config(cfg).encoder)


def test_loss_only_on_the_answer(tiny, tiny_cfg):
    mllm, _ = tiny
    data = InstructionData(tiny_cfg.model.miniworld, mllm.tokenizer, mllm.image_seq_length, InstructionMix())
    items = [data.make(p) for p in range(20)]
    for it in items:
        labelled = [t for t, lab in zip(it["ids"], it["labels"]) if lab != IGNORE]
        assert labelled[-1] == mllm.tokenizer.eos_token_id and len(labelled) >= 2
        assert it["ids"][-len(labelled):] == labelled
    batch = data.collate(items)
    assert batch["images"].shape[0] == sum(it["image"] is not None for it in items)
    out = mllm(**batch)
    assert torch.isfinite(out.loss)
