"""Flow matching (rectified flow) in the UniLIP latent: the training loss, the classifier-free-guidance step, and
the sampler that integrates the flow with a diffusers scheduler.

Training (the official code's ``forward``, nnnth/UniLIP ``unilip/model/language_model/unilip_internvl.py``):
sigma ~ logit-normal(0, 1); x_t = (1 - sigma) x0 + sigma eps; the DiT predicts the velocity v = eps - x0 at timestep
1000 sigma; the loss is the MSE in fp32. Sampling integrates dx/dsigma = v from sigma = 1 (noise) to 0 with a diffusers
flow scheduler; :func:`guided_velocity` is the CFG step every sampler shares.

Schedulers are diffusers' own. By name: ``euler`` (``FlowMatchEulerDiscreteScheduler``), ``dpm``
(``DPMSolverMultistepScheduler``, DPM-Solver++ 2M in flow mode) or ``unipc`` (``UniPCMultistepScheduler``), all at the
training convention ``timestep = 1000 sigma`` with no shift. The official sampler is neither: it is SANA's own scheduler file
(:data:`OFFICIAL_SCHEDULER_CONFIG`, DPM-Solver++ with ``flow_shift`` 3.0, timesteps 999, 982, 963, ... at 20 steps),
which a converted official generator records in its directory and the pipeline uses by default. The conditions are
computed once per call, outside the loop, by the caller (:class:`unilip.pipeline.UniLIPPipeline`).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from unilip.checks import SCHEDULERS
from unilip.errors import UniLIPError
from unilip.generation.dit import conditions_cached

NUM_TRAIN_TIMESTEPS = 1000


def sample_sigmas(batch: int, device: torch.device | str = "cpu", generator: torch.Generator | None = None) -> Tensor:
    """Logit-normal noise levels in (0, 1): sigmoid of a standard normal (SD3's and UniLIP's weighting)."""
    return torch.sigmoid(torch.randn(batch, device=device, generator=generator))


def flow_matching_loss(dit, x0: Tensor, conditions: Tensor, mask: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """MSE between the DiT's velocity and eps - x0 at a random noise level per sample.

    ``x0``: scaled latents (B, C, h, w); ``conditions``: (B, L, caption_channels); ``mask``: (B, L), 1 = real token.
    """
    sigma = sample_sigmas(x0.shape[0], x0.device, generator)
    noise = torch.randn(x0.shape, device=x0.device, dtype=x0.dtype, generator=generator)
    s = sigma.view(-1, 1, 1, 1).to(x0.dtype)
    x_t = (1 - s) * x0 + s * noise
    v = dit(x_t, encoder_hidden_states=conditions, encoder_attention_mask=mask, timestep=sigma * NUM_TRAIN_TIMESTEPS).sample
    return F.mse_loss(v.float(), (noise - x0).float())


def guided_velocity(dit, x: Tensor, timestep: Tensor, conditions: Tensor, mask: Tensor, uncond: Tensor | None,
                    uncond_mask: Tensor | None, guidance_scale: float) -> Tensor:
    """Classifier-free guidance: v_u + s (v_c - v_u), s = ``guidance_scale``, with both branches in one batched DiT
    call (at s = 1 the conditional branch alone, and ``uncond`` may be None).

    Condition sequences of different lengths are right-padded to a common length (the masks hide the padding).
    """
    if guidance_scale == 1.0:
        return dit(x, encoder_hidden_states=conditions, encoder_attention_mask=mask, timestep=timestep).sample
    length = max(conditions.shape[1], uncond.shape[1])
    cond_all = torch.cat([F.pad(uncond, (0, 0, 0, length - uncond.shape[1])),
                          F.pad(conditions, (0, 0, 0, length - conditions.shape[1]))])
    mask_all = torch.cat([F.pad(uncond_mask, (0, length - uncond_mask.shape[1])),
                          F.pad(mask, (0, length - mask.shape[1]))])
    t = timestep.expand(x.shape[0]) if timestep.ndim == 0 else timestep
    v_u, v_c = dit(torch.cat([x, x]), encoder_hidden_states=cond_all, encoder_attention_mask=mask_all,
                   timestep=torch.cat([t, t])).sample.chunk(2)
    return v_u + guidance_scale * (v_c - v_u)


# ------------------------------------------------------------------------------------------------------ sampling


#: Where a generator directory records its default sampler (diffusers' own file name and format).
SCHEDULER_CONFIG_NAME = "scheduler_config.json"

#: The scheduler file SANA ships (``scheduler/scheduler_config.json`` of Efficient-Large-Model/Sana_600M_512px_diffusers
#: and its siblings), which the official UniLIP pipeline loads with ``DPMSolverMultistepScheduler.from_pretrained``.
OFFICIAL_SCHEDULER_CONFIG = {
    "_class_name": "DPMSolverMultistepScheduler", "algorithm_type": "dpmsolver++", "solver_order": 2,
    "solver_type": "midpoint", "prediction_type": "flow_prediction", "use_flow_sigmas": True, "flow_shift": 3.0,
    "num_train_timesteps": NUM_TRAIN_TIMESTEPS, "final_sigmas_type": "zero", "lower_order_final": True,
    "euler_at_final": False, "timestep_spacing": "linspace", "steps_offset": 0, "beta_schedule": "linear",
    "beta_start": 0.0001, "beta_end": 0.02, "lambda_min_clipped": float("-inf"), "use_karras_sigmas": False,
    "use_exponential_sigmas": False, "use_beta_sigmas": False, "use_lu_lambdas": False, "thresholding": False,
    "variance_type": None,
}

#: The diffusers class behind each sampler name; the classes a directory's ``scheduler_config.json`` may name.
SCHEDULER_CLASSES = {"euler": "FlowMatchEulerDiscreteScheduler", "dpm": "DPMSolverMultistepScheduler",
                     "unipc": "UniPCMultistepScheduler"}


def make_scheduler(name: str = "euler", shift: float = 1.0):
    """A fresh diffusers flow scheduler (``euler``, ``dpm`` = DPM-Solver++ 2M, ``unipc`` = UniPC 2nd order) for the
    training convention sigma = t / 1000."""
    if name == "euler":
        from diffusers import FlowMatchEulerDiscreteScheduler

        return FlowMatchEulerDiscreteScheduler(num_train_timesteps=NUM_TRAIN_TIMESTEPS, shift=shift)
    if name == "dpm":
        from diffusers import DPMSolverMultistepScheduler

        return DPMSolverMultistepScheduler(num_train_timesteps=NUM_TRAIN_TIMESTEPS, prediction_type="flow_prediction",
                                           use_flow_sigmas=True, flow_shift=shift, solver_order=2)
    if name == "unipc":
        from diffusers import UniPCMultistepScheduler

        return UniPCMultistepScheduler(num_train_timesteps=NUM_TRAIN_TIMESTEPS, prediction_type="flow_prediction",
                                       use_flow_sigmas=True, flow_shift=shift, solver_order=2)
    raise UniLIPError(f"scheduler: {name!r} is not one of {', '.join(SCHEDULERS)}")


def scheduler_from_config(config: dict, where: str = "scheduler config"):
    """A fresh scheduler from a diffusers scheduler config (``scheduler.config`` or a ``scheduler_config.json``'s
    contents); only the flow-capable classes of :data:`SCHEDULER_CLASSES`."""
    import diffusers

    name = config.get("_class_name")
    if name not in SCHEDULER_CLASSES.values():
        raise UniLIPError(f"{where}: _class_name {name!r} is not one of {', '.join(SCHEDULER_CLASSES.values())}")
    try:
        return getattr(diffusers, name).from_config(dict(config))
    except (TypeError, ValueError) as err:
        raise UniLIPError(f"{where}: {err}") from None


def load_scheduler(directory):
    """The default sampler a generator directory records (``scheduler_config.json``, diffusers' format), or None
    when it records none (then the pipeline samples with Euler)."""
    from pathlib import Path

    from unilip.hub import read_config_json

    path = Path(directory) / SCHEDULER_CONFIG_NAME
    if not path.is_file():
        return None
    return scheduler_from_config(read_config_json(path, "the sampler's settings"), str(path))


def describe_scheduler(scheduler) -> str:
    """``euler``, ``dpm``, or e.g. ``dpm (flow_shift 3)``: what a log line or a settings file records."""
    class_name = type(scheduler).__name__
    name = next((n for n, c in SCHEDULER_CLASSES.items() if c == class_name), class_name)
    shift = scheduler.config.get("flow_shift", scheduler.config.get("shift", 1.0))
    return name if shift == 1.0 else f"{name} (flow_shift {shift:g})"


def initial_noise(shape: tuple[int, ...], generator: torch.Generator | list[torch.Generator] | None) -> Tensor:
    """Gaussian noise on the CPU (the same numbers on every device), per image when given a list of generators."""
    if isinstance(generator, list):
        if len(generator) != shape[0]:
            raise UniLIPError(f"{len(generator)} generators for a batch of {shape[0]} images; pass one per image")
        return torch.cat([torch.randn((1, *shape[1:]), generator=g) for g in generator])
    return torch.randn(shape, generator=generator)


@torch.no_grad()
def sample_latents(dit, shape: tuple[int, ...], conditions: Tensor, mask: Tensor, uncond: Tensor | None = None,
                   uncond_mask: Tensor | None = None, guidance_scale: float = 1.0, steps: int = 20,
                   scheduler: Any = "euler", generator: torch.Generator | list[torch.Generator] | None = None,
                   progress: bool = False) -> Tensor:
    """Latents of ``shape`` (B, C, h, w) from Gaussian noise, guided by ``guidance_scale`` against ``uncond`` when > 1.

    ``scheduler``: a name of :data:`SCHEDULERS` or a diffusers scheduler (a fresh copy of it is stepped, so one
    object serves many calls). ``generator``: one for the whole batch, or (diffusers' convention) a list with one per
    image, so that an image depends on its own seed only, not on what else is in the batch.
    """
    from tqdm.auto import tqdm

    if steps < 1:
        raise UniLIPError(f"steps: {steps} must be at least 1")
    if guidance_scale != 1.0 and uncond is None:
        raise UniLIPError("guidance other than 1 needs the unconditional conditions")
    sched = make_scheduler(scheduler) if isinstance(scheduler, str) else type(scheduler).from_config(scheduler.config)
    sched.set_timesteps(steps, device=conditions.device)
    # the latent, the timesteps and the solver stay in (at least) float32 whatever the DiT's dtype: in bf16, 20 steps of small
    # updates would round away (and timestep 982 would read as 984)
    solver_dtype = torch.promote_types(conditions.dtype, torch.float32)  # float32, or float64 for float64 conditions
    x = initial_noise(shape, generator).to(device=conditions.device, dtype=solver_dtype)
    with conditions_cached(dit):  # the conditions are the same at every step: their keys and values are computed once
        for t in tqdm(sched.timesteps, disable=not progress, desc="sampling", leave=False):
            timestep = t.expand(shape[0]).to(solver_dtype)
            v = guided_velocity(dit, x.to(conditions.dtype), timestep, conditions, mask, uncond, uncond_mask, guidance_scale)
            x = sched.step(v.to(solver_dtype), t, x).prev_sample
    return x
