"""The Gradio page of ``unilip serve``: four tabs over :mod:`unilip.serve.handlers`, and the server around them.

What this layer adds to the handlers, and why:

- **Files stay in one folder.** The server makes its own temporary folder and points Gradio's upload folder
  (``GRADIO_TEMP_DIR``) and example cache (``GRADIO_EXAMPLES_CACHE``) into it before Gradio is imported; no
  ``allowed_paths`` are given, so Gradio's file route serves nothing else, and the handlers refuse any input path
  outside the upload folder as well (a second check, should a Gradio release loosen the first). The folder is
  removed when the server stops.
- **Uploads are decoded by us, not by Gradio.** Events run with ``preprocess=False``: Gradio hands over the
  uploaded file's path without opening it, and :func:`unilip.data.images.load_image` decodes it under our size
  limit with a clear message for a corrupt, empty or huge file. Every message goes to the tab's status box, so bad
  input never leaves the page in an error state, and unexpected failures are logged and reported in one line.
- **Bounded work.** All four tabs share one concurrency group (the models are shared), and the queue holds at most
  ``queue_size`` waiting requests; uploads over ``Limits.max_upload_mb`` are refused by Gradio's upload route, one
  request carries at most ``MAX_FILES_PER_UPLOAD`` files, and uploads are deleted ``Limits.upload_ttl_s`` after arrival
  (Gradio's ``delete_cache``), not only at exit.
- **Nothing reaches the internet.** Analytics, the version check, share links, monitoring, MCP, PWA, SSR and the
  run history are off, and the default theme's fonts ship with Gradio, so the page works on a closed network.
"""

from __future__ import annotations

import html
import logging
import os
import shutil
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

from unilip.errors import UniLIPError
from unilip.serve import handlers as h

logger = logging.getLogger("unilip.serve")

LOOPBACK = ("127.0.0.1", "localhost", "::1")
# Mini-world images are 64 px: show outputs 3x, with hard pixel edges rather than a blur.
CSS = """
.pixelated img { image-rendering: pixelated; }
.upscaled .image-container img { width: 192px; height: 192px; object-fit: contain; }
"""


def prepare_environment(workdir: str | Path) -> Path:
    """Point every folder Gradio writes to into ``workdir`` and switch off its network calls; returns the upload
    folder. Call before ``import gradio`` (some Gradio modules read these variables at import time)."""
    workdir = Path(workdir).resolve()
    uploads = workdir / "uploads"
    uploads.mkdir(parents=True, exist_ok=True)
    os.environ["GRADIO_TEMP_DIR"] = str(uploads)
    os.environ["GRADIO_EXAMPLES_CACHE"] = str(workdir / "examples-cache")
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    return uploads


#: Files one upload request may carry: each image widget sends one (Gradio's own route takes up to 1000).
MAX_FILES_PER_UPLOAD = 4

def cap_upload_files(max_files: int = MAX_FILES_PER_UPLOAD) -> None:
    """Make Gradio's multipart parser refuse requests with more than ``max_files`` files (HTTP 400).

    Gradio's upload route hard-codes 1000 files per request, each up to the size limit: a few requests could fill
    the disk. The route builds ``route_utils.GradioMultiPartParser`` at each request, so capping that class's
    ``max_files`` bounds every upload route without touching Gradio's code. Idempotent."""
    from gradio import route_utils

    parser = route_utils.GradioMultiPartParser
    if getattr(parser, "_unilip_cap", None) == max_files:
        return
    base = getattr(parser, "_unilip_base", parser)

    class Capped(base):
        _unilip_cap, _unilip_base = max_files, base

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.max_files = min(self.max_files, max_files)

    route_utils.GradioMultiPartParser = Capped


def require_gradio() -> None:
    """Fail with the install command, before minutes of model loading, when the ``demo`` extra is missing."""
    import importlib.util

    if importlib.util.find_spec("gradio") is None:
        raise UniLIPError("the web demo needs Gradio, which is not installed: pip install \"unilip[demo]\"")


# ------------------------------------------------------------------------------------------------ request wrappers


def _upload(payload: Any, uploads: Path) -> tuple[str | None, str | None]:
    """(path, display name) of an uploaded image payload; refuses a path outside the upload folder."""
    if payload is None:
        return None, None
    if isinstance(payload, dict):
        path, name = payload.get("path"), payload.get("orig_name")
    elif isinstance(payload, (str, os.PathLike)):
        path, name = os.fspath(payload), None
    else:
        raise UniLIPError("the image did not arrive as an uploaded file; upload it again")
    if not path:
        raise UniLIPError("the image did not arrive as an uploaded file; upload it again")
    resolved = Path(path).resolve()
    if not resolved.is_relative_to(uploads.resolve()):
        raise UniLIPError("that file was not uploaded to this page; upload the image instead")
    return str(resolved), Path(str(name or resolved.name)).name[:100]


def _guarded(empty: tuple, action):
    """Run ``action`` (-> (outputs..., status)); on any failure return ``empty`` outputs and a one-line status."""
    import torch

    t0 = time.perf_counter()
    try:
        *outputs, status = action()
        return (*outputs, f"{status} ({time.perf_counter() - t0:.2f} s)")
    except UniLIPError as err:
        return (*empty, f"Error: {err}")
    except torch.OutOfMemoryError:
        logger.exception("out of memory")
        return (*empty, "Error: the server ran out of memory; try fewer images or fewer steps")
    except Exception:  # a bug must cost one request, not the page; the traceback goes to the log
        logger.exception("request failed")
        return (*empty, "Error: something went wrong on the server (the traceback is in its log); try again")


def build_app(models: h.DemoModels, examples: h.Examples, uploads: str | Path, limits: h.Limits | None = None,
              concurrency: int = 1):
    """The ``gr.Blocks`` page. Each tab's button runs one handler; the widget bounds mirror ``limits``."""
    import gradio as gr

    limits = limits or h.Limits()
    uploads = Path(uploads)
    lo_s, hi_s = limits.steps
    lo_g, hi_g = limits.guidance
    lo_n, hi_n = limits.images
    run = {"concurrency_limit": concurrency, "concurrency_id": "models", "preprocess": False}
    shown = {"cache_examples": False}  # examples fill the inputs; running them is the user's click

    def do_reconstruct(payload):
        def action():
            path, name = _upload(payload, uploads)
            r = h.reconstruct(models, path, limits, name=name)
            return r.source, r.reconstruction, r.summary()
        return _guarded((None, None), action)

    def do_ask(payload, question, encoder):
        def action():
            path, name = _upload(payload, uploads)
            answer = h.ask(models, path, question, encoder, limits, name=name)
            which = "UniLIP" if h.check_encoder(encoder) == "unilip" else "original"
            return answer, f"answered with the {which} encoder"
        return _guarded(("",), action)

    # Gradio finds the progress bar by this default value; track_tqdm shows the sampler's steps in the page
    def do_generate(prompt, steps, guidance, seed, n, progress=gr.Progress(track_tqdm=True)):  # noqa: B008
        def action():
            images = h.generate(models, prompt, steps, guidance, seed, n, limits, progress=True)
            verdicts = [g.ok for g in images if g.ok is not None]
            status = f"{len(images)} image{'s' * (len(images) > 1)}"
            if verdicts:
                status += f"; the mini-world detector finds {sum(verdicts)} of {len(verdicts)} meet the prompt"
            return [(g.image, g.caption) for g in images], status + ". " + " | ".join(g.caption for g in images)
        return _guarded(([],), action)

    def do_edit(payload, instruction, steps, guidance, seed, progress=gr.Progress(track_tqdm=True)):  # noqa: B008
        def action():
            path, name = _upload(payload, uploads)
            e = h.edit(models, path, instruction, steps, guidance, seed, limits, name=name, progress=True)
            return e.source, e.edited, e.note
        return _guarded((None, None), action)

    def sampling_widgets(prefix: str):
        with gr.Row():
            steps = gr.Slider(lo_s, hi_s, value=models.default_steps, step=1, label="Steps", elem_id=f"{prefix}-steps")
            guidance = gr.Slider(lo_g, hi_g, value=models.default_guidance, step=0.5, label="Guidance",
                                 elem_id=f"{prefix}-guidance")
            seed = gr.Number(0, minimum=limits.seed[0], maximum=limits.seed[1], precision=0, label="Seed",
                             elem_id=f"{prefix}-seed")
        return steps, guidance, seed

    def image_in(label: str, elem_id: str):
        return gr.Image(type="filepath", sources=["upload", "clipboard"], label=label, elem_id=elem_id, height=256,
                        elem_classes=["pixelated"])

    def image_out(label: str, elem_id: str):
        return gr.Image(label=label, elem_id=elem_id, format="png", interactive=False, height=256,
                        elem_classes=["pixelated", "upscaled"], buttons=["download", "fullscreen"])

    def status_box(elem_id: str):
        return gr.Textbox(label="Status", elem_id=elem_id, interactive=False, lines=2)

    where = "the bundled mini weights" if models.name == "mini" else html.escape(models.name)
    sweep_every = max(1, min(60, limits.upload_ttl_s // 5))  # Gradio's delete_cache: (how often, how old)
    with gr.Blocks(title="UniLIP demo", analytics_enabled=False, delete_cache=(sweep_every, limits.upload_ttl_s)) as demo:
        gr.Markdown(f"# UniLIP demo\nOne CLIP-like encoder that reconstructs, understands, generates and edits. "
                    f"Model: {where} ({models.image_size} px, {models.device}). Uploads up to "
                    f"{limits.max_upload_mb} MB and {limits.max_pixels / 1e6:.1f} megapixels; text up to "
                    f"{limits.max_text_chars} characters.")
        with gr.Tabs():
            with gr.Tab("Reconstruct", id="reconstruct"):
                with gr.Row():
                    rec_in = image_in("Image", "reconstruct-input")
                    rec_src = image_out(f"Input as the tokenizer sees it ({models.image_size} px)",
                                        "reconstruct-source")
                    rec_out = image_out("Reconstruction", "reconstruct-output")
                rec_btn = gr.Button("Reconstruct", variant="primary", elem_id="reconstruct-run")
                rec_status = status_box("reconstruct-status")
                gr.Examples([[p] for p in examples.images], [rec_in], label="Mini-world scenes", **shown)
                rec_btn.click(do_reconstruct, [rec_in], [rec_src, rec_out, rec_status], api_name="reconstruct", **run)

            with gr.Tab("Ask", id="ask"):
                with gr.Row():
                    ask_img = image_in("Image", "ask-input")
                    with gr.Column():
                        ask_q = gr.Textbox(label="Question", placeholder="how many circles are there?",
                                           max_length=limits.max_text_chars, elem_id="ask-question")
                        ask_enc = gr.Radio([("Original encoder", "original"), ("UniLIP encoder", "unilip")],
                                           value="original", label="Vision encoder", elem_id="ask-encoder")
                        ask_btn = gr.Button("Ask", variant="primary", elem_id="ask-run")
                        ask_answer = gr.Textbox(label="Answer", interactive=False, elem_id="ask-answer")
                ask_status = status_box("ask-status")
                gr.Examples([[p, q] for p, q, _ in examples.questions], [ask_img, ask_q], label="Mini-world questions",
                            **shown)
                ask_btn.click(do_ask, [ask_img, ask_q, ask_enc], [ask_answer, ask_status], api_name="ask", **run)

            with gr.Tab("Generate", id="generate"):
                gen_prompt = gr.Textbox(label="Prompt", placeholder="a red circle to the left of a blue square",
                                        max_length=limits.max_text_chars, elem_id="generate-prompt")
                gen_steps, gen_guidance, gen_seed = sampling_widgets("generate")
                gen_n = gr.Slider(lo_n, hi_n, value=min(2, hi_n), step=1, label="Number of images",
                                  elem_id="generate-n")
                gen_btn = gr.Button("Generate", variant="primary", elem_id="generate-run")
                gallery = gr.Gallery(label="Images", columns=4, fit_columns=False, object_fit="contain", height="auto",
                                     format="png", elem_id="generate-gallery", elem_classes=["pixelated"],
                                     interactive=False, buttons=["download", "fullscreen"])
                gen_status = status_box("generate-status")
                gr.Examples([[p] for p in examples.prompts], [gen_prompt], label="Mini-world prompts", **shown)
                gen_btn.click(do_generate, [gen_prompt, gen_steps, gen_guidance, gen_seed, gen_n],
                              [gallery, gen_status], api_name="generate", **run)

            with gr.Tab("Edit", id="edit"):
                with gr.Row():
                    edit_in = image_in("Image", "edit-input")
                    edit_src = image_out(f"Source ({models.image_size} px)", "edit-source")
                    edit_out = image_out("Edited", "edit-output")
                edit_instr = gr.Textbox(label="Instruction", placeholder="make the red circle blue",
                                        max_length=limits.max_text_chars, elem_id="edit-instruction")
                with gr.Accordion("Sampling", open=False):
                    edit_steps, edit_guidance, edit_seed = sampling_widgets("edit")
                edit_btn = gr.Button("Edit", variant="primary", elem_id="edit-run")
                edit_status = status_box("edit-status")
                gr.Examples([list(e) for e in examples.edits], [edit_in, edit_instr], label="Mini-world edits", **shown)
                edit_btn.click(do_edit, [edit_in, edit_instr, edit_steps, edit_guidance, edit_seed],
                               [edit_src, edit_out, edit_status], api_name="edit", **run)
    return demo


# ------------------------------------------------------------------------------------------------------- the server


class Server:
    """A running demo: ``url``, and :meth:`close` (stops it and removes its folder)."""

    def __init__(self, blocks, url: str, workdir: Path):
        self.blocks, self.url, self.workdir = blocks, url, workdir

    def close(self) -> None:
        try:
            self.blocks.close()
        finally:
            shutil.rmtree(self.workdir, ignore_errors=True)


def start(model: str = "mini", host: str = "127.0.0.1", port: int = 7860, expose: bool = False,
          device: str | None = None, concurrency: int = 1, queue_size: int = 16, limits: h.Limits | None = None,
          log=print, dtype: str | None = None) -> Server:
    """Load the models once, build the page and serve it without blocking; see :func:`serve`."""
    limits = limits or h.Limits()
    if host not in LOOPBACK and not expose:
        raise UniLIPError(f"--host {host} would make the demo reachable from other machines, without any login; "
                          "add --expose to do so on purpose")
    if not 1 <= port <= 65535:
        raise UniLIPError(f"--port {port}: must be 1..65535")
    if concurrency < 1 or queue_size < 1:
        raise UniLIPError("--concurrency and --queue-size must be at least 1")
    require_gradio()
    logging.getLogger("httpx").setLevel(logging.WARNING)  # Gradio's own start-up checks, one INFO line each
    workdir = Path(tempfile.mkdtemp(prefix="unilip-serve-"))
    try:
        uploads = prepare_environment(workdir)
        log(f"loading the models ({model})")
        models = h.DemoModels.load(model, device, dtype)
        examples = h.make_examples(models, workdir / "examples")
        log(f"loaded in {models.seconds_to_load:.1f} s on {models.device}; "
            f"warmed up in {h.warm_up(models, examples):.1f} s")
        import gradio as gr

        cap_upload_files()
        blocks = build_app(models, examples, uploads, limits, concurrency)
        blocks.queue(max_size=queue_size, default_concurrency_limit=concurrency)
        try:
            blocks.launch(server_name=host, server_port=port, share=False, prevent_thread_lock=True, quiet=True,
                          allowed_paths=[], max_file_size=f"{limits.max_upload_mb}mb", enable_monitoring=False,
                          mcp_server=False, ssr_mode=False, pwa=False, footer_links=[], run_history=False,
                          show_error=False, theme=gr.themes.Default(), css=CSS)
        except OSError as err:
            raise UniLIPError(f"cannot serve on {host}:{port}: {err} (is another server on that port? try --port)"
                              ) from None
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    shown = f"[{host}]" if ":" in host else host
    return Server(blocks, f"http://{shown}:{port}/", workdir)


def serve(model: str = "mini", host: str = "127.0.0.1", port: int = 7860, expose: bool = False,
          device: str | None = None, concurrency: int = 1, queue_size: int = 16, log=print,
          dtype: str | None = None) -> None:
    """Serve the demo until Ctrl+C or SIGTERM, then stop and remove the server's temporary folder.

    Binds to 127.0.0.1 unless ``expose`` is set (there is no login). ``concurrency`` requests run at once across
    all tabs; up to ``queue_size`` more wait in line.
    """
    server = start(model, host, port, expose, device, concurrency, queue_size, log=log, dtype=dtype)

    def stop(signum, frame):  # SIGTERM (e.g. a test's teardown) ends like Ctrl+C: through the finally below
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    log(f"serving the UniLIP demo on {server.url} (Ctrl+C to stop)")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        log("stopping")
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.close()
