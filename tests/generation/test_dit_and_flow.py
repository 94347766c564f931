"""The SANA DiT built for each preset, the flow-matching loss's conventions, and the CFG step."""

import pytest
import torch

from unilip.config import get_preset
from unilip.generation.dit import build_dit
from unilip.generation.flow import (
    NUM_TRAIN_TIMESTEPS,
    flow_matching_loss,
    guided_velocity,
    sample_sigmas,
)


@pytest.fixture(scope="module")
def dit():
    torch.manual_seed(0)
    return build_dit(get_preset("mini").generator, latent_channels=32, latent_size=4).eval()


def test_mini_dit_shapes_and_position_embeddings(dit):
    x = torch.randn(2, 32, 4, 4)
    out = dit(x, encoder_hidden_states=torch.randn(2, 7, 128), encoder_attention_mask=torch.ones(2, 7),
              timestep=torch.tensor([10.0, 900.0])).sample
    assert out.shape == x.shape
    assert dit.patch_embed.pos_embed is not None  # interpolation_scale=1: sincos PE, as UniLIP trained with


@pytest.mark.parametrize(("name", "inner", "layers", "hidden"), [("1b", 1152, 28, 2880), ("2b", 2240, 20, 5600)])
def test_sana_presets_on_meta(name, inner, layers, hidden):
    """SANA 0.6B / 1.6B at 512 px, whose 32 x 16 x 16 latent is UniLIP's at 448 px."""
    cfg = get_preset(name).generator
    cfg.dit_pretrained = None
    with torch.device("meta"):
        m = build_dit(cfg, latent_channels=32, latent_size=16)
    sd = m.state_dict()
    assert len(m.transformer_blocks) == layers
    assert sd["patch_embed.proj.weight"].shape == (inner, 32, 1, 1) and sd["proj_out.weight"].shape == (32, inner)
    assert sd["caption_projection.linear_1.weight"].shape == (inner, 2304)
    assert sd["transformer_blocks.0.ff.conv_inverted.weight"].shape == (2 * hidden, inner, 1, 1)


def test_sigmas_are_logit_normal():
    s = sample_sigmas(20000, generator=torch.Generator().manual_seed(0))
    assert 0 < s.min() and s.max() < 1
    assert abs(float(torch.logit(s).mean())) < 0.03 and abs(float(torch.logit(s).std()) - 1) < 0.03


class _Oracle(torch.nn.Module):
    """A 'DiT' that knows x0: from x_t = (1 - s) x0 + s eps it returns eps - x0 = (x_t - x0) / s exactly."""

    def __init__(self, x0):
        super().__init__()
        self.x0 = x0

    def forward(self, x, encoder_hidden_states, encoder_attention_mask, timestep):
        s = (timestep / NUM_TRAIN_TIMESTEPS).view(-1, 1, 1, 1)
        return type("Out", (), {"sample": (x - self.x0) / s})()


def test_the_loss_conventions_x_t_target_and_timestep_scale():
    x0 = torch.randn(8, 32, 4, 4, dtype=torch.float64)
    cond, mask = torch.zeros(8, 3, 4), torch.ones(8, 3)
    assert flow_matching_loss(_Oracle(x0), x0, cond, mask) < 1e-20
    assert flow_matching_loss(_Oracle(-x0), x0, cond, mask) > 1.0  # a wrong answer is not 'perfect'


def test_the_loss_trains_the_dit_and_is_seeded(dit):
    x0, cond, mask = torch.randn(2, 32, 4, 4), torch.randn(2, 5, 128), torch.ones(2, 5)
    a = flow_matching_loss(dit, x0, cond, mask, torch.Generator().manual_seed(3))
    b = flow_matching_loss(dit, x0, cond, mask, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    a.backward()
    assert dit.caption_projection.linear_1.weight.grad.abs().sum() > 0
    dit.zero_grad()


def test_guidance_batches_both_branches_and_respects_padding(dit):
    torch.manual_seed(1)
    x, t = torch.randn(2, 32, 4, 4), torch.tensor(500.0)
    cond, mask = torch.randn(2, 6, 128), torch.tensor([[1, 1, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1]])
    uncond, umask = torch.randn(2, 3, 128), torch.ones(2, 3, dtype=torch.long)
    with torch.no_grad():
        guided = guided_velocity(dit, x, t, cond, mask, uncond, umask, guidance_scale=3.0)
        v_c = dit(x, encoder_hidden_states=cond, encoder_attention_mask=mask, timestep=t.expand(2)).sample
        v_u = dit(x, encoder_hidden_states=uncond, encoder_attention_mask=umask, timestep=t.expand(2)).sample
        plain = guided_velocity(dit, x, t.expand(2), cond, mask, uncond, umask, guidance_scale=1.0)
    torch.testing.assert_close(guided, v_u + 3.0 * (v_c - v_u), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(plain, v_c)
    assert (v_c - v_u).abs().max() > 1e-3  # the conditions matter, so the check above means something


def test_cached_condition_keys_and_values_change_nothing_and_are_put_back():
    from unilip.generation.dit import build_dit, conditions_cached

    torch.manual_seed(0)
    dit = build_dit(get_preset("mini").generator, 32, 4).eval()
    cond, mask = torch.randn(2, 7, 128), torch.ones(2, 7)
    mask[1, 5:] = 0  # a padded condition: the cached mask must be the one its keys were made with
    xs = [torch.randn(2, 32, 4, 4) for _ in range(3)]
    ts = [torch.full((2,), v) for v in (999.0, 500.0, 20.0)]
    with torch.no_grad():
        plain = [dit(x, encoder_hidden_states=cond, encoder_attention_mask=mask, timestep=t).sample for x, t in zip(xs, ts)]
        originals = [b.attn2.processor for b in dit.transformer_blocks]
        with conditions_cached(dit):
            cached = [dit(x, encoder_hidden_states=cond, encoder_attention_mask=mask, timestep=t).sample for x, t in zip(xs, ts)]
            assert dit.transformer_blocks[0].attn2.processor.key_value_mask is not None
    for a, b in zip(plain, cached):
        assert torch.equal(a, b)
    assert [b.attn2.processor for b in dit.transformer_blocks] == originals
