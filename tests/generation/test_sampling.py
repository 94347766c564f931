"""Sampling: with the exact velocity both schedulers land on the target; seeds reproduce; bad arguments are errors."""

import pytest
import torch

from unilip.errors import UniLIPError
from unilip.generation.flow import NUM_TRAIN_TIMESTEPS
from unilip.generation.flow import sample_latents


class _Oracle(torch.nn.Module):
    """The velocity of the straight path from the current point to x0: (x - x0) / sigma; conditions pick x0."""

    def __init__(self, targets):
        super().__init__()
        self.targets = targets

    def forward(self, x, encoder_hidden_states, encoder_attention_mask, timestep):
        x0 = self.targets[encoder_hidden_states[:, 0, 0].long()]
        s = (timestep / NUM_TRAIN_TIMESTEPS).view(-1, 1, 1, 1)
        return type("Out", (), {"sample": (x - x0) / s})()


def _setup():
    targets = torch.randn(2, 4, 3, 3, dtype=torch.float64)
    cond = torch.zeros(2, 1, 1, dtype=torch.float64)
    cond[1] = 1  # sample 0 -> target 0, sample 1 -> target 1
    return _Oracle(targets), targets, cond, torch.ones(2, 1)


@pytest.mark.parametrize("scheduler", ["euler", "dpm"])
def test_exact_velocity_reaches_the_target(scheduler):
    oracle, targets, cond, mask = _setup()
    x = sample_latents(oracle, (2, 4, 3, 3), cond, mask, steps=8, scheduler=scheduler, generator=torch.Generator().manual_seed(0))
    # DPM-Solver hands the model integer timesteps, so the oracle's sigma is off by < 1/1000: close, not exact
    tol = 1e-4 if scheduler == "euler" else 1e-2
    torch.testing.assert_close(x, targets, rtol=tol, atol=tol)


def test_guidance_extrapolates_from_the_unconditional_target():
    oracle, targets, cond, mask = _setup()
    uncond = torch.zeros_like(cond)  # unconditional: both samples head for target 0
    x = sample_latents(oracle, (2, 4, 3, 3), cond, mask, uncond, torch.ones(2, 1), guidance_scale=2.0, steps=8,
                       generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(x[0], targets[0], rtol=1e-4, atol=1e-4)  # cond == uncond: guidance changes nothing
    torch.testing.assert_close(x[1], 2 * targets[1] - targets[0], rtol=1e-4, atol=1e-4)  # x_u + 2 (x_c - x_u)


def test_same_seed_same_latents_and_errors():
    from unilip.config import get_preset
    from unilip.generation.dit import build_dit

    torch.manual_seed(0)
    dit = build_dit(get_preset("mini").generator, 32, 4).eval()
    cond, mask = torch.randn(1, 5, 128), torch.ones(1, 5)
    a = sample_latents(dit, (1, 32, 4, 4), cond, mask, steps=3, generator=torch.Generator().manual_seed(7))
    b = sample_latents(dit, (1, 32, 4, 4), cond, mask, steps=3, generator=torch.Generator().manual_seed(7))
    c = sample_latents(dit, (1, 32, 4, 4), cond, mask, steps=3, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)
    with pytest.raises(UniLIPError, match="unconditional"):
        sample_latents(dit, (1, 32, 4, 4), cond, mask, guidance_scale=3.0)
    with pytest.raises(UniLIPError, match="scheduler"):
        sample_latents(dit, (1, 32, 4, 4), cond, mask, scheduler="ddim")


def _official_generate_image(dit, cond, mask, uncond, uncond_mask, scale, steps, noise):
    """The official `generate_image` loop, written from its description: SANA's scheduler file, the batch of
    [uncond, cond] with the latent duplicated, eps_u + s (eps_c - eps_u), ``steps`` DPM-Solver steps."""
    from diffusers import DPMSolverMultistepScheduler

    from unilip.generation.flow import OFFICIAL_SCHEDULER_CONFIG

    sched = DPMSolverMultistepScheduler.from_config(OFFICIAL_SCHEDULER_CONFIG)
    sched.set_timesteps(steps)
    x = noise
    for t in sched.timesteps:
        v = dit(torch.cat([x, x]), encoder_hidden_states=torch.cat([uncond, cond]),
                encoder_attention_mask=torch.cat([uncond_mask, mask]), timestep=t.expand(2 * x.shape[0])).sample
        v_u, v_c = v.chunk(2)
        x = sched.step(v_u + scale * (v_c - v_u), t, x).prev_sample
    return x


def test_the_official_sampler_is_sanas_file_and_our_loop_lands_on_the_official_latent():
    from unilip.config import get_preset
    from unilip.generation.dit import build_dit
    from unilip.generation.flow import (OFFICIAL_SCHEDULER_CONFIG, describe_scheduler, initial_noise, make_scheduler,
                                        scheduler_from_config)

    official = scheduler_from_config(OFFICIAL_SCHEDULER_CONFIG)
    official.set_timesteps(20)
    assert official.timesteps[:5].tolist() == [999, 982, 963, 944, 922]  # flow_shift 3
    ours = make_scheduler("dpm")
    ours.set_timesteps(20)
    assert ours.timesteps[:3].tolist() == [999, 949, 899]  # `dpm` by name: no shift, the training's timesteps
    assert (describe_scheduler(official), describe_scheduler(ours), describe_scheduler(make_scheduler())) == \
        ("dpm (flow_shift 3)", "dpm", "euler")
    with pytest.raises(UniLIPError, match="_class_name"):
        scheduler_from_config({"_class_name": "DDIMScheduler"})
    from unilip.checks import SCHEDULERS
    from unilip.generation.flow import SCHEDULER_CLASSES

    assert tuple(SCHEDULER_CLASSES) == SCHEDULERS  # every name a call may give has its class
    assert [type(make_scheduler(n)).__name__ for n in SCHEDULERS] == list(SCHEDULER_CLASSES.values())

    torch.manual_seed(0)
    dit = build_dit(get_preset("mini").generator, 32, 4).eval()
    cond, uncond, mask = torch.randn(2, 5, 128), torch.randn(2, 5, 128), torch.ones(2, 5)
    with torch.no_grad():
        x = sample_latents(dit, (2, 32, 4, 4), cond, mask, uncond, mask, 4.5, 20, official,
                           generator=torch.Generator().manual_seed(3))
        expected = _official_generate_image(dit, cond, mask, uncond, mask, 4.5, 20,
                                            initial_noise((2, 32, 4, 4), torch.Generator().manual_seed(3)))
        euler = sample_latents(dit, (2, 32, 4, 4), cond, mask, uncond, mask, 4.5, 20, "euler",
                               generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(x, expected, atol=1e-6, rtol=0)
    assert (x - euler).abs().max() > 1e-2  # the sampler matters: the test tells the two apart
