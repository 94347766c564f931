"""The fuzz targets of tests/fuzz_targets.py, run for a bounded time (UNILIP_FUZZ_SECONDS, default 20 s each), and
every seed (crashes found before included) replayed through them directly."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
SEEDS = HERE / "data" / "fuzz"


@pytest.mark.parametrize("target,seeds", [("image", "images"), ("config", "configs")])
def test_the_seeds_and_the_crashes_found_before_are_refused_cleanly(target, seeds):
    pytest.importorskip("atheris")
    import fuzz_targets

    files = sorted((SEEDS / seeds).iterdir())
    assert files
    for path in files:
        getattr(fuzz_targets, target)(path.read_bytes())  # raises anything but UniLIPError


@pytest.mark.fuzz
@pytest.mark.parametrize("target,seeds", [("image", "images"), ("config", "configs")])
def test_fuzzing_finds_no_crash(target, seeds, tmp_path):
    pytest.importorskip("atheris")
    seconds = int(os.environ.get("UNILIP_FUZZ_SECONDS", "20"))
    corpus = tmp_path / "corpus"
    shutil.copytree(SEEDS / seeds, corpus)
    run = subprocess.run(
        [sys.executable, str(HERE / "fuzz_targets.py"), target, str(corpus), f"-max_total_time={seconds}",
         "-rss_limit_mb=4096", "-timeout=20", "-max_len=4096", f"-artifact_prefix={tmp_path}/"],
        capture_output=True, text=True, timeout=seconds + 120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    crashes = sorted(p.name for p in tmp_path.glob("crash-*")) + sorted(p.name for p in tmp_path.glob("timeout-*"))
    assert run.returncode == 0 and not crashes, f"{crashes}\n{run.stderr[-3000:]}"
    assert "Done" in run.stderr
