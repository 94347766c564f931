"""Training the UniLIP tokenizer: the stages are configs, this file is the task the shared loop runs.

Stage 1 (``configs/tokenizer/*_stage1.yaml``): encoder + projector frozen, h_phi + decoder train; MSE + perceptual.
Stage 2: everything trains, the encoder (ViT + projector, "mlp1") at 0.1x the learning rate, plus self-distillation
towards a frozen copy of the original encoder. Stage 3: higher resolution, GAN on. Each stage starts from the
previous stage's EMA weights (``stage.init``). Entry point: ``unilip train tokenizer --config YAML [key=value ...]``.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from unilip.config import UniLIPConfig
from unilip.errors import ConfigError
from unilip.tokenizer.losses import LossConfig, TokenizerLoss
from unilip.train.loop import (
    LoopConfig,
    OptimConfig,
    ParamGroup,
    StepOutput,
    TrainTask,
    train,
)
from unilip.train.stage_config import check_trainable, load_stage_config

logger = logging.getLogger("unilip.train")

GROUPS = ("encoder", "projection", "decoder")  # encoder = vision tower + projector (the official `encoder` + `mlp1`)


@dataclass
class StageConfig:
    """Which parts train, at which learning-rate scale, and where the weights start."""

    name: str = "stage1"
    # group -> lr scale; a group not listed is frozen (no gradients, eval mode). Official stage 1: h_phi + decoder.
    trainable: dict[str, float] = field(default_factory=lambda: {"projection": 1.0, "decoder": 1.0})
    init: str | None = None  # a tokenizer directory to start from, e.g. the previous stage's `final/` (EMA weights)

    def validate(self) -> None:
        check_trainable(self.trainable, GROUPS)


@dataclass
class DataConfig:
    """Where images come from (see unilip.data.sources: miniworld:SPLIT, a dataset dir, a folder, a .jsonl, shards)."""

    train: str = "miniworld:train"
    eval: str = "miniworld:val"
    image_size: int = 64  # official: 224 in stages 1-2, 448 in stage 3
    flip: bool = True
    num_workers: int = 0
    grid_images: int = 8  # eval images shown in the reconstruction grids

    def validate(self) -> None:
        if self.image_size < 16:
            raise ConfigError(f"image_size: must be >= 16 (got {self.image_size})")


@dataclass
class TokenizerTrainConfig:
    """One tokenizer training stage. ``model`` is a full UniLIP config (start from a preset with ``model.preset``)."""

    model: UniLIPConfig = field(default_factory=UniLIPConfig)
    stage: StageConfig = field(default_factory=StageConfig)
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loop: LoopConfig = field(default_factory=LoopConfig)


def load_train_config(path: str | Path | None, overrides: list[str] = ()) -> TokenizerTrainConfig:
    """A stage config from YAML + ``dotted.key=value`` overrides; ``model:`` starts from ``model.preset`` (default mini)."""
    return load_stage_config(TokenizerTrainConfig, path, overrides)


class TokenizerTask(TrainTask):
    """The loop's view of tokenizer training: groups, frozen parts, the loss of a batch, data, grids, saving."""

    def __init__(self, cfg: TokenizerTrainConfig):
        from unilip.data.loader import ResumableImageLoader
        from unilip.data.sources import open_source
        from unilip.tokenizer import UniLIPTokenizer

        self.cfg = cfg
        torch.manual_seed(cfg.loop.seed)  # random-init parts are the same on every process and every resume
        if cfg.stage.init:
            self.model = UniLIPTokenizer.from_pretrained(cfg.stage.init)
        else:
            self.model = UniLIPTokenizer.from_config(cfg.model)
        self.trainable = dict(cfg.stage.trainable)
        for name in GROUPS:
            getattr(self.model, name).requires_grad_(name in self.trainable)
        # The teacher: a frozen copy of the encoder as it starts this stage (the original encoder: stage 1 never
        # changes it). Built before any resume, so a resumed run distils towards the same target. Never saved.
        teacher = None
        if cfg.loss.distill_weight > 0 and "encoder" in self.trainable:
            teacher = copy.deepcopy(self.model.encoder)
        self.objective = TokenizerLoss(cfg.loss, teacher)
        if self.objective.discriminator is not None:  # the loop trains it as its second objective
            self.aux_model = self.objective.discriminator
            self.aux_lr = cfg.loss.disc_lr
        self._source = open_source(cfg.data.train, cfg.model.miniworld)
        self._loader_cls = ResumableImageLoader
        self._grid = self._grid_images(open_source(cfg.data.eval, cfg.model.miniworld))

    @property
    def teacher(self) -> nn.Module | None:
        return self.objective.teacher

    # -- the loop's interface --

    def param_groups(self) -> list[ParamGroup]:
        return [ParamGroup(name, list(getattr(self.model, name).named_parameters(prefix=name)), scale)
                for name, scale in self.trainable.items()]

    def train_mode(self) -> None:
        self.model.train()
        for name in GROUPS:
            if name not in self.trainable:
                getattr(self.model, name).eval()  # frozen parts: eval mode (no dropout / drop-path)

    def batches(self, start_step: int, rank: int, world_size: int) -> Iterator[torch.Tensor]:
        d = self.cfg.data
        return iter(self._loader_cls(self._source, batch_size=self.cfg.loop.batch_size, image_size=d.image_size,
                                     seed=self.cfg.loop.seed, rank=rank, world_size=world_size, train=True,
                                     flip=d.flip, num_workers=d.num_workers, start_step=start_step))

    def step(self, model: nn.Module, batch: torch.Tensor, step: int) -> StepOutput:
        images = batch.to(next(self.model.parameters()).device)
        out = model(images)
        total, logs = self.objective(out, images, step)
        return StepOutput(total, logs, {"images": images, "reconstruction": out.reconstruction.detach().float()})

    def aux_step(self, aux_model: nn.Module, batch, out: StepOutput, step: int) -> StepOutput | None:
        result = self.objective.discriminator_loss(aux_model, out.extras["images"], out.extras["reconstruction"], step)
        return None if result is None else StepOutput(*result)

    def report(self, model: nn.Module, step: int, out_dir: Path) -> None:
        from unilip.eval.grid import save_grid

        images = self._grid.to(next(model.parameters()).device)
        save_grid([images, model.reconstruct(images)], out_dir / "images" / f"recon-{step:07d}.png")

    def save(self, model: nn.Module, out_dir: Path) -> None:
        model.save_pretrained(out_dir)

    def _grid_images(self, source) -> torch.Tensor:
        from unilip.data.loader import eval_transform

        n = self.cfg.data.grid_images
        if getattr(source, "iterable", False):
            it = iter(source)
            imgs = [next(it) for _ in range(n)]
        else:
            imgs = [source.load(i) for i in range(min(n, len(source)))]
        return torch.stack([eval_transform(im, self.cfg.data.image_size) for im in imgs])


def train_tokenizer(cfg: TokenizerTrainConfig, resume: bool = False) -> Path:
    """Run one tokenizer stage; the final (EMA) tokenizer is written to ``<output_dir>/final``."""
    task = TokenizerTask(cfg)
    return train(task, cfg.loop, cfg.optim, resume=resume, config=cfg)
