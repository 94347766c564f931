"""TokenizerLoss: each configured weight multiplies its own term, the teacher stays frozen, the GAN term starts at
gan_start, and a bad weight is refused where it is defined."""

import pytest
import torch
import torch.nn.functional as F

from unilip.errors import ConfigError
from unilip.tokenizer.losses import LossConfig, TokenizerLoss, distillation_loss, generator_adversarial_loss
from unilip.tokenizer.model import TokenizerOutput


def _output(seed: int = 0) -> tuple[TokenizerOutput, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(2, 3, 32, 32, generator=g)
    recon = torch.rand(2, 3, 32, 32, generator=g, requires_grad=True)
    features = torch.randn(2, 4, 8, generator=g, requires_grad=True)
    return TokenizerOutput(reconstruction=recon, features=features, latent=torch.zeros(2, 32, 2, 2)), images


class _Teacher(torch.nn.Module):
    """Features of an image batch: (B, 3, 32, 32) -> (B, 4, 8), deterministic."""

    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(3 * 32 * 32, 32)

    def forward(self, images):
        return self.proj(images.flatten(1)).reshape(-1, 4, 8)


def test_the_total_is_the_weighted_sum_of_the_terms():
    torch.manual_seed(0)
    teacher = _Teacher()
    out, images = _output()
    loss = TokenizerLoss(LossConfig(mse_weight=2.0, distill_weight=0.25, gan_start=3, gan_weight=0.5,
                                    disc_channels=(8, 8)), teacher)
    mse = F.mse_loss(out.reconstruction, images)
    distill = distillation_loss(out.features, teacher(images))
    total, logs = loss(out, images, step=0)  # before gan_start: no GAN term
    assert torch.allclose(total, 2.0 * mse + 0.25 * distill)
    assert set(logs) == {"loss_mse", "loss_distill"} and logs["loss_distill"] == pytest.approx(float(distill))
    total, logs = loss(out, images, step=3)
    gan = generator_adversarial_loss(loss.discriminator, out.reconstruction)
    assert torch.allclose(total, 2.0 * mse + 0.25 * distill + 0.5 * gan) and "loss_gan" in logs
    total.backward()
    assert out.features.grad is not None  # the student learns from the distillation term...
    assert all(p.grad is None and not p.requires_grad for p in loss.teacher.parameters())  # ...the teacher never
    assert all(p.grad is None for p in loss.discriminator.parameters())  # nor the discriminator from this term


def test_the_discriminator_loss_waits_for_gan_start():
    loss = TokenizerLoss(LossConfig(gan_start=5, disc_channels=(8, 8)))
    out, images = _output()
    assert loss.discriminator_loss(loss.discriminator, images, out.reconstruction.detach(), step=4) is None
    d, logs = loss.discriminator_loss(loss.discriminator, images, out.reconstruction.detach(), step=5)
    assert d.ndim == 0 and {"loss_disc", "lecam"} <= set(logs)
    assert TokenizerLoss(LossConfig()).discriminator is None  # no GAN configured: no discriminator at all


def test_a_negative_weight_is_refused():
    with pytest.raises(ConfigError, match="distill_weight: must be >= 0"):
        TokenizerLoss(LossConfig(distill_weight=-1.0))


def test_a_bf16_teacher_gives_the_same_distillation_term_within_bf16_rounding():
    import copy

    from unilip.config import get_preset
    from unilip.tokenizer import UniLIPTokenizer

    torch.manual_seed(0)
    tok = UniLIPTokenizer.from_config(get_preset("mini")).eval()
    images = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        features = tok.features(images) + 0.1 * torch.randn(2, 16, 128)  # a student a little off its teacher
    out = TokenizerOutput(reconstruction=images.clone(), features=features, latent=torch.zeros(2, 32, 4, 4))
    logs = {}
    for dtype in ("fp32", "bf16"):
        objective = TokenizerLoss(LossConfig(teacher_dtype=dtype), copy.deepcopy(tok.encoder))
        assert next(objective.teacher.parameters()).dtype == (torch.bfloat16 if dtype == "bf16" else torch.float32)
        logs[dtype] = objective(out, images, step=0)[1]["loss_distill"]
    assert logs["bf16"] == pytest.approx(logs["fp32"], rel=0.05) and logs["bf16"] != logs["fp32"]
    with pytest.raises(ConfigError, match="teacher_dtype"):
        LossConfig(teacher_dtype="int8").validate()
