"""Tokenizer training: what each stage trains and freezes, self-distillation, GAN, exact resume, two processes."""

import json
from pathlib import Path

import pytest
import torch
from tiny import TINY_MODEL, torchrun_train

from unilip.errors import ConfigError, UniLIPError
from unilip.tokenizer import UniLIPTokenizer
from unilip.train.loop import build_optimizer
from unilip.train.tokenizer import TokenizerTask, load_train_config, train_tokenizer

# A tokenizer small enough to train a few steps in a second: 32 px, ViT 32 x 1 layer, 2x2 latent.
TINY = [
    *TINY_MODEL, "data.image_size=32", "data.grid_images=2", "loop.batch_size=4", "loop.log_every=1",
    "loop.report_every=0", "loop.progress=false", "optim.warmup_steps=1", "optim.lr=1e-3",
]
STAGE2 = ["stage.name=stage2", "stage.trainable={encoder: 0.1, projection: 1.0, decoder: 1.0}", "loss.distill_weight=1.0"]


def _cfg(tmp, *extra, steps=3):
    return load_train_config(None, [*TINY, f"loop.output_dir={tmp}", f"loop.max_steps={steps}", f"loop.save_every={steps}", *extra])


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def _changed(before, after, prefix):
    keys = [k for k in before if k.startswith(prefix)]
    assert keys, prefix
    return any(not torch.equal(before[k], after[k]) for k in keys)


def test_stage1_trains_only_projection_and_decoder(tmp_path):
    task = TokenizerTask(_cfg(tmp_path))
    before = _state(task.model)
    from unilip.train.loop import train

    train(task, task.cfg.loop, task.cfg.optim)
    after = _state(task.model)
    assert not _changed(before, after, "encoder.")  # bit-identical
    assert _changed(before, after, "projection.") and _changed(before, after, "decoder.")
    assert task.teacher is None  # no distillation while the encoder is frozen
    assert not task.model.encoder.training and task.model.decoder.training


def test_stage2_trains_encoder_at_a_tenth_and_distills_from_a_frozen_teacher(tmp_path):
    stage1 = train_tokenizer(_cfg(tmp_path / "s1"))
    task = TokenizerTask(_cfg(tmp_path / "s2", *STAGE2, f"stage.init={stage1 / 'final'}"))
    initial = UniLIPTokenizer.from_pretrained(stage1 / "final")
    teacher_before = _state(task.teacher)
    # the optimizer: encoder groups at exactly 0.1 x the base learning rate
    opt = build_optimizer(task.param_groups(), task.cfg.optim)
    scales = {g["group"]: g["lr"] / task.cfg.optim.lr for g in opt.param_groups}
    assert scales == {"encoder": pytest.approx(0.1, abs=0), "projection": 1.0, "decoder": 1.0}
    # the first step: student == teacher, so the distillation loss is exactly 0
    batch = next(task.batches(0, 0, 1))
    out = task.step(task.model, batch, 0)
    assert out.logs["loss_distill"] == 0.0
    from unilip.train.loop import train

    train(task, task.cfg.loop, task.cfg.optim)
    after = _state(task.model)
    assert _changed(_state(initial), after, "encoder.")
    for k, v in _state(task.teacher).items():
        assert torch.equal(v, teacher_before[k]), k
    assert all(p.grad is None and not p.requires_grad for p in task.teacher.parameters())
    logs = [json.loads(line) for line in (tmp_path / "s2" / "metrics.jsonl").read_text().splitlines()]
    assert logs[-1]["loss_distill"] > 0  # the encoder moved away from the teacher, and the loss sees it


def test_gan_term_switches_on_at_its_step(tmp_path):
    cfg = _cfg(tmp_path, "loss.gan_start=2", "loss.disc_channels=[8, 8, 16]", steps=4)
    train_tokenizer(cfg)
    logs = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert "loss_gan" not in logs[0] and "loss_gan" not in logs[1]
    assert "loss_gan" in logs[2] and "loss_disc" in logs[2] and "lecam" in logs[3]
    assert (tmp_path / "checkpoint-0000004" / "aux_model.safetensors").is_file()


def test_resume_reproduces_the_uninterrupted_run(tmp_path):
    extra = (*STAGE2, "loss.gan_start=1", "loss.disc_channels=[8, 8, 16]")
    straight = train_tokenizer(_cfg(tmp_path / "a", *extra, steps=4))
    train_tokenizer(_cfg(tmp_path / "b", *extra, steps=2))
    resumed = train_tokenizer(_cfg(tmp_path / "b", *extra, steps=4), resume=True)
    a = UniLIPTokenizer.from_pretrained(straight / "final").state_dict()
    b = UniLIPTokenizer.from_pretrained(resumed / "final").state_dict()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_grids_and_final_model(tmp_path):
    out = train_tokenizer(_cfg(tmp_path, "loop.report_every=2", steps=2))
    assert (out / "images" / "recon-0000002.png").is_file()
    model = UniLIPTokenizer.from_pretrained(out / "final")
    assert model.encode(torch.rand(1, 3, 32, 32)).shape == (1, 32, 2, 2)
    assert (out / "config.yaml").is_file()


def test_bad_configs_are_clear(tmp_path):
    with pytest.raises(ConfigError, match="stage.trainable.vit"):
        _cfg(tmp_path, "stage.trainable={vit: 1.0}")
    with pytest.raises(ConfigError, match="^model.mllm.vision.num_layers"):
        _cfg(tmp_path, "model.mllm.vision.num_layers=many")
    with pytest.raises(ConfigError, match="loss.perceptual"):
        _cfg(tmp_path, "loss.perceptual=vgg")
    with pytest.raises(UniLIPError, match="LPIPS"):
        TokenizerTask(_cfg(tmp_path, "loss.perceptual=lpips", f"loss.lpips_weights={tmp_path / 'nowhere'}"))


def test_folder_with_bad_images_trains_and_counts_them(tmp_path):
    from PIL import Image

    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(6):
        Image.new("RGB", (40, 40), (40 * i, 100, 200)).save(folder / f"{i}.png")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnope")
    (folder / "empty.jpg").write_bytes(b"")
    train_tokenizer(_cfg(tmp_path / "run", f"data.train={folder}", f"data.eval={folder}", steps=3))
    assert (tmp_path / "run" / "final" / "model.safetensors").is_file()


def test_two_processes_agree_and_match_one_process(tmp_path):
    """torchrun with 2 CPU processes (gloo): ranks end identical, and equal (to float rounding) a single process that
    sees the same global batch; rank 0 writes the checkpoint and the final model."""
    args = [*TINY, *STAGE2, "loop.max_steps=3", "loop.save_every=3"]
    torchrun_train("tokenizer", [*args, "loop.batch_size=2"], tmp_path / "ddp", tmp_path / "torchrun.log")
    single = train_tokenizer(load_train_config(None, [*args, "loop.batch_size=4", f"loop.output_dir={tmp_path / 'one'}"]))
    a = UniLIPTokenizer.from_pretrained(tmp_path / "ddp" / "final").state_dict()
    b = UniLIPTokenizer.from_pretrained(single / "final").state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5, msg=k)
    assert Path(tmp_path / "ddp" / "checkpoint-0000003").is_dir()


@pytest.mark.parametrize("path", sorted(Path(__file__).parents[2].joinpath("configs", "tokenizer").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_stage_configs_load(path):
    cfg = load_train_config(path)
    stage = path.stem.split("_")[1]
    assert cfg.stage.name == stage
    if path.stem == "mini_stage3":  # the mini decoder-only stage: latent space and understanding stay as they are
        assert cfg.stage.trainable == {"decoder": 1.0} and cfg.stage.init
        return
    assert ("encoder" in cfg.stage.trainable) == (stage != "stage1")
    if stage != "stage1":
        assert cfg.stage.trainable["encoder"] == 0.1 and cfg.loss.distill_weight == 1.0 and cfg.stage.init
    assert cfg.model.preset == path.stem.split("_")[0]
