"""The weights that ship with the package: they load, and they meet their floors on fresh held-out scenes.

Floors sit about 10 points (or 2 dB) under what the bundled models measured when they were made (README, "The mini
MLLM and the embedded default": VQA 87.6% original / 87.8% UniLIP encoder on 1000 test questions, PSNR 28.21 dB and
99.3% detector-exact reconstructions on 1000 test scenes; "Generation and editing": mini GenEval colours 0.96, single
objects 0.98, mini ImgEdit ok 0.33 and right content 0.56), on fresh scenes and seeds; generation floors are wider,
as they rest on few samples.
"""

import pytest
import torch

from unilip.pretrained import BUNDLED_DIR, resolve_model

FLOORS = {"vqa_original": 0.78, "vqa_unilip": 0.78, "psnr": 26.0, "detector_exact": 0.93,
          "colors": 0.8, "single_object": 0.5, "edit_content": 0.4, "edit_ok": 0.15}


def test_the_bundle_ships_with_the_package():
    for part in ("mllm", "tokenizer", "generator"):
        assert (BUNDLED_DIR / part / "config.json").is_file() and (BUNDLED_DIR / part / "model.safetensors").is_file()
    total = sum(p.stat().st_size for p in BUNDLED_DIR.rglob("*") if p.is_file())
    assert total <= 20 * 2**20, f"bundled weights {total / 2**20:.1f} MiB, over the 20 MiB budget"


@pytest.fixture(scope="module")
def models():
    from unilip.mllm.model import MLLM
    from unilip.tokenizer import UniLIPTokenizer

    tok = UniLIPTokenizer.from_pretrained(resolve_model("mini", "tokenizer")).eval()
    original = MLLM.from_pretrained(resolve_model("mini", "mllm"))
    unilip = MLLM.from_pretrained(resolve_model("mini", "mllm"))
    unilip.use_encoder(tok.encoder)
    return tok, original, unilip


def test_understanding_floors(models):
    from unilip.config import get_preset
    from unilip.eval.understanding import evaluate_understanding

    _, original, unilip = models
    cfg = get_preset("mini").miniworld
    a = evaluate_understanding(original, "miniworld:test", 400, cfg, knowledge=False)
    b = evaluate_understanding(unilip, "miniworld:test", 400, cfg, knowledge=False)
    assert a["overall"] >= FLOORS["vqa_original"], a["per_type"]
    assert b["overall"] >= FLOORS["vqa_unilip"], b["per_type"]


def test_reconstruction_floors(models):
    import numpy as np

    from unilip.config import get_preset
    from unilip.data.miniworld import detect, match_objects, render, sample_split
    from unilip.eval.grid import to_uint8
    from unilip.eval.metrics import psnr

    tok = models[0]
    cfg = get_preset("mini").miniworld
    scenes = sample_split(cfg, "test", 1000, 200)
    images = torch.from_numpy(np.stack([render(s, cfg) for s in scenes])).permute(0, 3, 1, 2).float() / 255
    recon = tok.reconstruct(images)
    assert float(psnr(recon, images).mean()) >= FLOORS["psnr"]
    exact = [match_objects(detect(r, cfg), s) == len(s.objects) == len(detect(r, cfg).objects)
             for r, s in zip(to_uint8(recon), scenes)]
    assert np.mean(exact) >= FLOORS["detector_exact"]


def test_demo_writes_a_page(tmp_path):
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "unilip.cli", "demo", "-o", str(tmp_path), "--n", "4"], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    page = (tmp_path / "index.html").read_text()
    assert page.count("<figure>") == 12 and "UniLIP encoder" in page and "wrote" in r.stdout
    assert "<h2>Generation</h2>" in page and "<h2>Editing</h2>" in page and "right by the mini-world detector" in page


@pytest.fixture(scope="module")
def pipe():
    from unilip.pipeline import UniLIPPipeline

    p = UniLIPPipeline.from_pretrained("mini")
    p.set_progress_bar_config(disable=True)
    return p


def test_generation_floors(pipe):
    """Single objects and colours of mini GenEval, at seeds other than the measured run's."""
    from unilip.config import get_preset
    from unilip.eval.geneval_mini import evaluate_geneval

    r = evaluate_geneval(pipe, get_preset("mini").miniworld, samples=1, seed=7,
                         categories=("single_object", "colors"))
    assert r["per_category"]["single_object"] >= FLOORS["single_object"], r
    assert r["per_category"]["colors"] >= FLOORS["colors"], r


def test_editing_floors(pipe):
    import numpy as np

    from unilip.config import get_preset
    from unilip.eval.imgedit_mini import evaluate_imgedit

    r = evaluate_imgedit(pipe, get_preset("mini").miniworld, n=40, n_heldout=0, seed=7)
    assert np.mean(list(r["content"].values())) >= FLOORS["edit_content"], r
    assert r["overall"] >= FLOORS["edit_ok"], r  # followed and everything else preserved


def test_reproduce_quick(tmp_path):
    """The CI-sized smoke run of `unilip reproduce tokenizer --quick`: every variant trains, evaluates and reports."""
    import json

    from unilip.reproduce.tokenizer import reproduce_tokenizer

    results = reproduce_tokenizer(tmp_path, quick=True)
    assert set(results["variants"]) == {"stage1_only", "stage1_long", "full", "distill_0.1", "distill_0.01", "no_distill", "direct_ft",
                                        "full_no_stage1"}
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["quick"] and saved["distill_curves"]["with_stage1"] and saved["distill_curves"]["without_stage1"]
    for frozen in ("stage1_only", "stage1_long"):
        assert saved["variants"][frozen]["feature_drift"] == 0.0  # stage 1 never touches the encoder
    text = (tmp_path / "report.md").read_text()
    assert "QUICK SMOKE RUN" in text and "The paper's claims, checked" in text
    assert (tmp_path / "report.html").read_text().count("data:image/png;base64") >= 7
