"""The tokenizer's objective, :class:`TokenizerLoss`: pixel MSE, perceptual, **self-distillation**, and the GAN term
with its discriminator — each weight's YAML key, its check and its multiplication are in this file.

Total (the official stage 2/3 recipe, the ``loss`` section of the official tokenizer's training configs):
``mse + perceptual_weight * perceptual + distill_weight * MSE(F_student, F_teacher) + [step >= gan_start] gan_weight * GAN``.

Self-distillation is the paper's key to keeping the encoder's semantics: the student's features F (after the
projector, the features the LLM reads) are pulled towards those of a frozen copy of the original encoder on the same
images, while the encoder learns to carry the detail the pixel decoder needs. Losses compute in fp32.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from unilip.errors import ConfigError
from unilip.tokenizer.model import TokenizerOutput


@dataclass
class LossConfig:
    """Loss terms and weights. Defaults: the official stage-2 recipe, with LPIPS switched off (its weights need a
    download; set ``perceptual: lpips`` and ``lpips_weights`` to use it)."""

    mse_weight: float = 1.0
    perceptual: str = "none"  # "none" | "lpips" (optional extra, weights on disk)
    perceptual_weight: float = 1.1  # official `perceptual_weight`
    lpips_weights: str | None = None  # directory with the LPIPS backbone + linear-head weights
    distill_weight: float = 1.0  # official `distill_weight`; 0 switches self-distillation off
    # the frozen teacher's precision: "bf16" halves its memory and, where bf16 matmuls are faster, its forward (a
    # quarter of a train step's FLOPs); its features are compared in fp32 either way
    teacher_dtype: str = "fp32"
    gan_start: int | None = None  # the step the GAN term starts at (official: 200k in stage 2, 0 in stage 3); None = off
    gan_weight: float = 0.1  # official `discriminator_weight`
    lecam_weight: float = 0.001  # official LeCam regularisation weight
    disc_channels: tuple[int, ...] = (128, 128, 256, 512)  # official NLayerDiscriminator widths
    disc_lr: float = 1e-4

    def validate(self) -> None:
        if self.perceptual not in ("none", "lpips"):
            raise ConfigError(f"perceptual: {self.perceptual!r} is not allowed; allowed: ['none', 'lpips']")
        if self.teacher_dtype not in ("fp32", "bf16"):
            raise ConfigError(f"teacher_dtype: {self.teacher_dtype!r} is not allowed; allowed: ['fp32', 'bf16']")
        for key in ("mse_weight", "perceptual_weight", "distill_weight", "gan_weight", "lecam_weight"):
            if getattr(self, key) < 0:
                raise ConfigError(f"{key}: must be >= 0 (got {getattr(self, key)})")
        if self.gan_start is not None and self.gan_start < 0:
            raise ConfigError(f"gan_start: must be >= 0 or null (got {self.gan_start})")


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Self-distillation: plain MSE over all elements between (B, N, D) features, as the official code does."""
    return F.mse_loss(student.float(), teacher.float().detach())


# -------------------------------------------------------------------------------------------------- discriminator


class _BlurDown(nn.Module):
    """Anti-aliased 2x downsampling: a [1, 3, 3, 1] binomial blur, then stride 2 (as in StyleGAN / MaskGIT)."""

    def __init__(self, channels: int):
        super().__init__()
        k = torch.tensor([1.0, 3.0, 3.0, 1.0])
        k = (k[:, None] * k[None, :]) / 64.0
        self.register_buffer("kernel", k.expand(channels, 1, 4, 4).clone(), persistent=False)
        self.channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, (1, 2, 1, 2), mode="reflect")
        return F.conv2d(x, self.kernel.to(x.dtype), stride=2, groups=self.channels)


class PatchDiscriminator(nn.Module):
    """The official NLayerDiscriminator shape: 5x5 conv, then stages of (3x3 conv, blur-down, GroupNorm, LeakyReLU 0.1),
    adaptive max-pool to 16x16 and a 1x1 logits head: one real/fake logit per patch.

    It also keeps the LeCam EMAs of its outputs on real and fake images as buffers, so they checkpoint with it.
    """

    def __init__(self, channels: tuple[int, ...] = (128, 128, 256, 512), pool: int = 16):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, channels[0], 5, padding=2), nn.LeakyReLU(0.1)]
        for c_in, c_out in zip(channels[:-1], channels[1:]):
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1), _BlurDown(c_out), nn.GroupNorm(min(32, c_out), c_out), nn.LeakyReLU(0.1)]
        layers += [nn.AdaptiveMaxPool2d(pool), nn.Conv2d(channels[-1], 1, 1)]
        self.net = nn.Sequential(*layers)
        self.register_buffer("lecam_real", torch.zeros(()))
        self.register_buffer("lecam_fake", torch.zeros(()))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1], (B, 3, H, W) -> logits (B, 1, pool, pool)."""
        return self.net(images * 2 - 1)


def discriminator_loss(disc: PatchDiscriminator, real: torch.Tensor, fake: torch.Tensor, lecam_weight: float,
                       decay: float = 0.999) -> tuple[torch.Tensor, dict[str, float]]:
    """Hinge loss + LeCam regularisation (Tseng et al. 2021), as in the official tokenizer (LeCam EMA decay 0.999)."""
    # One forward over real and fake together: a DDP-wrapped discriminator may run only once per backward.
    logits_real, logits_fake = disc(torch.cat([real.detach(), fake.detach()])).float().chunk(2)
    hinge = F.relu(1 - logits_real).mean() + F.relu(1 + logits_fake).mean()
    inner = getattr(disc, "module", disc)  # the buffers live on the module inside a DDP wrapper
    with torch.no_grad():
        inner.lecam_real.lerp_(logits_real.mean(), 1 - decay)
        inner.lecam_fake.lerp_(logits_fake.mean(), 1 - decay)
    lecam = F.relu(logits_real - inner.lecam_fake).pow(2).mean() + F.relu(inner.lecam_real - logits_fake).pow(2).mean()
    loss = hinge + lecam_weight * lecam
    return loss, {"loss_disc": float(hinge.detach()), "lecam": float(lecam.detach()),
                  "logits_real": float(logits_real.mean().detach()), "logits_fake": float(logits_fake.mean().detach())}


def generator_adversarial_loss(disc: PatchDiscriminator, fake: torch.Tensor) -> torch.Tensor:
    """-mean D(fake): the reconstruction tries to look real (no adaptive weight, as in the official code)."""
    return -disc(fake).float().mean()


# ----------------------------------------------------------------------------------------------------- perceptual


def build_perceptual(cfg: LossConfig) -> nn.Module | None:
    """The perceptual loss network, or None. LPIPS comes from the optional extra with weights on disk; without them
    this raises a clear error — never a download, never a random backbone."""
    if cfg.perceptual == "none":
        return None
    from unilip.tokenizer.perceptual import lpips_metric

    return lpips_metric(cfg.lpips_weights)


# ------------------------------------------------------------------------------------------------------ the total


class TokenizerLoss(nn.Module):
    """The whole objective of one tokenizer stage: ``loss(out, images, step) -> (total, logs)``.

    ``teacher`` is the frozen encoder the student's features are distilled towards (None: no distillation); the
    perceptual network is built from the config (weights on disk only); ``discriminator`` exists when the GAN term
    is configured and is trained by :meth:`discriminator_loss`, the loop's second objective. Terms compute in fp32.
    """

    def __init__(self, cfg: LossConfig, teacher: nn.Module | None = None):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.teacher = teacher.requires_grad_(False).eval() if teacher is not None else None
        if self.teacher is not None and cfg.teacher_dtype == "bf16":
            self.teacher.to(torch.bfloat16)
        self.perceptual = build_perceptual(cfg)
        if self.perceptual is not None:
            self.perceptual.requires_grad_(False).eval()
        self.discriminator = PatchDiscriminator(tuple(cfg.disc_channels)) if cfg.gan_start is not None else None

    def gan_on(self, step: int) -> bool:
        return self.discriminator is not None and step >= self.cfg.gan_start

    def forward(self, out: TokenizerOutput, images: torch.Tensor, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        """The weighted total for the student's output ``out`` on ``images`` at ``step``, and each term's value."""
        w = self.cfg
        recon = out.reconstruction.float()
        mse = F.mse_loss(recon, images)
        total = w.mse_weight * mse
        logs = {"loss_mse": float(mse.detach())}
        if self.perceptual is not None:
            perceptual = self.perceptual.to(images.device)(recon, images).mean()
            total = total + w.perceptual_weight * perceptual
            logs["loss_perceptual"] = float(perceptual.detach())
        if self.teacher is not None:
            with torch.no_grad():
                target = self.teacher.to(images.device)(images)
            distill = distillation_loss(out.features, target)
            total = total + w.distill_weight * distill
            logs["loss_distill"] = float(distill.detach())
        if self.gan_on(step):
            self.discriminator.requires_grad_(False)  # the reconstruction's term must not train the discriminator
            gan = generator_adversarial_loss(self.discriminator, recon)
            self.discriminator.requires_grad_(True)
            total = total + w.gan_weight * gan
            logs["loss_gan"] = float(gan.detach())
        return total, logs

    def discriminator_loss(self, disc: nn.Module, images: torch.Tensor, reconstruction: torch.Tensor,
                           step: int) -> tuple[torch.Tensor, dict[str, float]] | None:
        """The discriminator's own loss (``disc``: :attr:`discriminator`, possibly DDP-wrapped); None before
        ``gan_start``."""
        if not self.gan_on(step):
            return None
        return discriminator_loss(disc, images, reconstruction, self.cfg.lecam_weight)
