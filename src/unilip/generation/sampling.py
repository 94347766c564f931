"""Sampling: integrate the flow from noise (sigma = 1) to latents (sigma = 0) with a diffusers scheduler and CFG.

The conditions are computed once per call, outside the loop (the official pipeline recomputed nothing per step
either, but ignored several arguments; here every one is honoured). Schedulers: ``euler``
(``FlowMatchEulerDiscreteScheduler``, the default) or ``dpm`` (``DPMSolverMultistepScheduler`` in flow mode, the
official sampler); both are configured to the training convention ``timestep = 1000 sigma``, no shift.
"""

from __future__ import annotations

import torch
from torch import Tensor

from unilip.errors import UniLIPError
from unilip.generation.flow import NUM_TRAIN_TIMESTEPS, guided_velocity

SCHEDULERS = ("euler", "dpm")


def make_scheduler(name: str = "euler", shift: float = 1.0):
    """A fresh diffusers flow scheduler (``euler`` or ``dpm``) for the training convention sigma = t / 1000."""
    if name == "euler":
        from diffusers import FlowMatchEulerDiscreteScheduler

        return FlowMatchEulerDiscreteScheduler(num_train_timesteps=NUM_TRAIN_TIMESTEPS, shift=shift)
    if name == "dpm":
        from diffusers import DPMSolverMultistepScheduler

        return DPMSolverMultistepScheduler(num_train_timesteps=NUM_TRAIN_TIMESTEPS, prediction_type="flow_prediction",
                                           use_flow_sigmas=True, flow_shift=shift, solver_order=2)
    raise UniLIPError(f"scheduler: {name!r} is not one of {', '.join(SCHEDULERS)}")


def initial_noise(shape: tuple[int, ...], generator: torch.Generator | list[torch.Generator] | None) -> Tensor:
    """Gaussian noise on the CPU (the same numbers on every device), per image when given a list of generators."""
    if isinstance(generator, list):
        if len(generator) != shape[0]:
            raise UniLIPError(f"{len(generator)} generators for a batch of {shape[0]} images; pass one per image")
        return torch.cat([torch.randn((1, *shape[1:]), generator=g) for g in generator])
    return torch.randn(shape, generator=generator)


@torch.no_grad()
def sample_latents(dit, shape: tuple[int, ...], conditions: Tensor, mask: Tensor, uncond: Tensor | None = None,
                   uncond_mask: Tensor | None = None, guidance: float = 1.0, steps: int = 20, scheduler: str = "euler",
                   generator: torch.Generator | list[torch.Generator] | None = None, progress: bool = False) -> Tensor:
    """Latents of ``shape`` (B, C, h, w) from Gaussian noise, guided by ``guidance`` against ``uncond`` when > 1.

    ``generator``: one for the whole batch, or (diffusers' convention) a list with one per image, so that an image
    depends on its own seed only, not on what else is in the batch.
    """
    from tqdm.auto import tqdm

    if steps < 1:
        raise UniLIPError(f"steps: {steps} must be at least 1")
    if guidance != 1.0 and uncond is None:
        raise UniLIPError("guidance other than 1 needs the unconditional conditions")
    sched = make_scheduler(scheduler)
    sched.set_timesteps(steps, device=conditions.device)
    x = initial_noise(shape, generator).to(device=conditions.device, dtype=conditions.dtype)
    for t in tqdm(sched.timesteps, disable=not progress, desc="sampling", leave=False):
        timestep = t.expand(shape[0]).to(conditions.dtype)
        v = guided_velocity(dit, x, timestep, conditions, mask, uncond, uncond_mask, guidance)
        x = sched.step(v, t, x).prev_sample
    return x
