"""MLLM training: the vision stage learns patch attributes, the instruct stage starts from its tower and trains."""

import json
from pathlib import Path

import pytest
import torch
from tiny import TINY_MODEL

from unilip.errors import ConfigError
from unilip.mllm.model import MLLM
from unilip.train.mllm import load_mllm_config, train_mllm

TINY = [*TINY_MODEL, "loop.batch_size=8", "loop.log_every=1", "loop.progress=false", "optim.warmup_steps=1", "optim.lr=3e-3"]


def test_vision_then_instruct(tmp_path):
    vision = train_mllm(load_mllm_config(None, [*TINY, f"loop.output_dir={tmp_path / 'v'}", "loop.max_steps=12",
                                                "loop.report_every=0", "loop.save_every=12"]))
    logs = [json.loads(line) for line in (vision / "metrics.jsonl").read_text().splitlines()]
    assert logs[-1]["loss_ce"] < logs[0]["loss_ce"]
    from transformers import InternVLVisionModel

    tower = InternVLVisionModel.from_pretrained(vision / "final")
    instruct = train_mllm(load_mllm_config(None, [
        *TINY, "stage.name=instruct", "stage.kind=instruct", "stage.trainable={projector: 1.0, language: 1.0}",
        f"stage.init={vision / 'final'}", f"loop.output_dir={tmp_path / 'i'}", "loop.max_steps=4", "loop.save_every=4",
        "loop.report_every=4", "eval_questions=16"]))
    mllm = MLLM.from_pretrained(instruct / "final")
    for (name, a), b in zip(tower.state_dict().items(), mllm.model.model.vision_tower.state_dict().values()):
        assert torch.equal(a, b), name  # frozen tower = the vision stage's
    curve = [json.loads(line) for line in (instruct / "eval.jsonl").read_text().splitlines()]
    assert curve[-1]["step"] == 4 and 0 <= curve[-1]["overall"] <= 1


def test_bad_stage_configs(tmp_path):
    with pytest.raises(ConfigError, match="stage.trainable.decoder"):
        load_mllm_config(None, ["stage.trainable={decoder: 1.0}"])
    with pytest.raises(ConfigError, match="stage.kind"):
        load_mllm_config(None, ["stage.kind=pretrain"])


@pytest.mark.parametrize("path", sorted(Path(__file__).parents[2].joinpath("configs", "mllm").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_load(path):
    cfg = load_mllm_config(path)
    assert cfg.stage.kind in path.stem
