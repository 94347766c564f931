"""Reconstruction evaluation and the `reconstruct` / `eval recon` commands, on a tiny random tokenizer."""

import csv
import json

import pytest
import torch
from PIL import Image
from tiny import TINY_MODEL

from unilip.cli import main
from unilip.data.miniworld import MiniWorldConfig
from unilip.data.miniworld.dataset import write_dataset
from unilip.data.sources import open_source
from unilip.eval.recon import evaluate_reconstruction
from unilip.tokenizer import UniLIPTokenizer
from unilip.train.tokenizer import load_train_config


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    torch.manual_seed(0)
    model = UniLIPTokenizer.from_config(load_train_config(None, TINY_MODEL).model)
    path = tmp_path_factory.mktemp("tok")
    model.save_pretrained(path)
    return path


def test_evaluate_reconstruction_rows_and_summary(tiny_dir, tmp_path):
    data = write_dataset(tmp_path / "ds", "images", 5, MiniWorldConfig(image_size=32))
    model = UniLIPTokenizer.from_pretrained(tiny_dir)
    rows, summary = evaluate_reconstruction(model, open_source(str(data)), 32, batch_size=2)
    assert len(rows) == 5 and summary["n_images"] == 5
    assert summary["psnr"] == pytest.approx(sum(r["psnr"] for r in rows) / 5)
    assert all(r["ssim_official"] >= r["ssim"] for r in rows)  # data_range=2 inflates SSIM
    assert summary["feature_fd"] >= 0
    # a perfect reconstruction scores an infinite PSNR and SSIM 1: the metrics see the difference
    model.reconstruct = lambda x, pad_to_multiple=False: x
    _, perfect = evaluate_reconstruction(model, open_source(str(data)), 32)
    assert perfect["ssim"] == pytest.approx(1.0) and perfect["feature_fd"] == pytest.approx(0.0, abs=1e-6)


def test_eval_recon_command_writes_json_and_csv(tiny_dir, tmp_path, capsys):
    out = tmp_path / "res" / "recon.json"
    assert main(["eval", "recon", "--model", str(tiny_dir), "--data", "miniworld:test", "--n", "4", "-o", str(out)]) == 0
    summary = json.loads(out.read_text())
    assert summary["n_images"] == 4 and "ssim_official" in summary["notes"]
    with open(out.with_suffix(".csv")) as f:
        assert len(list(csv.DictReader(f))) == 4


def test_reconstruct_command_and_bad_input(tiny_dir, tmp_path, capsys):
    good = tmp_path / "good.png"
    Image.new("RGB", (50, 40), (200, 30, 30)).save(good)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"")
    code = main(["reconstruct", str(good), str(bad), "--model", str(tiny_dir), "-o", str(tmp_path / "out")])
    captured = capsys.readouterr()
    assert code == 1 and "empty file" in captured.err and "Traceback" not in captured.err
    assert Image.open(tmp_path / "out" / "good_recon.png").size == (50, 40)  # the input's size (issue 14)
    assert "PSNR" in captured.out and "50x40 through 32x32" in captured.out
    assert main(["reconstruct", str(good), "--model", str(tmp_path / "missing")]) == 2
