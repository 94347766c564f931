"""The connector: the MLLM's top layers, bidirectional over valid tokens, padding-invariant, right shapes at 1b/2b."""

import pytest
import torch
from transformers import Qwen2Config
from transformers.models.qwen2.modeling_qwen2 import Qwen2Model

from unilip.errors import UniLIPError
from unilip.generation import Connector


@pytest.fixture
def lm() -> Qwen2Model:
    torch.manual_seed(0)
    cfg = Qwen2Config(vocab_size=64, hidden_size=32, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
                      intermediate_size=64, max_position_embeddings=128)
    return Qwen2Model(cfg).eval()


def test_it_starts_as_the_top_layers_and_final_norm(lm):
    c = Connector.from_language_model(lm, 2, out_channels=48)
    for mine, theirs in zip(c.layers, lm.layers[1:]):
        for (name, a), b in zip(mine.state_dict().items(), theirs.state_dict().values()):
            assert torch.equal(a, b), name
    assert torch.equal(c.norm.weight, lm.norm.weight)


def test_the_top_layers_reproduce_the_language_model_on_causal_input(lm):
    """With every layer copied and a causal mask the connector's layers *are* the LM: same hidden states."""
    c = Connector.from_language_model(lm, 3, out_channels=8).eval()
    ids = torch.randint(0, 64, (2, 7))
    with torch.no_grad():
        ref = lm(input_ids=ids).last_hidden_state
        h = lm.embed_tokens(ids)
        pos = torch.arange(7)[None].expand(2, -1)
        emb = c.rotary_emb(h, pos)
        causal = torch.full((7, 7), torch.finfo(h.dtype).min).triu(1)[None, None]
        for layer in c.layers:
            h = layer(h, attention_mask=causal, position_ids=pos, position_embeddings=emb)
    torch.testing.assert_close(c.norm(h), ref)


def test_bidirectional_every_position_sees_later_tokens(lm):
    c = Connector.from_language_model(lm, 2, out_channels=8).eval()
    h = torch.randn(1, 6, 32)
    mask = torch.ones(1, 6, dtype=torch.long)
    changed = h.clone()
    changed[0, -1] += 1.0
    with torch.no_grad():
        a, b = c(h, mask), c(changed, mask)
    assert (a[0, 0] - b[0, 0]).abs().max() > 1e-4  # a causal stack would leave position 0 untouched


def test_padding_changes_nothing_and_comes_out_zero(lm):
    c = Connector.from_language_model(lm, 2, out_channels=8).eval()
    torch.manual_seed(1)
    x = torch.randn(1, 5, 32)
    pad = torch.randn(1, 3, 32) * 100  # garbage in the padded slots
    with torch.no_grad():
        alone = c(x, torch.ones(1, 5))
        right = c(torch.cat([x, pad], 1), torch.tensor([[1] * 5 + [0] * 3]))
        left = c(torch.cat([pad, x], 1), torch.tensor([[0] * 3 + [1] * 5]))
    torch.testing.assert_close(right[:, :5], alone, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(left[:, 3:], alone, rtol=1e-5, atol=1e-5)
    assert right[:, 5:].abs().max() == 0 and left[:, :3].abs().max() == 0


def test_a_fully_padded_row_in_half_precision_is_finite(lm):
    c = Connector.from_language_model(lm.to(torch.bfloat16), 1, out_channels=8)
    out = c(torch.randn(2, 4, 32, dtype=torch.bfloat16), torch.tensor([[1, 1, 0, 0], [0, 0, 0, 0]]))
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all() and out[1].abs().max() == 0


def test_gradients_reach_the_layers_and_the_projection(lm):
    c = Connector.from_language_model(lm, 1, out_channels=8)
    c(torch.randn(2, 4, 32), torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]])).square().mean().backward()
    assert c.proj.weight.grad.abs().sum() > 0 and c.layers[0].self_attn.q_proj.weight.grad.abs().sum() > 0


def test_bad_layer_counts_and_shapes_are_clear_errors(lm):
    with pytest.raises(UniLIPError, match="connector_layers: 4"):
        Connector.from_language_model(lm, 4, out_channels=8)
    c = Connector.from_language_model(lm, 1, out_channels=8)
    with pytest.raises(UniLIPError, match="expected hidden"):
        c(torch.randn(2, 4, 32), torch.ones(2, 5))


@pytest.mark.parametrize(("name", "dim"), [("1b", 896), ("2b", 1536)])
def test_full_presets_on_meta(name, dim):
    """Official §3.4: six Qwen2 layers of width D, then Linear(D -> 2304) into SANA's caption channels."""
    from unilip.config import get_preset
    from unilip.mllm.model import internvl_config
    from unilip.mllm.chat import build_text_tokenizer

    cfg = get_preset(name)
    text = internvl_config(cfg, build_text_tokenizer(image_seq_length=256)).text_config
    with torch.device("meta"):
        c = Connector(text, cfg.generator.connector_layers, cfg.generator.caption_channels)
        out = c(torch.empty(2, 300, dim), torch.ones(2, 300, dtype=torch.bool))
    assert len(c.layers) == 6 and c.proj.weight.shape == (2304, dim) and out.shape == (2, 300, 2304)
    assert [layer.self_attn.layer_idx for layer in c.layers] == list(range(text.num_hidden_layers - 6, text.num_hidden_layers))
