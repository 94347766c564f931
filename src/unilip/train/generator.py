"""Training the generator: the stages are configs, this file is the task the shared loop runs.

The MLLM and the tokenizer stay frozen. Trainable groups: ``queries`` (the learnable query embeddings), ``connector``
(the copied top LLM layers), ``projector`` (the connector's Linear to the DiT's caption width) and ``dit``.
Upstream's three stages (``configs/generator/1b_stage*.yaml``): (1) queries + connector + projector align to a
pretrained SANA, (2) + the DiT on generation and editing data, (3) the same on high-quality data at a lower rate.
The mini recipe (``configs/generator/mini.yaml``) trains every group in one stage: its DiT starts from scratch, so
there is no pretrained DiT to align to first. Entry point: ``unilip train generator --config YAML [key=value ...]``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from unilip.config import UniLIPConfig
from unilip.errors import ConfigError
from unilip.train.generator_data import GenerationData, GenerationMix
from unilip.generation.model import CONDITION_MODES, UniLIPGenerator
from unilip.train.mllm_data import position_batches
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

GROUPS = ("queries", "connector", "projector", "dit")


@dataclass
class GeneratorStageConfig:
    """Which groups train at which lr scale (unlisted: frozen), where weights start, and the condition ablation."""

    name: str = "stage1"
    trainable: dict[str, float] = field(default_factory=lambda: {"queries": 1.0, "connector": 1.0, "projector": 1.0})
    init: str | None = None  # a generator directory to continue (the previous stage's `final/`)
    condition_mode: str = "dual"  # dual | queries | hidden (the paper's ablation)

    def validate(self) -> None:
        check_trainable(self.trainable, GROUPS)
        if self.condition_mode not in CONDITION_MODES:
            raise ConfigError(f"condition_mode: {self.condition_mode!r} is not one of {list(CONDITION_MODES)}")


@dataclass
class GeneratorTrainConfig:
    """One generator stage. ``model.mllm.pretrained`` is the frozen MLLM; ``tokenizer`` the frozen UniLIP tokenizer."""

    model: UniLIPConfig = field(default_factory=UniLIPConfig)
    tokenizer: str = "mini"  # a UniLIP tokenizer directory (its latent is what the DiT generates), or `mini`
    # another latent space for the DiT: a PixelAutoencoder directory (the VAE ablation) or a diffusers AutoencoderDC
    # (SANA's, for the official stage 1 with the pretrained DiT frozen); None: the UniLIP latent
    autoencoder: str | None = None
    stage: GeneratorStageConfig = field(default_factory=GeneratorStageConfig)
    mix: GenerationMix = field(default_factory=GenerationMix)
    eval_prompts: int = 48  # mini GenEval prompts (1 sample each) scored at every report: the learning curve
    # > 0: the first `pool` items of the stream are rendered once, with their target latents and MLLM prefixes
    # (train.frozen_pool), and training cycles through them; 0: render and run the frozen parts every step
    pool: int = 0
    optim: OptimConfig = field(default_factory=OptimConfig)
    loop: LoopConfig = field(default_factory=LoopConfig)

    def validate(self) -> None:
        if self.pool < 0:
            raise ConfigError(f"pool: must be >= 0 (got {self.pool}); 0 renders every step")


def load_generator_config(path: str | Path | None, overrides: list[str] = ()) -> GeneratorTrainConfig:
    return load_stage_config(GeneratorTrainConfig, path, overrides)


def build_generator(cfg: UniLIPConfig, tokenizer: str, init: str | None = None, condition_mode: str = "dual",
                    autoencoder: str | None = None) -> UniLIPGenerator:
    """The frozen MLLM (``cfg.mllm.pretrained`` or the bundled mini one) and tokenizer around a new or saved generator."""
    from unilip.pretrained import resolve_model
    from unilip.mllm.model import MLLM
    from unilip.tokenizer import UniLIPTokenizer

    mllm = MLLM.from_pretrained(resolve_model(cfg.mllm.pretrained or "mini", "mllm"))
    tok = UniLIPTokenizer.from_pretrained(resolve_model(tokenizer, "tokenizer")).float()
    ae = None
    if autoencoder:
        from unilip.generation.vae_baseline import load_autoencoder

        ae = load_autoencoder(autoencoder)
    if init:
        model = UniLIPGenerator.from_pretrained(init, mllm, tok, cfg, autoencoder=ae)
        if model.condition_mode != condition_mode:
            raise ConfigError(f"stage.condition_mode: {condition_mode!r}, but {init} was trained with {model.condition_mode!r}")
        return model
    return UniLIPGenerator(cfg, mllm, tok, condition_mode, autoencoder=ae)


class GeneratorTask(TrainTask):
    def __init__(self, cfg: GeneratorTrainConfig):
        torch.manual_seed(cfg.loop.seed)  # the same random queries / connector head / DiT on every process and resume
        self.cfg = cfg
        self.model = build_generator(cfg.model, cfg.tokenizer, cfg.stage.init, cfg.stage.condition_mode, cfg.autoencoder)
        self.model.requires_grad_(False)
        for name in cfg.stage.trainable:
            self._group(name).requires_grad_(True)
        self.data = GenerationData(cfg.model.miniworld, cfg.mix, cfg.model.tokenizer.image_size)

    def _group(self, name: str) -> nn.Module:
        m = self.model
        return {"queries": _ParamHolder(m.conditioner, "queries"), "projector": m.connector.proj, "dit": m.dit,
                "connector": nn.ModuleList([m.connector.layers, m.connector.norm])}[name]

    def param_groups(self) -> list[ParamGroup]:
        names = {id(p): n for n, p in self.model.named_parameters()}
        return [ParamGroup(name, [(names[id(p)], p) for p in self._group(name).parameters()], scale)
                for name, scale in self.cfg.stage.trainable.items()]

    def train_mode(self) -> None:
        self.model.train()
        for name in GROUPS:
            if name not in self.cfg.stage.trainable:
                self._group(name).eval()

    def batches(self, start_step: int, rank: int, world_size: int) -> Iterator:
        if self.cfg.pool:  # every process builds the same pool (it is a pure function of the config)
            from unilip.train.frozen_pool import FrozenPool

            pool = FrozenPool(self.model, self.data, self.cfg.pool, progress=rank == 0)
            return position_batches(pool.item, pool.collate, self.cfg.loop.batch_size, start_step, rank, world_size)
        return position_batches(self.data.make, self.data.collate, self.cfg.loop.batch_size, start_step, rank, world_size)

    def step(self, model: nn.Module, batch, step: int) -> StepOutput:
        device = self.model.device
        if "prefix" not in batch:  # rendered this step: the frozen tokenizer and MLLM run now
            sources = batch["sources"].to(device) if batch["sources"] is not None else None
            batch = {"latents": self.model.latents(batch["images"].to(device)),
                     "prefix": self.model.prefix(batch["prompts"], sources)}
        loss = model(batch["latents"].to(device), batch["prefix"].to(device))
        return StepOutput(loss, {"loss_flow": float(loss.detach())})

    def report(self, model: nn.Module, step: int, out_dir: Path) -> None:
        """Mini GenEval on a few prompts with the EMA weights, appended to ``eval.jsonl``: the learning curve."""
        from unilip.eval.geneval_mini import evaluate_geneval
        from unilip.pipeline import UniLIPPipeline

        if not self.cfg.eval_prompts:
            return
        result = evaluate_geneval(UniLIPPipeline(model, progress=False), self.cfg.model.miniworld, n_prompts=self.cfg.eval_prompts, samples=1,
                                  grid_path=out_dir / "images" / f"geneval-{step:07d}.png")
        with open(out_dir / "eval.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps({"step": step, "overall": result["overall"], **result["per_category"]}) + "\n")
        logger.info("step %d: mini GenEval %.3f %s", step, result["overall"], result["per_category"])

    def save(self, model: nn.Module, out_dir: Path) -> None:
        model.save_pretrained(out_dir)


class _ParamHolder(nn.Module):
    """A view of one parameter of ``owner`` as a module, so a lone nn.Parameter can be a group like the others."""

    def __init__(self, owner: nn.Module, name: str):
        super().__init__()
        self._owner, self._name = [owner], name  # a list: not registered as a submodule

    def parameters(self, recurse: bool = True):
        yield getattr(self._owner[0], self._name)

    def requires_grad_(self, requires_grad: bool = True):
        getattr(self._owner[0], self._name).requires_grad_(requires_grad)
        return self


def train_generator(cfg: GeneratorTrainConfig, resume: bool = False) -> Path:
    """Run one generator stage; its final model (EMA weights of the trained groups) goes to ``<output_dir>/final``."""
    return train(GeneratorTask(cfg), cfg.loop, cfg.optim, resume=resume, config=cfg)
