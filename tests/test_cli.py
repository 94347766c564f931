"""The `unilip` command: subprocess runs of the real console script, and in-process checks of every --help."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from unilip import __version__
from unilip.cli import build_parser, main

UNILIP = shutil.which("unilip") or str(Path(sys.executable).with_name("unilip"))


def run(*args, cwd=None):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([UNILIP, *map(str, args)], capture_output=True, text=True, cwd=cwd, env=env, timeout=120)


def _subcommands(parser, prefix=()):
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*prefix, name)
                yield from _subcommands(sub, (*prefix, name))


def test_every_command_has_help(capsys):
    commands = list(_subcommands(build_parser()))
    assert ("miniworld", "make") in commands and ("demo",) in commands and ("config", "show") in commands
    for cmd in [(), *commands]:
        with pytest.raises(SystemExit) as e:
            main([*cmd, "--help"])
        assert e.value.code == 0
        assert "usage: unilip" in capsys.readouterr().out


def test_version_and_demo(tmp_path):
    r = run("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"unilip {__version__}"
    r = run("miniworld", "sheet", "--out", tmp_path / "demo")
    assert r.returncode == 0, r.stderr
    from PIL import Image

    assert Image.open(tmp_path / "demo" / "miniworld_sheet.png").size[0] > 500
    text = (tmp_path / "demo" / "miniworld_sheet.md").read_text()
    assert "## Captions" in text and "## Edits" in text


def test_make_then_detect_recovers_the_scenes(tmp_path):
    r = run("miniworld", "make", "--out", tmp_path / "ds", "--n", "5", "--task", "captions", "--seed", "10", "--split", "test", "-q")
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in (tmp_path / "ds" / "metadata.jsonl").read_text().splitlines()]
    assert [row["id"] for row in rows] == [f"test-{i:09d}" for i in range(10, 15)]
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    r = run("miniworld", "detect", *[tmp_path / "ds" / row["file"] for row in rows], bad)
    assert r.returncode == 1  # one unreadable image
    assert "Traceback" not in r.stderr and "bad.png" in r.stderr
    found = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(found) == 5
    for row, det in zip(rows, found):
        key = lambda o: (o["shape"], o["color"], o["size"])  # noqa: E731
        assert sorted(map(key, det["objects"])) == sorted(map(key, row["scene"]["objects"]))
        assert det["background"] == row["scene"]["background"]


def test_make_webdataset_and_overrides(tmp_path):
    r = run("miniworld", "make", "--out", tmp_path / "ds", "--n", "4", "--task", "edit", "--format", "wds", "--size", "48", "-q", "max_objects=4")
    assert r.returncode == 0, r.stderr
    info = json.loads((tmp_path / "ds" / "dataset.json").read_text())
    assert info["size"] == 48 and info["miniworld"]["max_objects"] == 4 and info["format"] == "wds"


@pytest.mark.parametrize(
    "args, message",
    [
        (["miniworld", "make", "--out", "{tmp}/x", "--n", "2", "max_objects=9"], "max_objects"),
        (["miniworld", "make", "--out", "{tmp}/x", "--n", "2", "colours=[red]"], "unknown key"),
        (["miniworld", "make", "--out", "{tmp}/x", "--n", "2", "--config", "{tmp}/missing.yaml"], "not found"),
        (["miniworld", "detect", "{tmp}/nothing.png"], "no such file"),
        (["config", "show", "--preset", "mini", "mllm.vision.num_layers=two"], "mllm.vision.num_layers"),
    ],
)
def test_bad_input_is_one_clear_line(tmp_path, capsys, args, message):
    code = main([a.format(tmp=tmp_path) for a in args])
    err = capsys.readouterr().err
    assert code in (1, 2) and message in err and err.startswith("unilip: error:")


def test_config_show_prints_loadable_yaml(tmp_path, capsys):
    assert main(["config", "show", "--preset", "mini", "generator.cfg_scale=3"]) == 0
    path = tmp_path / "c.yaml"
    path.write_text(capsys.readouterr().out)
    from unilip.config import UniLIPConfig, load_config

    cfg = load_config(UniLIPConfig, path)
    assert cfg.preset == "mini" and cfg.generator.cfg_scale == 3.0


def test_a_strict_ascii_terminal_gets_escaped_text_not_a_traceback(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONIOENCODING": "ascii:strict"}
    run_ = subprocess.run([UNILIP, "miniworld", "detect", str(tmp_path / "café.png")], capture_output=True, env=env,
                          timeout=120)
    err = run_.stderr.decode("ascii")  # every byte is ASCII: the é is escaped
    assert run_.returncode == 1 and "Traceback" not in err
    assert [line for line in err.splitlines() if line.startswith("unilip: error:")] == [
        f"unilip: error: cannot read image {tmp_path}/caf\\xe9.png: no such file"]


def test_dtype_and_device_on_the_model_commands(tmp_path, capsys):
    """--dtype bf16 runs the bundled models with bf16 weights end to end; a device that is not there is one clear
    error before any model loads."""
    import numpy as np
    from PIL import Image

    assert main(["generate", "a red circle", "--dtype", "bf16", "--steps", "4", "-o", str(tmp_path / "gen")]) == 0
    image = tmp_path / "gen" / "0000.png"
    assert Image.open(image).size == (64, 64)
    assert main(["edit", str(image), "make the circle blue", "--dtype", "bf16", "--steps", "4", "-o", str(tmp_path / "ed")]) == 0
    assert main(["reconstruct", str(image), "--model", "mini", "--dtype", "bf16", "-o", str(tmp_path / "rec")]) == 0
    recon = np.asarray(Image.open(tmp_path / "rec" / "0000_recon.png"), dtype=float)
    assert np.abs(recon - np.asarray(Image.open(image), dtype=float)).mean() < 20  # a reconstruction, not noise
    assert main(["ask", str(image), "what", "color", "is", "the", "circle?", "--dtype", "bf16"]) == 0
    capsys.readouterr()
    import torch

    if not torch.cuda.is_available():
        assert main(["generate", "a red circle", "--device", "cuda", "-o", str(tmp_path / "x")]) == 2
        assert "CUDA is not available" in capsys.readouterr().err and not (tmp_path / "x").exists()
    assert main(["generate", "a red circle", "--device", "tpu9", "-o", str(tmp_path / "y")]) == 2
    assert "not a device" in capsys.readouterr().err
