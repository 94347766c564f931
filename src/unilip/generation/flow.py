"""Flow matching (rectified flow) in the UniLIP latent: the training loss and the classifier-free-guidance step.

Training (official §3.5): sigma ~ logit-normal(0, 1); x_t = (1 - sigma) x0 + sigma eps; the DiT predicts the velocity
v = eps - x0 at timestep 1000 sigma; the loss is the MSE in fp32. Sampling integrates dx/dsigma = v from sigma = 1
(noise) to 0 with a diffusers flow scheduler; :func:`guided_velocity` is the CFG step every sampler shares.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

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
                    uncond_mask: Tensor | None, scale: float) -> Tensor:
    """Classifier-free guidance: v_u + s (v_c - v_u), with both branches in one batched DiT call (at s = 1 the
    conditional branch alone, and ``uncond`` may be None).

    Condition sequences of different lengths are right-padded to a common length (the masks hide the padding).
    """
    if scale == 1.0:
        return dit(x, encoder_hidden_states=conditions, encoder_attention_mask=mask, timestep=timestep).sample
    length = max(conditions.shape[1], uncond.shape[1])
    cond_all = torch.cat([F.pad(uncond, (0, 0, 0, length - uncond.shape[1])),
                          F.pad(conditions, (0, 0, 0, length - conditions.shape[1]))])
    mask_all = torch.cat([F.pad(uncond_mask, (0, length - uncond_mask.shape[1])),
                          F.pad(mask, (0, length - mask.shape[1]))])
    t = timestep.expand(x.shape[0]) if timestep.ndim == 0 else timestep
    v_u, v_c = dit(torch.cat([x, x]), encoder_hidden_states=cond_all, encoder_attention_mask=mask_all,
                   timestep=torch.cat([t, t])).sample.chunk(2)
    return v_u + scale * (v_c - v_u)
