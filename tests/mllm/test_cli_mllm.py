"""`unilip ask` and `unilip eval understanding` on a tiny MLLM and a tokenizer built from its encoder."""

import copy
import json

import pytest
import torch
from PIL import Image

from unilip.cli import main
from unilip.mllm.model import MLLM
from unilip.tokenizer import UniLIPTokenizer


@pytest.fixture(scope="module")
def dirs(tiny_cfg, text_tokenizer, tmp_path_factory):
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("models")
    MLLM.from_config(tiny_cfg.model, text_tokenizer).save_pretrained(root / "mllm")
    cfg = copy.deepcopy(tiny_cfg.model)
    cfg.mllm.pretrained = str(root / "mllm")
    UniLIPTokenizer.from_config(cfg).save_pretrained(root / "tok")
    return root


def test_ask_with_both_encoders(dirs, tmp_path, capsys):
    image = tmp_path / "scene.png"
    Image.new("RGB", (48, 48), (200, 40, 40)).save(image)
    for encoder in ("original", "unilip"):
        code = main(["ask", str(image), "what", "color", "is", "the", "circle?", "--model", str(dirs / "mllm"),
                     "--encoder", encoder, "--tokenizer", str(dirs / "tok")])
        assert code == 0
    assert len(capsys.readouterr().out.splitlines()) == 2
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"GIF89a")
    assert main(["ask", str(bad), "hello?", "--model", str(dirs / "mllm")]) == 2
    assert "cannot read image" in capsys.readouterr().err


def test_eval_understanding_writes_results(dirs, tmp_path, capsys):
    out = tmp_path / "vqa.json"
    code = main(["eval", "understanding", "--model", str(dirs / "mllm"), "--encoder", "unilip", "--tokenizer",
                 str(dirs / "tok"), "--data", "miniworld:heldout", "--n", "8", "-o", str(out)])
    assert code == 0
    result = json.loads(out.read_text())
    r = result["miniworld:heldout"]
    assert r["n"] == 8 and set(r["chance"]) == set(r["per_type"]) and "knowledge" in r
    answers = (tmp_path / "vqa-miniworld_heldout-answers.jsonl").read_text().splitlines()
    assert len(answers) == 8 and "prediction" in json.loads(answers[0])
