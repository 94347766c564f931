"""The web demo in a real browser: ``unilip serve`` on a free local port, driven tab by tab by Debian's Chromium
through Playwright (upload, type, click, wait for the result, check it), one screenshot per tab.

Screenshots go to pytest's temporary folder (``serve-screenshots*``, printed at the end of the module) and, when
``UNILIP_ARTIFACTS`` names a folder, also to ``$UNILIP_ARTIFACTS/serve/``. No test may make the page fetch anything
from outside the server (the network here is closed, and the demo must work offline).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.browser

UNILIP = shutil.which("unilip") or str(Path(sys.executable).with_name("unilip"))
# a closed network: no GPU, no QUIC, no background fetches (updates, sync, components); Playwright's launch adds a
# fresh temporary profile (user-data-dir) of its own
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
RESULT_TIMEOUT_MS = 90_000  # a result on a busy 2-core machine; the mini models answer in about a second
LATENCY: dict[str, float] = {}  # tab -> seconds from the click to the result in the page (written beside the shots)


@dataclass
class Running:
    url: str
    proc: subprocess.Popen
    log: Path
    folders: set[str] = field(default_factory=set)  # the server's temporary folders, seen in file URLs

    def note(self, url: str) -> None:
        if "/unilip-serve-" in url:
            self.folders.add(url.split("file=", 1)[1].split("/uploads/", 1)[0])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(browser_required, tmp_path_factory):
    """``unilip serve --port FREE`` as a subprocess; waits until the page answers; stops it with SIGTERM (as a
    service manager would) and checks it exits cleanly and removes its temporary folder."""
    port = _free_port()
    log = tmp_path_factory.mktemp("serve-log") / "server.log"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    with open(log, "w") as out:
        proc = subprocess.Popen([UNILIP, "serve", "--port", str(port)], stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 180
    while True:
        if proc.poll() is not None:
            pytest.fail(f"unilip serve exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                if r.status == 200:
                    break
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"unilip serve did not answer within 180 s:\n{log.read_text()[-3000:]}")
        time.sleep(0.5)
    running = Running(url, proc, log)
    yield running
    proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("unilip serve did not stop within 60 s of SIGTERM")
    assert code == 0, log.read_text()[-3000:]
    assert running.folders and not any(Path(f).exists() for f in running.folders), "the temporary folder was left"


@pytest.fixture(scope="module")
def browser(browser_required):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=browser_required, args=CHROMIUM_FLAGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def screenshot(tmp_path_factory):
    folder = tmp_path_factory.mktemp("serve-screenshots")
    extra = Path(os.environ["UNILIP_ARTIFACTS"]) / "serve" if os.environ.get("UNILIP_ARTIFACTS") else None

    def save(page, name: str) -> Path:
        path = folder / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        if extra is not None:
            extra.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, extra / path.name)
        return path

    yield save
    (folder / "latency.json").write_text(json.dumps(LATENCY, indent=2) + "\n")
    if extra is not None:
        shutil.copy(folder / "latency.json", extra / "latency.json")
    shown = ", ".join(f"{k} {v:.2f} s" for k, v in LATENCY.items())
    print(f"\nweb demo screenshots: {folder}" + (f" and {extra}" if extra else "") + f"\nclick to result: {shown}")


@pytest.fixture
def page(browser, server):
    """A fresh page on the demo; fails the test if the page requested anything from outside the server."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    outside: list[str] = []

    def seen(request):
        if request.url.startswith(server.url):
            server.note(request.url)
        elif not request.url.startswith(("data:", "blob:")):
            outside.append(request.url)

    page.on("request", seen)
    page.goto(server.url, wait_until="load")
    page.wait_for_selector("#reconstruct-run")
    yield page
    context.close()
    assert not outside, f"the page fetched from outside the server: {outside[:5]}"


def _open(page, tab: str) -> None:
    page.get_by_role("tab", name=tab).click()
    page.wait_for_selector(f"#{tab.lower()}-run")


def _status(page, tab: str, starts: str = "") -> str:
    """The tab's status line, once it holds a result (optionally one starting with ``starts``)."""
    page.wait_for_function("([sel, starts]) => { const v = document.querySelector(sel).value; "
                           "return v.length > 0 && v.startsWith(starts); }",
                           arg=[f"#{tab}-status textarea", starts], timeout=RESULT_TIMEOUT_MS)
    return page.locator(f"#{tab}-status textarea").input_value()


def _run(page, tab: str, starts: str = "", key: str | None = None) -> str:
    """Click the tab's button and wait for its result; the time from click to result goes to LATENCY[key]."""
    t0 = time.perf_counter()
    page.click(f"#{tab}-run")
    status = _status(page, tab, starts)
    if key:
        LATENCY[key] = round(time.perf_counter() - t0, 3)
    return status


def _upload(page, elem_id: str, path: Path) -> None:
    page.set_input_files(f"#{elem_id} input[type=file]", str(path))
    page.wait_for_selector(f"#{elem_id} img")


def _natural_size(page, selector: str) -> tuple[int, int]:
    page.wait_for_function("sel => { const i = document.querySelector(sel); "
                           "return i && i.complete && i.naturalWidth > 0; }", arg=selector, timeout=RESULT_TIMEOUT_MS)
    return tuple(page.eval_on_selector(selector, "i => [i.naturalWidth, i.naturalHeight]"))


def _pixels(page, image) -> np.ndarray:
    """The pixels of an <img> (a Playwright locator) as the server sent them."""
    body = page.request.get(image.evaluate("i => i.src")).body()
    return np.asarray(Image.open(io.BytesIO(body)).convert("RGB"))


# --------------------------------------------------------------------------------------------------------- tabs


def test_reconstruct_tab(page, scene_files, screenshot):
    _upload(page, "reconstruct-input", scene_files["rgba"])  # 200 x 150 RGBA: resized, cropped, put on white
    status = _run(page, "reconstruct", key="reconstruct")
    assert status.startswith("PSNR ") and "SSIM" in status
    assert float(status.split()[1]) > 15
    assert _natural_size(page, "#reconstruct-output img") == (64, 64)
    assert _natural_size(page, "#reconstruct-source img") == (64, 64)
    screenshot(page, "reconstruct")


def test_ask_tab_answers_an_example_one_click_away(page, scene_files, screenshot):
    _open(page, "Ask")
    page.get_by_text(scene_files["question_text"], exact=True).first.click()  # the first mini-world example
    page.wait_for_selector("#ask-input img")
    assert page.locator("#ask-question textarea").input_value() == scene_files["question_text"]
    assert _run(page, "ask", key="ask (original encoder)").startswith("answered with the original encoder")
    assert page.locator("#ask-answer textarea").input_value() == scene_files["answer"]
    page.get_by_label("UniLIP encoder").check()
    assert _run(page, "ask", "answered with the UniLIP encoder", key="ask (UniLIP encoder)")
    assert page.locator("#ask-answer textarea").input_value() == scene_files["answer"]
    screenshot(page, "ask")


def test_generate_tab_images_are_scored_by_the_detector(page, world, screenshot):
    from unilip.data.miniworld import detect
    from unilip.eval.geneval_mini import geneval_prompts, satisfies

    _open(page, "Generate")
    page.click("#generate-run")  # no prompt yet
    assert _status(page, "generate").startswith("Error: the prompt is empty")
    prompt = "a red circle"
    page.locator("#generate-prompt textarea").fill(prompt)
    page.locator("#generate-seed input").fill("0")
    status = _run(page, "generate", "2 images", key="generate (2 images, 12 steps)")
    thumbs = page.locator("#generate-gallery img")
    assert thumbs.count() == 2
    spec = next(s for s in geneval_prompts(world) if s["prompt"] == prompt)
    verdicts = []
    for i in range(2):
        image = _pixels(page, thumbs.nth(i))
        assert image.shape == (64, 64, 3)
        verdicts.append(satisfies(detect(image, world), spec))
    # the page's own verdict is the detector's on the very images it shows; and the mini generator draws a red circle
    assert f"the mini-world detector finds {sum(verdicts)} of 2 meet the prompt" in status
    assert any(verdicts)
    screenshot(page, "generate")


def test_edit_tab_shows_the_result_beside_the_source(page, scene_files, screenshot):
    _open(page, "Edit")
    _upload(page, "edit-input", scene_files["edit"])
    page.locator("#edit-instruction textarea").fill(scene_files["instruction"])
    status = _run(page, "edit", key="edit (12 steps)")
    assert status.startswith("seed 0, 12 steps") and "the detector sees" in status
    assert _natural_size(page, "#edit-output img") == (64, 64)
    assert _natural_size(page, "#edit-source img") == (64, 64)
    screenshot(page, "edit")


def test_a_corrupt_upload_shows_an_error_in_the_page(page, scene_files, screenshot):
    _upload(page, "reconstruct-input", scene_files["corrupt"])
    page.click("#reconstruct-run")
    status = _status(page, "reconstruct")
    assert status == "Error: cannot read image corrupt.png: corrupt or truncated image data (Truncated File Read)"
    assert page.locator("#reconstruct-output img").count() == 0  # no stale result beside the message
    screenshot(page, "corrupt-upload")
    # the page still works: a good upload after the bad one
    _upload(page, "reconstruct-input", scene_files["question"])
    page.click("#reconstruct-run")
    assert _status(page, "reconstruct", "PSNR")


# ------------------------------------------------------------------------------------------------- file access


def _http(url: str, data: bytes | None = None, headers: dict | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def test_no_request_reads_or_writes_outside_the_server_folder(server, tmp_path):
    api = server.url + "gradio_api/"
    for path in ("/etc/passwd", "%2Fetc%2Fpasswd", "../../../../etc/passwd", "..%2F..%2F..%2F..%2Fetc%2Fpasswd",
                 str(Path(__file__).resolve())):
        code, body = _http(api + "file=" + path)
        assert code in (403, 404), (path, code)
        assert b"root:" not in body
    # an API call that names a server path instead of uploading a file is refused before any handler runs
    code, body = _http(api + "call/reconstruct", json.dumps({"data": [{"path": "/etc/passwd", "meta": {
        "_type": "gradio.FileData"}}]}).encode(), {"Content-Type": "application/json"})
    assert code == 200
    code, events = _http(api + "call/reconstruct/" + json.loads(body)["event_id"])
    assert b"event: error" in events and b"root:" not in events
    # an upload whose file name climbs out of the folder lands inside it
    boundary = "unilipboundary"
    target = tmp_path / "escaped.png"
    form = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"../../../../{target}\"\r\n"
            f"Content-Type: image/png\r\n\r\n").encode() + b"\x89PNG\r\n\x1a\n" + f"\r\n--{boundary}--\r\n".encode()
    code, body = _http(api + "upload", form, {"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert code == 200, body
    stored = Path(json.loads(body)[0]).resolve()
    assert "/uploads/" in str(stored) and stored.parent.parent.name == "uploads" and not target.exists()
    server.note("file=" + str(stored))
    # an upload over the size limit is turned away by the upload route
    big = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"big.png\"\r\n"
           f"Content-Type: image/png\r\n\r\n").encode() + b"\0" * (21 * 2**20) + f"\r\n--{boundary}--\r\n".encode()
    code, body = _http(api + "upload", big, {"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert code == 413, (code, body[:200])
