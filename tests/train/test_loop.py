"""The shared training loop: schedule, optimizer groups, EMA, checkpoints, exact resume, failure modes."""

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from unilip.errors import UniLIPError
from unilip.train.checkpoint import list_checkpoints
from unilip.train.ema import EMA
from unilip.train.loop import (
    LoopConfig,
    OptimConfig,
    ParamGroup,
    StepOutput,
    TrainTask,
    build_optimizer,
    lr_factor,
    train,
)


class ToyTask(TrainTask):
    """Regression with a frozen first layer and dropout (so RNG state matters for exact resume)."""

    def __init__(self, seed=0, fail_at=None):
        torch.manual_seed(seed)
        self.model = nn.Sequential(nn.Linear(4, 16), nn.Dropout(0.2), nn.LayerNorm(16), nn.Linear(16, 1))
        self.model[0].requires_grad_(False)
        self.fail_at = fail_at
        self.saved = None

    def param_groups(self):
        return [ParamGroup("norm", list(self.model[2].named_parameters(prefix="2")), 0.1),
                ParamGroup("head", list(self.model[3].named_parameters(prefix="3")), 1.0)]

    def batches(self, start_step, rank, world_size):
        step = start_step
        while True:
            g = torch.Generator().manual_seed(1000 + step * world_size + rank)
            x = torch.randn(8, 4, generator=g)
            yield {"x": x, "y": x.sum(1, keepdim=True)}
            step += 1

    def step(self, model, batch, step):
        loss = ((model(batch["x"]) - batch["y"]) ** 2).mean()
        if self.fail_at is not None and step == self.fail_at:
            loss = loss * float("nan")
        return StepOutput(loss, {"loss_mse": float(loss.detach())})

    def save(self, model, out_dir):
        self.saved = {k: v.clone() for k, v in model.state_dict().items()}


def _loop(tmp_path, steps, **kw):
    return LoopConfig(output_dir=str(tmp_path), max_steps=steps, batch_size=8, log_every=1, save_every=kw.pop("save_every", 3),
                      report_every=0, progress=False, **kw)


OPTIM = OptimConfig(lr=1e-2, warmup_steps=2, weight_decay=0.1)


def test_lr_schedule():
    cfg = OptimConfig(lr=1.0, warmup_steps=10, min_lr_ratio=0.1)
    assert lr_factor(0, cfg, 110) == pytest.approx(0.1)
    assert lr_factor(9, cfg, 110) == pytest.approx(1.0)
    assert lr_factor(10, cfg, 110) == pytest.approx(1.0)
    assert lr_factor(60, cfg, 110) == pytest.approx(0.55)
    assert lr_factor(110, cfg, 110) == pytest.approx(0.1)


def test_optimizer_groups_scale_and_decay():
    task = ToyTask()
    opt = build_optimizer(task.param_groups(), OptimConfig(lr=1e-3, weight_decay=0.05))
    by = {(g["group"], g["weight_decay"]): g for g in opt.param_groups}
    assert by[("norm", 0.0)]["lr"] == pytest.approx(1e-4)  # exactly 0.1x
    assert by[("head", 0.05)]["lr"] == pytest.approx(1e-3)
    assert ("norm", 0.05) not in by  # LayerNorm weights take no decay
    assert all(p.ndim == 2 for p in by[("head", 0.05)]["params"])
    frozen = {id(p) for p in task.model[0].parameters()}
    assert not any(id(p) in frozen for g in opt.param_groups for p in g["params"])


def test_training_reduces_loss_and_keeps_frozen_layer(tmp_path):
    task = ToyTask()
    frozen = task.model[0].weight.clone()
    train(task, _loop(tmp_path, 30, save_every=100), OPTIM)
    logs = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert sum(x["loss"] for x in logs[-5:]) < sum(x["loss"] for x in logs[:5])
    assert torch.equal(task.model[0].weight, frozen)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["checkpoint-0000030"]
    assert (tmp_path / "tensorboard").is_dir() and task.saved is not None


def test_resume_is_exact(tmp_path):
    straight = ToyTask()
    train(straight, _loop(tmp_path / "a", 7), OPTIM)

    first = ToyTask()
    train(first, _loop(tmp_path / "b", 3), OPTIM)  # "killed" after the step-3 checkpoint
    second = ToyTask(seed=123)  # a fresh process: different init, everything must come from the checkpoint
    train(second, _loop(tmp_path / "b", 7), OPTIM, resume=True)
    for (name, a), b in zip(straight.model.state_dict().items(), second.model.state_dict().values()):
        assert torch.equal(a, b), name
    for name in straight.saved:  # the EMA weights handed to save() too
        assert torch.equal(straight.saved[name], second.saved[name]), name


def test_refuses_to_overwrite_checkpoints_and_ignores_partial_saves(tmp_path):
    train(ToyTask(), _loop(tmp_path, 3), OPTIM)
    (tmp_path / "checkpoint-0000009.tmp").mkdir()  # a save killed half-way
    assert [p.name for p in list_checkpoints(tmp_path)] == ["checkpoint-0000003"]
    with pytest.raises(UniLIPError, match="--resume"):
        train(ToyTask(), _loop(tmp_path, 6), OPTIM)


def test_non_finite_loss_stops_with_the_step(tmp_path):
    # the fifth update (loop index 4) is the one metrics.jsonl would call step 5; checkpoint 3 is the last good one
    with pytest.raises(UniLIPError, match=r"diverged at step 5: the loss is nan.*checkpoint-0000003.*--resume"):
        train(ToyTask(fail_at=4), _loop(tmp_path, 10), OPTIM)
    assert [json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3, 4]


class PoisonTask(ToyTask):
    """The loss stays finite but the update at ``poison_at`` writes NaN into a trained weight (a bad kernel, a
    bit flip): only a check of the weights themselves can keep it out of the checkpoint."""

    def __init__(self, poison_at=None, **kw):
        super().__init__(**kw)
        self.poison_at = poison_at

    def step(self, model, batch, step):
        out = super().step(model, batch, step)
        if step == self.poison_at:
            with torch.no_grad():
                self.model[3].bias.fill_(float("nan"))
        return out


def test_poisoned_weights_are_never_checkpointed_and_resume_continues(tmp_path):
    with pytest.raises(UniLIPError, match=r"diverged at step 6: 2 weight tensors are not finite .*checkpoint-0000003"):
        train(PoisonTask(poison_at=5), _loop(tmp_path, 9), OPTIM)  # update 6 poisons; its checkpoint is refused
    assert [p.name for p in list_checkpoints(tmp_path)] == ["checkpoint-0000003"]
    assert not list(tmp_path.glob("*.tmp"))
    task = PoisonTask(seed=5)  # the same run without the fault, resumed with a lower learning rate
    train(task, _loop(tmp_path, 9), OptimConfig(lr=5e-3, warmup_steps=2, weight_decay=0.1), resume=True)
    assert all(torch.isfinite(v).all() for v in task.saved.values())
    assert [p.name for p in list_checkpoints(tmp_path)] == ["checkpoint-0000006", "checkpoint-0000009"]


def test_a_full_disk_during_a_checkpoint_keeps_the_previous_one(tmp_path, monkeypatch):
    import errno

    from unilip.train import checkpoint

    train(ToyTask(), _loop(tmp_path, 3), OPTIM)
    real = checkpoint.save_model

    def full(model, path, *a, **k):
        real(model, path, *a, **k)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint, "save_model", full)
    with pytest.raises(UniLIPError, match=r"No space left on device.*checkpoint-0000006\.tmp was removed.*"
                                          r"checkpoint-0000003, is intact"):
        train(ToyTask(), _loop(tmp_path, 6), OPTIM, resume=True)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("checkpoint-")] == ["checkpoint-0000003"]
    monkeypatch.setattr(checkpoint, "save_model", real)
    train(ToyTask(), _loop(tmp_path, 6), OPTIM, resume=True)  # space freed: it goes on from step 3
    assert [p.name for p in list_checkpoints(tmp_path)] == ["checkpoint-0000003", "checkpoint-0000006"]


def test_resume_saves_the_same_rng_states_and_logs_each_step_once(tmp_path):
    train(ToyTask(), _loop(tmp_path / "a", 6), OPTIM)
    train(ToyTask(), _loop(tmp_path / "b", 3), OPTIM)
    with open(tmp_path / "b" / "metrics.jsonl", "a") as f:  # killed after logging steps 4 and 5, before checkpoint 6
        f.write(json.dumps({"step": 4, "loss": 9.0}) + "\n" + json.dumps({"step": 5, "loss": 9.0}) + "\n{\"step\": 6, \"lo")
    train(ToyTask(seed=1), _loop(tmp_path / "b", 6), OPTIM, resume=True)
    for name in ("rng-0.json", "state.json"):
        assert (tmp_path / "a" / "checkpoint-0000006" / name).read_text() == \
            (tmp_path / "b" / "checkpoint-0000006" / name).read_text(), name
    logged = [json.loads(line) for line in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    straight = [json.loads(line) for line in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged] == [1, 2, 3, 4, 5, 6]
    assert [r["loss"] for r in logged] == [r["loss"] for r in straight]


def test_a_run_that_never_trained_leaves_nothing_and_never_overwrites_a_config(tmp_path):
    with pytest.raises(UniLIPError, match="diverged at step 1"):
        train(ToyTask(fail_at=0), _loop(tmp_path / "new", 5), OPTIM, config={"a": 1})
    assert not (tmp_path / "new").exists()
    train(ToyTask(), _loop(tmp_path / "run", 3), OPTIM, config={"a": 1})
    before = (tmp_path / "run" / "config.yaml").read_text()
    with pytest.raises(UniLIPError, match="--resume"):
        train(ToyTask(), _loop(tmp_path / "run", 6), OPTIM, config={"a": 2})
    assert (tmp_path / "run" / "config.yaml").read_text() == before


def test_ema_warmup_and_swap():
    model = nn.Linear(2, 1)
    ema = EMA(model, decay=0.999)
    assert ema.current_decay() == pytest.approx(0.1)
    with torch.no_grad():
        model.weight.add_(1.0)
    live = model.weight.clone()
    ema.update(model)
    ema.store(model)
    ema.copy_to(model)
    assert not torch.equal(model.weight, live)
    ema.restore(model)
    assert torch.equal(model.weight, live)
    state = ema.state_dict()
    other = EMA(model)
    other.load_state_dict(state)
    assert other.updates == 1 and torch.equal(other.shadow["weight"], ema.shadow["weight"])


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    train(ToyTask(), _loop(tmp_path, 3), OPTIM)
    ckpt = list_checkpoints(tmp_path)[-1]
    (ckpt / "optimizer.pt").write_bytes(b"garbage")
    with pytest.raises(UniLIPError, match="cannot resume"):
        train(ToyTask(), _loop(tmp_path, 6), OPTIM, resume=True)
    assert Path(ckpt).is_dir()


def test_compiled_blocks_train_like_eager_ones_and_keep_their_names(tmp_path):
    eager, compiled = ToyTask(), ToyTask()
    for task in (eager, compiled):
        task.model._no_split_modules = ["LayerNorm", "Linear"]
    train(eager, _loop(tmp_path / "a", 4), OPTIM)
    train(compiled, _loop(tmp_path / "b", 4, compile_blocks=True), OPTIM)  # real inductor compilation, static shapes
    assert all(getattr(m, "_compiled_call_impl", None) is not None for m in compiled.model if not isinstance(m, nn.Dropout))
    assert list(compiled.saved) == list(eager.saved)  # checkpoints keep the eager parameter names
    for name, a in eager.model.state_dict().items():
        torch.testing.assert_close(compiled.model.state_dict()[name], a, atol=1e-5, rtol=1e-5)
    with pytest.raises(UniLIPError, match="names no repeated blocks"):
        train(ToyTask(), _loop(tmp_path / "c", 1, compile_blocks=True), OPTIM)


class RowsTask(ToyTask):
    """Deterministic regression (no dropout) reading batch k as rows [k*b, (k+1)*b) of one fixed stream."""

    def __init__(self, batch, seed=0):
        super().__init__(seed)
        self.model[1] = nn.Identity()
        self.batch = batch

    def batches(self, start_step, rank, world_size):
        k = start_step
        while True:
            # row i of the stream is seeded by i: any split of it into batches gives the same rows
            x = torch.stack([torch.randn(4, generator=torch.Generator().manual_seed(k * self.batch + i))
                             for i in range(self.batch)])
            yield {"x": x, "y": x.sum(1, keepdim=True)}
            k += 1


def test_grad_accumulation_equals_the_large_batch_and_resumes_exactly(tmp_path):
    large, accumulated = RowsTask(batch=8), RowsTask(batch=4)
    train(large, _loop(tmp_path / "a", 6), OPTIM)
    train(accumulated, _loop(tmp_path / "b", 6, grad_accum=2), OPTIM)
    for name, a in large.model.state_dict().items():
        torch.testing.assert_close(accumulated.model.state_dict()[name], a, atol=1e-6, rtol=1e-6)
    logs = [json.loads(line) for line in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    reference = [json.loads(line) for line in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in logs] == list(range(1, 7))
    for got, want in zip(logs, reference):  # the step's loss and its clipped gradient norm are the whole step's
        assert got["loss"] == pytest.approx(want["loss"], rel=1e-5)
        assert got["grad_norm"] == pytest.approx(want["grad_norm"], rel=1e-5)

    first = RowsTask(batch=4)
    train(first, _loop(tmp_path / "c", 3, grad_accum=2), OPTIM)  # "killed" after the step-3 checkpoint
    second = RowsTask(batch=4, seed=123)
    train(second, _loop(tmp_path / "c", 6, grad_accum=2), OPTIM, resume=True)
    for name, a in accumulated.model.state_dict().items():
        assert torch.equal(second.model.state_dict()[name], a), name
