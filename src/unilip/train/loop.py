"""The one training loop every unilip model trains with (tokenizer stages, mini MLLM, generator stages).

What changes between stages and models is data, not code: a :class:`TrainTask` says which parameter groups train
at which learning-rate scale, computes the loss of a batch, and supplies the batches; this loop does the rest the
same way for all: accelerate (single process, DDP on CPU with gloo, GPUs), AdamW without weight decay on norms,
biases and embeddings, warm-up + cosine schedule as a pure function of the step, gradient clipping, bf16 autocast,
EMA, atomic checkpoints with exact resume, a progress bar, TensorBoard scalars, ``metrics.jsonl`` and periodic
images. It stops on a non-finite loss with the step number.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from unilip.errors import UniLIPError
from unilip.train.checkpoint import list_checkpoints, read_checkpoint, write_checkpoint
from unilip.train.ema import EMA

logger = logging.getLogger("unilip.train")

MAX_TRAIN_STEPS = 1_000_000_000  # beyond this a run never ends
MAX_TRAIN_BATCH = 65_536  # images per process and step


# ---------------------------------------------------------------------------------------------------------- configs


@dataclass
class OptimConfig:
    """AdamW + warm-up + cosine.

    Defaults: the official tokenizer recipe (nnnth/UniLIP, ``tokenizer/scripts/train_stage*.py`` with their
    ``internvl3_*_stage*.yaml`` configs).
    """

    lr: float = 1e-4  # peak learning rate of a group with lr_scale 1
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 1e-4  # on >= 2-D weights only; norms, biases, embeddings are exempt
    warmup_steps: int = 10_000
    min_lr_ratio: float = 0.1  # the cosine ends at this fraction of each group's peak (official end_lr 1e-5 / 1e-4)
    grad_clip: float = 1.0  # max global gradient norm; 0 disables
    # torch's fused AdamW (one kernel over all parameters instead of a dozen ops per tensor; CPU and CUDA); the
    # maths is AdamW's, the last bits may differ from the unfused loop
    fused: bool = True

    def validate(self) -> None:
        from unilip.errors import ConfigError

        if not 0 < self.lr <= 1:
            raise ConfigError(f"lr: must be in (0, 1] (got {self.lr})")
        for i, beta in enumerate(self.betas):
            if not 0 <= beta < 1:
                raise ConfigError(f"betas[{i}]: must be in [0, 1) (got {beta})")
        if not 0 <= self.weight_decay < 1:
            raise ConfigError(f"weight_decay: must be in [0, 1) (got {self.weight_decay})")
        if not 0 <= self.warmup_steps <= MAX_TRAIN_STEPS:
            raise ConfigError(f"warmup_steps: must be in [0, {MAX_TRAIN_STEPS}] (got {self.warmup_steps})")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ConfigError(f"min_lr_ratio: must be in [0, 1] (got {self.min_lr_ratio})")
        if self.grad_clip < 0:
            raise ConfigError(f"grad_clip: must be >= 0, 0 disables (got {self.grad_clip})")


@dataclass
class LoopConfig:
    """How long to train, how big a batch, and how often to log, look and save."""

    output_dir: str = "runs/unnamed"
    max_steps: int = 1000
    batch_size: int = 16  # per process (official tokenizer: 16 x 4 GPUs = 64)
    seed: int = 42
    mixed_precision: Literal["no", "bf16"] = "no"  # bf16 autocast, on GPU or CPU
    ema_decay: float = 0.999
    log_every: int = 10
    save_every: int = 500  # checkpoint every N steps (and at the end)
    keep_checkpoints: int = 2
    report_every: int = 500  # call the task's report (reconstruction grids, quick evals) every N steps; 0 disables
    gradient_checkpointing: bool = False  # recompute activations in the backward pass (less memory, ~30 % slower)
    # regional torch.compile: each of the model's repeated blocks (its ``_no_split_modules``) compiled once, static
    # shapes; the first steps pay the compilation (tokenizer train step 1.28x mini, 1.57x 1b/224 bf16 afterwards)
    compile_blocks: bool = False
    # gradient accumulation: each optimizer step sums the gradients of this many batches (global batch =
    # processes x batch_size x grad_accum); the loss is divided by it, clipping and logging see the whole step
    grad_accum: int = 1
    progress: bool = True

    def validate(self) -> None:
        from unilip.errors import ConfigError

        for key, hi in (("max_steps", MAX_TRAIN_STEPS), ("batch_size", MAX_TRAIN_BATCH), ("log_every", MAX_TRAIN_STEPS),
                        ("save_every", MAX_TRAIN_STEPS), ("keep_checkpoints", 10_000), ("grad_accum", 1024)):
            if not 1 <= getattr(self, key) <= hi:
                raise ConfigError(f"{key}: must be in [1, {hi}] (got {getattr(self, key)})")
        if not 0 <= self.report_every <= MAX_TRAIN_STEPS:
            raise ConfigError(f"report_every: must be in [0, {MAX_TRAIN_STEPS}], 0 disables (got {self.report_every})")
        if not 0 <= self.ema_decay < 1:  # 1 would never move the weights that are saved and evaluated
            raise ConfigError(f"ema_decay: must be in [0, 1) (got {self.ema_decay})")
        if not self.output_dir.strip():
            raise ConfigError("output_dir: is empty (it would write into the current folder)")


# ------------------------------------------------------------------------------------------------------------- tasks


@dataclass
class ParamGroup:
    """Parameters that train together at ``lr_scale`` x the base learning rate (e.g. the encoder at 0.1x)."""

    name: str
    params: list[tuple[str, nn.Parameter]]
    lr_scale: float = 1.0


@dataclass
class StepOutput:
    loss: torch.Tensor
    logs: dict[str, float] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)  # handed to the aux objective (e.g. the reconstruction)


class TrainTask:
    """What a model brings to the loop. Subclasses set ``model`` and implement the three methods."""

    model: nn.Module  # trained, checkpointed, EMA'd; saved with ``save(model, dir)`` at the end
    aux_model: nn.Module | None = None  # a second objective with its own optimizer (the GAN discriminator)
    aux_lr: float = 1e-4

    def param_groups(self) -> list[ParamGroup]:
        raise NotImplementedError

    def train_mode(self) -> None:
        """Put the model in training mode, frozen parts in eval mode (the loop calls this after every eval)."""
        self.model.train()

    def batches(self, start_step: int, rank: int, world_size: int) -> Iterator[Any]:
        raise NotImplementedError

    def step(self, model: nn.Module, batch: Any, step: int) -> StepOutput:
        """The loss of one batch; ``model`` is the (possibly DDP-wrapped) model to call."""
        raise NotImplementedError

    def aux_step(self, aux_model: nn.Module, batch: Any, out: StepOutput, step: int) -> StepOutput | None:
        """The aux objective's loss, or None when it is not active at ``step``."""
        return None

    def report(self, model: nn.Module, step: int, out_dir: Path) -> None:
        """Write pictures or quick metrics of progress into ``out_dir`` (called with the EMA weights in place)."""

    def save(self, model: nn.Module, out_dir: Path) -> None:
        """Write the final model (called with the EMA weights in place)."""


# ---------------------------------------------------------------------------------------------------------- helpers


def lr_factor(step: int, cfg: OptimConfig, max_steps: int) -> float:
    """Linear warm-up to 1, then cosine down to ``min_lr_ratio`` at ``max_steps``."""
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, max_steps - cfg.warmup_steps))
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


_NO_DECAY_WORDS = ("norm", "bias", "embed", "position", "cls_token", "lambda", "scale_shift", "queries")


def no_weight_decay(name: str, param: torch.Tensor) -> bool:
    """Norms, biases, embeddings, layer scales and 1-D parameters take no weight decay."""
    return param.ndim < 2 or any(word in name.lower() for word in _NO_DECAY_WORDS)


def build_optimizer(groups: list[ParamGroup], cfg: OptimConfig) -> torch.optim.AdamW:
    """AdamW with two entries per group (decay / no decay), each remembering its ``lr_scale``."""
    entries = []
    for g in groups:
        for decay in (True, False):
            params = [p for n, p in g.params if p.requires_grad and no_weight_decay(n, p) != decay]
            if params:
                entries.append({"params": params, "weight_decay": cfg.weight_decay if decay else 0.0,
                                "lr": cfg.lr * g.lr_scale, "lr_scale": g.lr_scale, "group": g.name})
    if not entries:
        raise UniLIPError("nothing to train: every parameter group is frozen")
    return torch.optim.AdamW(entries, lr=cfg.lr, betas=tuple(cfg.betas), fused=cfg.fused or None)


def _set_lr(optimizer: torch.optim.Optimizer, base_lr: float, factor: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = base_lr * group.get("lr_scale", 1.0) * factor


# ------------------------------------------------------------------------------------------------------------- loop


def compile_blocks(model: torch.nn.Module) -> int:
    """``torch.compile`` every block the model names in ``_no_split_modules`` (in place: parameter names and
    checkpoints are unchanged); returns how many. Shapes are static (dynamic ones failed in inductor here)."""
    names = set(getattr(model, "_no_split_modules", None) or ())
    if not names:
        raise UniLIPError(f"compile_blocks: {type(model).__name__} names no repeated blocks (_no_split_modules)")
    blocks = [m for m in model.modules() if type(m).__name__ in names]
    for block in blocks:
        block.compile(dynamic=False)
    return len(blocks)


def train(task: TrainTask, loop: LoopConfig, optim: OptimConfig, resume: bool = False, config: dict | None = None) -> Path:
    """Train ``task`` for ``loop.max_steps`` steps; returns the output directory (final model in ``final/``).

    With ``resume=True`` the newest checkpoint under ``loop.output_dir`` is restored (model, optimizer, EMA, RNG
    states, step and data position) and training continues as if it had never stopped.
    """
    from accelerate import Accelerator

    acc = Accelerator(cpu=not torch.cuda.is_available(), mixed_precision="no")
    out = Path(loop.output_dir)
    if list_checkpoints(out) and not resume:  # before anything is written: the run's config.yaml stays its own
        raise UniLIPError(f"{out} already holds checkpoints; pass --resume to continue, or choose another output_dir")
    torch.manual_seed(loop.seed)
    created = acc.is_main_process and not out.exists()
    if acc.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        if config is not None:
            from unilip.config_io import save_config

            save_config(config, out / "config.yaml")
    try:
        return _train(acc, task, loop, optim, out, resume)
    except BaseException:
        if created and not list_checkpoints(out) and not (out / "metrics.jsonl").exists():
            shutil.rmtree(out, ignore_errors=True)  # a run that never trained a step leaves no folder behind
        raise


def _train(acc, task: TrainTask, loop: LoopConfig, optim: OptimConfig, out: Path, resume: bool) -> Path:
    """The loop of :func:`train`, in ``out`` (created)."""
    from tqdm.auto import tqdm

    model = task.model
    if loop.grad_accum > 1 and task.aux_model is not None:
        raise UniLIPError("grad_accum: not supported with an auxiliary model (the GAN discriminator's steps); "
                          "use grad_accum=1 for this stage")
    if loop.gradient_checkpointing:
        if not hasattr(model, "enable_gradient_checkpointing"):
            raise UniLIPError(f"gradient_checkpointing: {type(model).__name__} does not support it")
        model.enable_gradient_checkpointing()
    if loop.compile_blocks:
        compile_blocks(model)
    groups = task.param_groups()
    optimizer = build_optimizer(groups, optim)
    ema = EMA(model, loop.ema_decay)
    aux_optimizer = torch.optim.AdamW(task.aux_model.parameters(), lr=task.aux_lr, betas=tuple(optim.betas),
                                      weight_decay=optim.weight_decay) if task.aux_model is not None else None

    start = 0
    checkpoints = list_checkpoints(out)
    if resume and checkpoints:
        state = read_checkpoint(checkpoints[-1], rank=acc.process_index, model=model, ema=ema, optimizer=optimizer,
                                aux_model=task.aux_model, aux_optimizer=aux_optimizer)
        start = state["step"]
        logger.info("resumed from %s at step %d", checkpoints[-1], start)

    wrapped, optimizer = acc.prepare(model, optimizer)
    aux_wrapped = acc.prepare(task.aux_model) if task.aux_model is not None else None
    if aux_optimizer is not None:
        aux_optimizer = acc.prepare(aux_optimizer)
    task.train_mode()

    autocast = (lambda: torch.autocast(acc.device.type, dtype=torch.bfloat16)) if loop.mixed_precision == "bf16" else nullcontext
    if acc.is_main_process and start:
        for log in ("metrics.jsonl", "eval.jsonl"):  # the steps after the checkpoint are redone: log them once
            _forget_after(out / log, start)
    writer = _summary_writer(out, purge_step=start + 1 if start else None) if acc.is_main_process else None
    import sys

    bar = tqdm(total=loop.max_steps, initial=start, disable=not (loop.progress and acc.is_main_process), unit="step",
               dynamic_ncols=True, mininterval=1.0 if sys.stderr.isatty() else 30.0)  # sparse lines in log files
    accum = loop.grad_accum
    batches = task.batches(start * accum, acc.process_index, acc.num_processes)  # the stream counts batches
    t_last, n_images = time.perf_counter(), 0
    step = start
    try:
        while step < loop.max_steps:
            _set_lr(optimizer, optim.lr, lr_factor(step, optim, loop.max_steps))
            optimizer.zero_grad(set_to_none=True)
            micro_losses, micro_logs = [], []
            for micro in range(accum):
                batch = next(batches)
                # DDP averages gradients across processes on the last batch of the step only
                with acc.no_sync(wrapped) if micro < accum - 1 else nullcontext():
                    with autocast():
                        result = task.step(wrapped, batch, step)
                    loss = result.loss
                    if not torch.isfinite(loss.detach()):  # step + 1: the number this update would have in metrics.jsonl
                        raise _diverged(out, step + 1, f"the loss is {float(loss.detach())} ({result.logs})")
                    acc.backward(loss / accum)  # the mean over the step's batches (exact for 1)
                micro_losses.append(loss.detach())
                micro_logs.append(result.logs)
                n_images += _batch_size(batch) * acc.num_processes
            loss = torch.stack(micro_losses).mean()
            result.logs = {k: sum(m[k] for m in micro_logs) / accum for k in micro_logs[0]} if accum > 1 else result.logs
            if optim.grad_clip > 0:
                result.logs["grad_norm"] = float(acc.clip_grad_norm_(wrapped.parameters(), optim.grad_clip))
                if not math.isfinite(result.logs["grad_norm"]):  # before the update: the weights stay good
                    raise _diverged(out, step + 1, f"the gradient norm is {result.logs['grad_norm']}")
            optimizer.step()
            if aux_wrapped is not None:
                with autocast():
                    aux = task.aux_step(aux_wrapped, batch, result, step)
                if aux is not None:
                    aux_optimizer.zero_grad(set_to_none=True)
                    acc.backward(aux.loss)
                    aux_optimizer.step()
                    result.logs.update(aux.logs)
            ema.update(model)
            step += 1

            if step % loop.log_every == 0 or step == loop.max_steps:
                now = time.perf_counter()
                logs = {"loss": float(loss.detach()), **result.logs, "lr": optimizer.param_groups[0]["lr"],
                        "images_per_s": n_images / max(now - t_last, 1e-9)}
                t_last, n_images = now, 0
                if acc.is_main_process:
                    _log(out, writer, step, logs)
                    bar.set_postfix({k: f"{v:.4g}" for k, v in logs.items() if k in ("loss", "images_per_s") or k.startswith("loss_")})
            bar.update(1)
            if acc.is_main_process and loop.report_every and (step % loop.report_every == 0 or step == loop.max_steps):
                _with_ema(task, model, ema, lambda: task.report(model, step, out))
            if step % loop.save_every == 0 or step == loop.max_steps:
                _check_weights_finite(model, ema, out, step)  # never checkpoint poison
                write_checkpoint(out, step, is_main=acc.is_main_process, rank=acc.process_index, barrier=acc.wait_for_everyone,
                                 model=model, ema=ema, optimizer=_inner(optimizer), state={"data_step": step * accum},
                                 aux_model=task.aux_model, aux_optimizer=_inner(aux_optimizer) if aux_optimizer else None,
                                 keep=loop.keep_checkpoints)
        _check_ranks_agree(acc, model, out)
        if acc.is_main_process:
            _with_ema(task, model, ema, lambda: task.save(model, out / "final"))
            logger.info("final model (EMA weights) written to %s", out / "final")
    finally:
        bar.close()
        if writer is not None:
            writer.close()
        acc.wait_for_everyone()
        acc.end_training()
    return out


def _diverged(out: Path, step: int, what: str) -> UniLIPError:
    """The error of a non-finite step: where the newest good checkpoint is and how to go on from it."""
    good = list_checkpoints(out)
    where = (f"the newest checkpoint, {good[-1].name}, predates it: continue from it with --resume and a lower "
             "optim.lr" if good else "no checkpoint was written yet: restart with a lower optim.lr")
    return UniLIPError(f"training diverged at step {step}: {what}; {where} (or check the data)")


def _check_weights_finite(model: nn.Module, ema: EMA, out: Path, step: int) -> None:
    """Refuse to checkpoint weights (live or EMA) holding NaN or inf: the previous checkpoint stays the newest."""
    bad = [name for name, p in model.named_parameters() if p.requires_grad and not torch.isfinite(p.detach()).all()]
    bad += [f"ema.{name}" for name, t in ema.shadow.items() if not torch.isfinite(t).all()]
    if bad:
        raise _diverged(out, step, f"{len(bad)} weight tensors are not finite (e.g. {', '.join(bad[:3])})")


def _check_ranks_agree(acc, model: nn.Module, out: Path) -> None:
    """All processes must end with the same weights (DDP keeps them in step); a desync is an error, not a surprise."""
    checksum = torch.stack([p.detach().double().sum() for p in model.parameters()]).sum().reshape(1).to(acc.device)
    sums = acc.gather(checksum).cpu().tolist()
    if acc.is_main_process:
        (out / "ranks.json").write_text(json.dumps({"processes": acc.num_processes, "weight_checksums": sums}) + "\n")
    if max(sums) - min(sums) > 1e-6 * max(1.0, abs(sums[0])):
        raise UniLIPError(f"the processes ended with different weights (checksums {sums}); distributed training desynced")


def _inner(optimizer):
    """The torch optimizer inside accelerate's wrapper (its state_dict is what we save and load)."""
    return getattr(optimizer, "optimizer", optimizer)


def _batch_size(batch: Any) -> int:
    if isinstance(batch, torch.Tensor):
        return batch.shape[0]
    if isinstance(batch, dict):
        return next(iter(v.shape[0] for v in batch.values() if isinstance(v, torch.Tensor)), 0)
    return len(batch)


def _with_ema(task: TrainTask, model: nn.Module, ema: EMA, fn) -> None:
    """Run ``fn`` with the EMA weights in ``model``, in eval mode, then put the live weights back."""
    ema.store(model)
    ema.copy_to(model)
    model.eval()
    try:
        with torch.no_grad():
            fn()
    finally:
        ema.restore(model)
        task.train_mode()


def _summary_writer(out: Path, purge_step: int | None = None):
    """TensorBoard's writer; ``purge_step`` drops events from that step on (those a resumed run redoes)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # pragma: no cover - tensorboard is a dependency; keep training if it breaks
        logger.warning("tensorboard is not importable; scalars go to metrics.jsonl only")
        return None
    return SummaryWriter(str(out / "tensorboard"), purge_step=purge_step)


def _forget_after(path: Path, step: int) -> None:
    """Drop the lines of ``metrics.jsonl`` logged after ``step`` (atomically): a resumed run logs them again."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines(keepends=True):
        try:
            if json.loads(line).get("step", 0) > step:
                continue
        except ValueError:  # a line cut by the kill
            continue
        kept.append(line)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(kept), encoding="utf-8")
    os.replace(tmp, path)


def _log(out: Path, writer, step: int, logs: dict[str, float]) -> None:
    with open(out / "metrics.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps({"step": step, **logs}) + "\n")
    if writer is not None:
        for key, value in logs.items():
            writer.add_scalar(f"train/{key}", value, step)
