"""Training the VAE-latent baseline's autoencoder (:class:`unilip.generation.vae_baseline.PixelAutoencoder`) with
the shared loop: pixel MSE on mini-world scenes, for ``unilip reproduce generator``'s latent-space ablation."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from unilip.data.miniworld import make_records
from unilip.generation.vae_baseline import PixelAutoencoder
from unilip.train.loop import ParamGroup, StepOutput, TrainTask
from unilip.train.mllm_data import image_tensor, position_batches


class AutoencoderTask(TrainTask):
    """Pixel MSE on mini-world scenes, with the shared loop (its batches depend only on the step)."""

    def __init__(self, model: PixelAutoencoder, world, batch_size: int):
        self.model, self.world, self.batch_size = model, world, batch_size

    def param_groups(self) -> list[ParamGroup]:
        return [ParamGroup("autoencoder", list(self.model.named_parameters()))]

    def batches(self, start_step: int, rank: int, world_size: int) -> Iterator:
        make = lambda p: image_tensor(next(make_records("images", self.world, "train", p, 1))["scene"], self.world)
        return position_batches(make, torch.stack, self.batch_size, start_step, rank, world_size)

    def step(self, model: nn.Module, batch: Tensor, step: int) -> StepOutput:
        loss = F.mse_loss(model(batch).float(), batch)
        return StepOutput(loss, {"loss_mse": float(loss.detach())})

    def save(self, model: nn.Module, out_dir: Path) -> None:
        model.save_pretrained(out_dir)
