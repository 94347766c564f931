"""Training the mini MLLM in two stages, as InternVL does at scale: first semantics for the vision encoder, then
the projector + language model on instructions.

- ``vision`` (``configs/mllm/mini_vision.yaml``): the ViT alone, with linear heads predicting every patch's
  colour, shape and size (a fast, dense objective: a tiny InternVL trained end to end from pixels learns far too
  slowly on 2 cores: 47 % VQA accuracy after 12 minutes in our measurement).
- ``instruct`` (``configs/mllm/mini_instruct.yaml``): the whole InternVL on questions, captions and world knowledge,
  the vision tower from the ``vision`` stage (frozen or at a low learning rate).

Entry point: ``unilip train mllm --config YAML [key=value ...]``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from unilip.config import UniLIPConfig
from unilip.errors import UniLIPError
from unilip.train.mllm_data import (
    DenseAttributeData,
    InstructionData,
    InstructionMix,
    position_batches,
)
from unilip.mllm.model import MLLM, square_side
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

GROUPS = {"vision": ("vision",), "instruct": ("vision", "projector", "language")}


@dataclass
class MLLMStageConfig:
    """Which stage, which parts train (group -> lr scale; unlisted groups are frozen), and where weights start."""

    name: str = "vision"
    kind: Literal["vision", "instruct"] = "vision"
    trainable: dict[str, float] = field(default_factory=lambda: {"vision": 1.0})
    init: str | None = None  # instruct: the vision stage's output (its `final/`), or an MLLM directory to continue

    def validate(self) -> None:
        check_trainable(self.trainable, GROUPS[self.kind], f" for a {self.kind} stage")


@dataclass
class MLLMTrainConfig:
    model: UniLIPConfig = field(default_factory=UniLIPConfig)
    stage: MLLMStageConfig = field(default_factory=MLLMStageConfig)
    mix: InstructionMix = field(default_factory=InstructionMix)
    eval_questions: int = 200  # questions per quick evaluation at each report (val split), for the learning curve
    optim: OptimConfig = field(default_factory=OptimConfig)
    loop: LoopConfig = field(default_factory=LoopConfig)


def load_mllm_config(path: str | Path | None, overrides: list[str] = ()) -> MLLMTrainConfig:
    return load_stage_config(MLLMTrainConfig, path, overrides)


class VisionPretrainer(nn.Module):
    """The MLLM's vision tower with linear heads on its patch tokens: the colour, shape and size of each patch's
    object, its centre (x, y, regressed), and the patch's own row and column.

    The position heads matter (measured). Attribute labels do not depend on where a patch is, so without them the
    tokens lose their position (a linear probe recovered a token's grid index 15 % of the time) and the language
    model, whose attention values carry no position, cannot tell where anything is. With the patch's row and column
    only, or the object centre as an 8 x 8 bin, "where is the triangle?" stayed near 50 % and relative-position
    questions near chance: bins do not line up with the thirds of the image a "where" answer names. The centre as
    two numbers, written into every patch of the object, is what the language model can read and threshold.
    """

    def __init__(self, vision_config, n_colors: int, n_shapes: int, n_sizes: int):
        from transformers import InternVLVisionModel

        super().__init__()
        self.vision_tower = InternVLVisionModel(vision_config)
        width = vision_config.hidden_size
        self.grid = square_side(vision_config.image_size) // square_side(vision_config.patch_size)
        self.heads = nn.ModuleDict({"color": nn.Linear(width, n_colors + 1), "shape": nn.Linear(width, n_shapes + 1),
                                    "size": nn.Linear(width, n_sizes + 1),  # class 0 = background
                                    "center": nn.Linear(width, 2),
                                    "row": nn.Linear(width, self.grid), "col": nn.Linear(width, self.grid)})

    def forward(self, pixel_values: torch.Tensor) -> dict[str, torch.Tensor]:
        tokens = self.vision_tower(pixel_values=pixel_values).last_hidden_state[:, 1:]  # (B, 1 + P, C) -> (B, P, C)
        return {k: head(tokens) for k, head in self.heads.items()}  # (B, P, classes)

    def save_pretrained(self, directory: Path) -> None:
        self.vision_tower.save_pretrained(directory)


class VisionTask(TrainTask):
    def __init__(self, cfg: MLLMTrainConfig):
        torch.manual_seed(cfg.loop.seed)
        self.cfg = cfg
        mllm = MLLM.from_config(cfg.model)
        w = cfg.model.miniworld
        self.model = VisionPretrainer(mllm.model.config.vision_config, len(w.colors), len(w.shapes), len(w.sizes))
        self.normalize = mllm.pixel_values
        self.data = DenseAttributeData(w, cfg.model.mllm.vision.patch_size)

    def param_groups(self) -> list[ParamGroup]:
        return [ParamGroup("vision", list(self.model.named_parameters()), self.cfg.stage.trainable["vision"])]

    def batches(self, start_step: int, rank: int, world_size: int) -> Iterator:
        return position_batches(self.data.make, self.data.collate, self.cfg.loop.batch_size, start_step, rank, world_size)

    def step(self, model: nn.Module, batch, step: int) -> StepOutput:
        logits = model(self.normalize(batch["images"]))
        grid = self.model.grid
        index = torch.arange(grid * grid, device=batch["images"].device).expand(batch["images"].shape[0], -1)
        where = {"row": index // grid, "col": index % grid}  # every patch's own position
        losses, logs = [], {}
        for key, out in logits.items():
            if key == "center":  # regression on object patches: the centre in [0, 1]
                on = batch["center"][..., 0] >= 0
                err = (out.float() - batch["center"]) ** 2
                losses.append(10 * err[on].mean() if on.any() else out.sum() * 0)
                logs["center_err"] = float(err[on].detach().mean().sqrt()) if on.any() else 0.0
                continue
            target = where.get(key, batch.get(key))
            losses.append(F.cross_entropy(out.flatten(0, 1).float(), target.flatten()))
            scored = target >= 0 if key in where else target > 0  # attributes: scored on object patches only
            logs[f"acc_{key}"] = float((out.argmax(-1)[scored] == target[scored]).float().mean()) if scored.any() else 1.0
        loss = sum(losses)
        logs["loss_ce"] = float(loss.detach())
        return StepOutput(loss, logs)

    def save(self, model: nn.Module, out_dir: Path) -> None:
        model.save_pretrained(out_dir)


class InstructTask(TrainTask):
    def __init__(self, cfg: MLLMTrainConfig):
        torch.manual_seed(cfg.loop.seed)
        self.cfg = cfg
        init = Path(cfg.stage.init) if cfg.stage.init else None
        if init is not None and (init / "tokenizer.json").is_file():
            self.model = MLLM.from_pretrained(init)  # continue an MLLM
        else:
            self.model = MLLM.from_config(cfg.model)
            if init is not None:  # the vision stage's tower
                from transformers import InternVLVisionModel

                from unilip.mllm.model import _quiet_transformers

                _quiet_transformers()
                try:
                    tower = InternVLVisionModel.from_pretrained(init)
                    self.model.model.model.vision_tower.load_state_dict(tower.state_dict())
                except (OSError, RuntimeError, ValueError) as err:
                    raise UniLIPError(f"stage.init: cannot load a vision tower from {init}: {err}") from err
        self.groups = {
            "vision": self.model.model.model.vision_tower,
            "projector": self.model.model.model.multi_modal_projector,
            "language": nn.ModuleList([self.model.model.model.language_model, self.model.model.lm_head]),
        }
        for name, module in self.groups.items():
            module.requires_grad_(name in cfg.stage.trainable)
        self.data = InstructionData(cfg.model.miniworld, self.model.tokenizer, self.model.image_seq_length, cfg.mix)

    def param_groups(self) -> list[ParamGroup]:
        return [ParamGroup(name, list(self.groups[name].named_parameters(prefix=name)), scale)
                for name, scale in self.cfg.stage.trainable.items()]

    def train_mode(self) -> None:
        self.model.train()
        for name, module in self.groups.items():
            if name not in self.cfg.stage.trainable:
                module.eval()

    def batches(self, start_step: int, rank: int, world_size: int) -> Iterator:
        return position_batches(self.data.make, self.data.collate, self.cfg.loop.batch_size, start_step, rank, world_size)

    def step(self, model: nn.Module, batch, step: int) -> StepOutput:
        device = next(self.model.parameters()).device
        batch = {k: v.to(device) for k, v in batch.items()}
        out = model(**batch)
        return StepOutput(out.loss, {"loss_lm": float(out.loss.detach())})

    def report(self, model: nn.Module, step: int, out_dir: Path) -> None:
        """A quick VQA accuracy on the val split, appended to ``eval.jsonl``: the learning curve."""
        from unilip.eval.understanding import evaluate_understanding

        result = evaluate_understanding(model, "miniworld:val", self.cfg.eval_questions, self.cfg.model.miniworld,
                                        knowledge=False)
        with open(out_dir / "eval.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps({"step": step, "overall": result["overall"], **result["per_type"]}) + "\n")
        logger.info("step %d: val accuracy %.3f %s", step, result["overall"], result["per_type"])

    def save(self, model: nn.Module, out_dir: Path) -> None:
        model.save_pretrained(out_dir)


def train_mllm(cfg: MLLMTrainConfig, resume: bool = False) -> Path:
    """Run one MLLM stage; its final model (EMA weights) goes to ``<output_dir>/final``."""
    task = VisionTask(cfg) if cfg.stage.kind == "vision" else InstructTask(cfg)
    return train(task, cfg.loop, cfg.optim, resume=resume, config=cfg)
