"""The Gradio layer of the web demo, in-process: uploads only from the upload folder, every failure becomes a status
line, loopback unless exposed on purpose, and the page has its four tabs wired to the handlers."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from unilip.errors import UniLIPError
from unilip.serve import app

UNILIP = shutil.which("unilip") or str(Path(sys.executable).with_name("unilip"))


def test_uploads_must_come_from_the_upload_folder(tmp_path):
    uploads = tmp_path / "uploads"
    (uploads / "abc").mkdir(parents=True)
    inside = uploads / "abc" / "image.png"
    inside.write_bytes(b"x")
    assert app._upload({"path": str(inside), "orig_name": "../../holiday.png"}, uploads) == (str(inside), "holiday.png")
    assert app._upload(None, uploads) == (None, None)
    for outside in ("/etc/passwd", str(uploads / ".." / "secret.png"), str(uploads) + "-evil/x.png"):
        with pytest.raises(UniLIPError, match="not uploaded to this page"):
            app._upload({"path": outside}, uploads)
    (uploads / "link.png").symlink_to("/etc/passwd")
    with pytest.raises(UniLIPError, match="not uploaded to this page"):
        app._upload({"path": str(uploads / "link.png")}, uploads)  # a link out of the folder is resolved first
    with pytest.raises(UniLIPError, match="did not arrive as an uploaded file"):
        app._upload({"url": "data:image/png;base64,AAAA"}, uploads)


def test_failures_become_one_status_line(caplog):
    def user_mistake():
        raise UniLIPError("the prompt is empty")

    def bug():
        raise ZeroDivisionError("oops")

    assert app._guarded((None, None), user_mistake) == (None, None, "Error: the prompt is empty")
    empty, status = app._guarded(([],), bug)
    assert empty == [] and status.startswith("Error: something went wrong on the server")
    assert "ZeroDivisionError" in caplog.text  # the traceback goes to the server's log, not the page
    out, status = app._guarded(("",), lambda: ("one", "answered"))
    assert out == "one" and status.startswith("answered (") and status.endswith(" s)")


def test_binding_beyond_this_machine_needs_expose():
    with pytest.raises(UniLIPError, match="add --expose"):
        app.start(host="0.0.0.0")
    with pytest.raises(UniLIPError, match="--port 70000"):
        app.start(port=70000)
    r = subprocess.run([UNILIP, "serve", "--host", "0.0.0.0", "--port", "9"], capture_output=True, text=True,
                       check=False, timeout=120, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.startswith("unilip: error: --host 0.0.0.0 would make the demo reachable")


def test_the_environment_points_gradio_into_the_server_folder(tmp_path, monkeypatch):
    for var in ("GRADIO_TEMP_DIR", "GRADIO_EXAMPLES_CACHE", "GRADIO_ANALYTICS_ENABLED"):
        monkeypatch.delenv(var, raising=False)
    uploads = app.prepare_environment(tmp_path)
    assert uploads == tmp_path.resolve() / "uploads" and uploads.is_dir()
    assert os.environ["GRADIO_TEMP_DIR"] == str(uploads)
    assert os.environ["GRADIO_EXAMPLES_CACHE"].startswith(str(tmp_path.resolve()))
    assert os.environ["GRADIO_ANALYTICS_ENABLED"] == "False"


def test_the_page_has_four_tabs_wired_to_the_handlers(gradio_required, models, tmp_path, monkeypatch):
    for var in ("GRADIO_TEMP_DIR", "GRADIO_EXAMPLES_CACHE", "GRADIO_ANALYTICS_ENABLED"):
        monkeypatch.delenv(var, raising=False)
    from unilip.serve.handlers import make_examples

    uploads = app.prepare_environment(tmp_path)
    demo = app.build_app(models, make_examples(models, tmp_path / "examples", n=2), uploads)
    assert demo.analytics_enabled is False
    apis = {fn.api_name: fn for fn in demo.fns.values() if fn.api_name in ("reconstruct", "ask", "generate", "edit")}
    assert set(apis) == {"reconstruct", "ask", "generate", "edit"}
    for fn in apis.values():
        assert fn.preprocess is False  # Gradio never decodes an upload: load_image does, with our limits
        assert fn.concurrency_id == "models"  # one bounded group: the four tabs share the models
    tabs = [b.label for b in demo.blocks.values() if type(b).__name__ == "Tab"]
    assert tabs == ["Reconstruct", "Ask", "Generate", "Edit"]
    # the generate handler, called as the page calls it (raw widget values), reports bad input in the status box
    gallery, status = apis["generate"].fn("", 20, 2.0, 0, 1)
    assert gallery == [] and status.startswith("Error: the prompt is empty")
    gallery, status = apis["generate"].fn("a red circle", 2, 2.0, 0, 2)
    assert len(gallery) == 2 and status.startswith("2 images")


def _multipart(n_files: int) -> tuple[bytes, str]:
    import uuid

    boundary = uuid.uuid4().hex
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="a{i}.png"\r\n'
             f"Content-Type: image/png\r\n\r\nnot really a png\r\n".encode() for i in range(n_files)]
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def test_uploads_are_bounded_per_request_and_deleted_soon(gradio_required):
    """A running server (in-process, on a free port): one upload request carries at most MAX_FILES_PER_UPLOAD files,
    and an upload is gone a few seconds after its time to live, while the server keeps running."""
    import json
    import re
    import socket
    import time
    import urllib.error
    import urllib.request

    from unilip.serve.handlers import Limits

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = app.start(port=port, limits=Limits(upload_ttl_s=2), log=lambda *a: None)
    try:
        def upload(n):
            body, kind = _multipart(n)
            request = urllib.request.Request(server.url + "gradio_api/upload", data=body, headers={"Content-Type": kind})
            with urllib.request.urlopen(request, timeout=30) as r:
                return json.loads(r.read())

        with pytest.raises(urllib.error.HTTPError, match="400"):
            upload(app.MAX_FILES_PER_UPLOAD + 1)
        stored = [Path(p) for p in upload(app.MAX_FILES_PER_UPLOAD)]
        assert len(stored) == app.MAX_FILES_PER_UPLOAD and all(p.is_file() for p in stored)
        deadline = time.monotonic() + 30
        while any(p.exists() for p in stored) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not any(p.exists() for p in stored), "uploads outlived their time to live"
        with urllib.request.urlopen(server.url + "config", timeout=30) as r:  # the examples' files are kept
            config = r.read().decode()
        examples = {Path(p) for p in re.findall(r'"(/[^"]+\.png)"', config)}
        assert examples and all(p.is_file() for p in examples)
        with urllib.request.urlopen(server.url, timeout=30) as r:  # the page still answers
            assert r.status == 200
    finally:
        server.close()
