"""Shared by the web demo's tests: the bundled mini models (loaded once), mini-world inputs as files, and the rule
for what is missing: a developer without Gradio or Chromium gets a skip that says what to install, CI
(``UNILIP_REQUIRE_BROWSER=1``, set in .ci/run) gets a failure instead, so the browser tests can never silently
stop running there."""

from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest

CHROMIUM = "/usr/bin/chromium"


def need(ok: bool, reason: str) -> None:
    """Skip (a developer's machine) or fail (CI) when a requirement of the demo's tests is missing."""
    if ok:
        return
    if os.environ.get("UNILIP_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason} (UNILIP_REQUIRE_BROWSER=1: CI must run the web demo's tests)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture
def gradio_required() -> None:
    need(importlib.util.find_spec("gradio") is not None, 'gradio is not installed: pip install -e ".[demo]"')


@pytest.fixture(scope="module")
def browser_required() -> str:
    """The Chromium executable, once Gradio, Playwright and Debian's chromium are all there."""
    need(importlib.util.find_spec("gradio") is not None, 'gradio is not installed: pip install -e ".[demo]"')
    need(importlib.util.find_spec("playwright") is not None, 'playwright is not installed: pip install -e ".[test]"')
    need(os.access(CHROMIUM, os.X_OK), f"Debian's chromium is not installed ({CHROMIUM}): apt-get install -y chromium")
    return CHROMIUM


@pytest.fixture(scope="session")
def models():
    from unilip.serve import DemoModels

    return DemoModels.load("mini", "cpu")


@pytest.fixture(scope="session")
def world():
    from unilip.config import get_preset

    return get_preset("mini").miniworld


@pytest.fixture(scope="session")
def scene_files(tmp_path_factory, world):
    """Mini-world inputs as PNG files: a VQA record (with its true answer) and an edit record."""
    from PIL import Image

    from unilip.data.miniworld import make_records, render

    folder = tmp_path_factory.mktemp("scenes")
    vqa = next(make_records("vqa", world, "test", 0, 1))
    edit = next(make_records("edit", world, "test", 3, 1))
    Image.fromarray(render(vqa["scene"], world)).save(folder / "question.png")
    Image.fromarray(render(edit["scene"], world)).save(folder / "edit.png")
    # a larger RGBA upload (200 x 150, transparent border) to check the resize + crop + alpha handling
    big = np.asarray(Image.fromarray(render(vqa["scene"], world, 150)).convert("RGBA"))
    rgba = np.zeros((150, 200, 4), np.uint8)
    rgba[:, 25:175] = big
    Image.fromarray(rgba).save(folder / "rgba.png")
    (folder / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage after a PNG signature")
    return {"question": folder / "question.png", "answer": vqa["answer"], "question_text": vqa["question"],
            "edit": folder / "edit.png", "instruction": edit["instruction"], "rgba": folder / "rgba.png",
            "corrupt": folder / "corrupt.png", "dir": folder}
