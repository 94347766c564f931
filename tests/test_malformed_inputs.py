"""Every CLI command over the malformed-input corpus of tests/malformed.py (issue 13): each case must end with a
non-zero exit and exactly one ``unilip: error:`` line, no traceback, within the address-space limit and the per-case
alarm, leaving nothing in its working folder. The cases run in one subprocess (one import of torch), in-process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import malformed


def test_every_command_refuses_every_malformed_input_in_one_line(tmp_path):
    malformed.make_inputs(tmp_path)
    results = tmp_path / "results.json"
    run = subprocess.run([sys.executable, str(Path(malformed.__file__)), str(tmp_path), str(results)],
                         capture_output=True, text=True, timeout=1500)
    assert run.returncode == 0, run.stderr[-3000:]
    rows = json.loads(results.read_text())
    assert len(rows) == len(malformed.cases(tmp_path)) > 150
    assert {r["category"] for r in rows} == set(malformed.CATEGORIES)
    bad = [f"{r['outcome']}: {r['name']}\n{r['tail']}" for r in rows if r["outcome"] != "clean"]
    print(malformed.table(rows))
    assert not bad, "\n\n".join(bad[:10])


def test_the_classifier_tells_the_outcomes_apart():
    one = "unilip: error: bad\n"
    assert malformed._classify(2, one, None, []) == "clean"
    assert malformed._classify(2, one, None, ["out"]) == "leftover"
    assert malformed._classify(0, "", None, []) == "accepted"
    assert malformed._classify(2, one + one, None, []) == "unclear"
    assert malformed._classify(2, "unilip: error: " + "x" * 5000, None, []) == "unclear"
    assert malformed._classify(1, "Traceback (most recent call last):\n", None, []) == "traceback"
    assert malformed._classify(None, "", "hang", []) == "hang"
    assert malformed._classify(None, "", "memory", []) == "memory"
