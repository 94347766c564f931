"""What the web demo does, as plain functions: no Gradio here, so every request path is tested in-process.

Each tab of ``unilip serve`` calls one function of this module (:func:`reconstruct`, :func:`ask`, :func:`generate`,
:func:`edit`). They take the loaded :class:`DemoModels`, an uploaded file's path (or any source
:func:`unilip.data.images.load_image` reads) and the raw values of the page's widgets, validate all of it against
:class:`Limits` *on the server* (a browser's slider bounds are only a hint: anyone can post any JSON), and raise
:class:`~unilip.errors.UniLIPError` with a message meant for the page for anything a user can get wrong. The Gradio
layer (:mod:`unilip.serve.app`) only maps widgets to these arguments and errors to the status box.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unilip.checks import MAX_INPUT_PIXELS, MAX_TEXT_CHARS
from unilip.errors import UniLIPError

logger = logging.getLogger("unilip.serve")

ENCODERS = ("original", "unilip")
# mini GenEval prompts (so the detector can judge the results), one per kind: colour, two objects, count, position
EXAMPLE_PROMPTS = ("a red circle", "a green square", "a circle and a square", "two triangles",
                   "a red circle to the left of a green triangle")


@dataclass(frozen=True)
class Limits:
    """What one request may ask for. The page's widgets use the same bounds; the server checks them again.

    The pixel and byte caps keep a hostile or careless upload from exhausting memory (the models see 64 px at mini
    size, 448 px for 1B/3B, so nothing useful is lost); the text cap keeps prompts within what the MLLM reads.
    """

    max_pixels: int = MAX_INPUT_PIXELS  # 16.8 MP: any photo, not a decompression bomb (as on the command line)
    max_upload_mb: int = 20
    upload_ttl_s: int = 300  # an upload is deleted this long after it arrived (enough to click a few tabs)
    max_text_chars: int = MAX_TEXT_CHARS  # as on the command line and in the Python API
    steps: tuple[int, int] = (1, 100)
    guidance: tuple[float, float] = (1.0, 20.0)
    seed: tuple[int, int] = (0, 2**31 - 1)
    images: tuple[int, int] = (1, 4)


# ----------------------------------------------------------------------------------------------------------- models


@dataclass
class DemoModels:
    """The three models the demo serves, loaded once at start: the UniLIP tokenizer, the MLLM with its original
    encoder and a copy with the UniLIP encoder swapped in, and the generator (which conditions on the original MLLM).

    ``miniworld`` is the mini world's config when the models are the bundled mini ones: then examples come from
    that world and the detector describes generated and edited images.
    """

    name: str
    tokenizer: Any
    mllm: dict[str, Any]  # "original" / "unilip" -> MLLM
    pipe: Any  # the UniLIPPipeline that generates and edits
    device: torch.device
    miniworld: Any = None
    seconds_to_load: float = 0.0
    _geneval: dict[str, dict] = field(default_factory=dict, repr=False)

    @classmethod
    def load(cls, model: str = "mini", device: str | None = None, dtype: str | None = None) -> DemoModels:
        """Load a pipeline directory (``mllm/``, ``tokenizer/``, ``generator/``), a hub repo id, or ``"mini"`` (the
        bundled weights). ``device``: ``cpu``, ``cuda``, ``cuda:1``...; default: CUDA when available. ``dtype``:
        ``fp32`` (default), ``bf16`` or ``fp16``."""
        from unilip.devices import resolve_device, resolve_dtype
        from unilip.pipeline import UniLIPPipeline

        t0 = time.perf_counter()
        dev, precision = resolve_device(device), resolve_dtype(dtype)
        pipe = UniLIPPipeline.from_pretrained(model, dtype=precision).to(dev)
        generator = pipe.generator
        original = generator.conditioner.mllm
        # The UniLIP-encoder variant shares the original's language model and looks through the tokenizer's encoder:
        # no second MLLM in memory, and the generator keeps conditioning on the original.
        unilip = original.with_encoder(generator.tokenizer.encoder)
        miniworld = None
        if str(model) == "mini":
            import dataclasses

            from unilip.config import get_preset

            miniworld = dataclasses.replace(get_preset("mini").miniworld, image_size=generator.tokenizer.image_size)
        return cls(name=str(model), tokenizer=generator.tokenizer, mllm={"original": original, "unilip": unilip.eval()},
                   pipe=pipe, device=dev, miniworld=miniworld, seconds_to_load=time.perf_counter() - t0)

    @property
    def image_size(self) -> int:
        return int(self.tokenizer.image_size)

    @property
    def default_steps(self) -> int:
        return int(self.pipe.generator.cfg.generator.num_inference_steps)

    @property
    def default_guidance(self) -> float:
        return float(self.pipe.generator.cfg.generator.cfg_scale)

    def geneval_spec(self, prompt: str) -> dict | None:
        """The mini GenEval requirements of ``prompt`` when it is one of its prompts (so the detector can judge it)."""
        if self.miniworld is None:
            return None
        if not self._geneval:
            from unilip.eval.geneval_mini import geneval_prompts

            self._geneval.update({s["prompt"]: s for s in geneval_prompts(self.miniworld)})
        return self._geneval.get(prompt.strip().lower())


# ------------------------------------------------------------------------------------------------------ validation


def read_image(src: Any, limits: Limits, name: str | None = None):
    """An upload as an RGB PIL image, or a :class:`UniLIPError` that names the file by ``name`` (never by the
    server's temporary path). Odd modes (RGBA, LA, P, 16-bit, CMYK) become RGB; corrupt, empty or oversized files
    are refused with the reason."""
    from unilip.data.images import load_image

    if src is None or (isinstance(src, str) and not src.strip()):
        raise UniLIPError("no image: upload one (or click an example below)")
    if isinstance(src, (str, os.PathLike)):
        name = name or Path(src).name
        try:
            size = os.path.getsize(src)
        except OSError:
            raise UniLIPError(f"cannot read image {name}: the upload is gone; upload it again") from None
        if size > limits.max_upload_mb * 2**20:
            raise UniLIPError(f"cannot read image {name}: {size / 2**20:.1f} MB is over the "
                              f"{limits.max_upload_mb} MB limit")
    return load_image(src, max_pixels=limits.max_pixels, name=name or "the upload")


def check_text(text: Any, what: str, limits: Limits, example: str = "") -> str:
    """``text`` with its whitespace collapsed; refuses an empty one, or one over ``limits.max_text_chars``."""
    if text is None:
        text = ""
    if not isinstance(text, str):
        raise UniLIPError(f"the {what} must be text")
    text = " ".join(text.split())
    if not text:
        raise UniLIPError(f"the {what} is empty: type one" + (f", e.g. '{example}'" if example else ""))
    if len(text) > limits.max_text_chars:
        raise UniLIPError(f"the {what} is too long: {len(text)} characters, at most {limits.max_text_chars}")
    return text


def check_number(value: Any, what: str, bounds: tuple[float, float], integer: bool = False) -> float | int:
    """``value`` as a number within ``bounds`` (inclusive), or an error that names the field and the range."""
    lo, hi = bounds
    try:
        if isinstance(value, bool) or value is None:
            raise TypeError
        number = float(value)
    except (TypeError, ValueError):
        raise UniLIPError(f"{what}: give a number from {lo:g} to {hi:g} (got {value!r})") from None
    if not math.isfinite(number) or not lo <= number <= hi:
        raise UniLIPError(f"{what}: {value!r} is out of range; allowed: {lo:g} to {hi:g}")
    if integer:
        if number != int(number):
            raise UniLIPError(f"{what}: must be a whole number (got {value!r})")
        return int(number)
    return number


def check_encoder(encoder: Any) -> str:
    key = str(encoder).strip().lower().replace("unilip encoder", "unilip").replace("original encoder", "original")
    if key not in ENCODERS:
        raise UniLIPError(f"encoder: {encoder!r} is not one of {', '.join(ENCODERS)}")
    return key


def _to_tensor(image, size: int, device: torch.device) -> torch.Tensor:
    """(1, 3, size, size) in [0, 1]: resize the shorter side, centre crop (the evaluation transform)."""
    from unilip.data.loader import eval_transform

    return eval_transform(image, size)[None].to(device)


def _uint8(images: torch.Tensor) -> np.ndarray:
    from unilip.eval.grid import to_uint8

    return to_uint8(images)


# ----------------------------------------------------------------------------------------------------------- tabs


@dataclass
class Reconstruction:
    source: np.ndarray  # (S, S, 3) uint8: the upload as the tokenizer sees it (resized, centre-cropped)
    reconstruction: np.ndarray  # (S, S, 3) uint8
    psnr: float
    ssim: float

    def summary(self) -> str:
        s = self.source.shape[0]
        return f"PSNR {self.psnr:.2f} dB, SSIM {self.ssim:.3f} (reconstruction vs the {s}x{s} input the tokenizer sees)"


@torch.no_grad()
def reconstruct(models: DemoModels, image: Any, limits: Limits = Limits(), name: str | None = None) -> Reconstruction:
    """Encode an image to the UniLIP latent and decode it back; PSNR / SSIM against the input at the model's size."""
    from unilip.eval.metrics import psnr, ssim

    x = _to_tensor(read_image(image, limits, name), models.image_size, models.device)
    recon = models.tokenizer.reconstruct(x)
    return Reconstruction(_uint8(x)[0], _uint8(recon)[0], float(psnr(recon.cpu(), x.cpu())[0]),
                          float(ssim(recon.cpu(), x.cpu())[0]))


@torch.no_grad()
def ask(models: DemoModels, image: Any, question: Any, encoder: Any = "original", limits: Limits = Limits(),
        name: str | None = None) -> str:
    """The MLLM's answer to a question about an image, with its original encoder or the UniLIP one swapped in."""
    mllm = models.mllm[check_encoder(encoder)]
    question = check_text(question, "question", limits, "how many circles are there?")
    x = _to_tensor(read_image(image, limits, name), mllm.image_size, models.device)
    # the mini MLLM answers in one or two words; a full InternVL gets room for a sentence
    answer = mllm.answer([question], x, max_new_tokens=4 if models.miniworld is not None else 64)[0]
    return answer or "(no answer)"


@dataclass
class Generated:
    image: np.ndarray  # (S, S, 3) uint8
    seed: int
    caption: str  # the seed, and in the mini world what the detector sees and whether it meets the prompt
    ok: bool | None = None  # the detector's verdict on a mini GenEval prompt; None when it cannot judge


def _sampling_args(models: DemoModels, steps: Any, guidance: Any, seed: Any, limits: Limits) -> tuple[int, float, int]:
    steps = models.default_steps if steps is None else check_number(steps, "steps", limits.steps, integer=True)
    guidance = models.default_guidance if guidance is None else check_number(guidance, "guidance", limits.guidance)
    seed = check_number(0 if seed is None else seed, "seed", limits.seed, integer=True)
    return int(steps), float(guidance), int(seed)


def describe_scene(image: np.ndarray, cfg) -> str:
    """What the mini-world detector sees, in words: 'a large red circle and a small blue square on white'."""
    from collections import Counter

    from unilip.data.miniworld import detect
    from unilip.data.miniworld.language import counted, join_and

    scene = detect(image, cfg)
    if not scene.objects:
        return f"nothing on {scene.background}"
    groups = Counter(f"{o.size} {o.color} {o.shape}" for o in scene.objects)
    return join_and([counted(k, phrase) for phrase, k in groups.most_common()]) + f" on {scene.background}"


@torch.no_grad()
def generate(models: DemoModels, prompt: Any, steps: Any = None, guidance: Any = None, seed: Any = 0, n: Any = 1,
             limits: Limits = Limits(), progress: bool = False) -> list[Generated]:
    """``n`` images for a prompt; image i starts from seed + i (as ``unilip generate`` does), so a seed reproduces."""
    prompt = check_text(prompt, "prompt", limits, "a red circle to the left of a blue square")
    steps, guidance, seed = _sampling_args(models, steps, guidance, seed, limits)
    n = int(check_number(n, "number of images", limits.images, integer=True))
    gens = [torch.Generator(device="cpu").manual_seed(seed + i) for i in range(n)]
    models.pipe.set_progress_bar_config(disable=not progress)
    images = models.pipe([prompt], num_images_per_prompt=n, num_inference_steps=steps, guidance_scale=guidance,
                         generator=gens, output_type="np").images
    out = []
    spec = models.geneval_spec(prompt)
    for i, im in enumerate(images):
        caption, ok = f"seed {seed + i}", None
        if models.miniworld is not None:
            caption += f"; the detector sees {describe_scene(im, models.miniworld)}"
            if spec is not None:
                from unilip.data.miniworld import detect
                from unilip.eval.geneval_mini import satisfies

                ok = bool(satisfies(detect(im, models.miniworld), spec))
                caption += f": {'meets' if ok else 'misses'} the prompt ({spec['category'].replace('_', ' ')})"
        out.append(Generated(im, seed + i, caption, ok))
    return out


@dataclass
class Edited:
    source: np.ndarray  # (S, S, 3) uint8: the upload as the generator sees it
    edited: np.ndarray  # (S, S, 3) uint8
    note: str


@torch.no_grad()
def edit(models: DemoModels, image: Any, instruction: Any, steps: Any = None, guidance: Any = None, seed: Any = 0,
         limits: Limits = Limits(), name: str | None = None, progress: bool = False) -> Edited:
    """Edit an image by an instruction: the MLLM reads both, the DiT draws the result."""
    instruction = check_text(instruction, "instruction", limits, "make the red circle blue")
    steps, guidance, seed = _sampling_args(models, steps, guidance, seed, limits)
    x = _to_tensor(read_image(image, limits, name), models.image_size, models.device)
    gen = [torch.Generator(device="cpu").manual_seed(seed)]
    models.pipe.set_progress_bar_config(disable=not progress)
    edited = models.pipe([instruction], image=x, num_inference_steps=steps, guidance_scale=guidance, generator=gen,
                         output_type="np").images[0]
    source = _uint8(x)[0]
    note = f"seed {seed}, {steps} steps, guidance {guidance:g}"
    if models.miniworld is not None:
        note += (f"; the detector sees {describe_scene(source, models.miniworld)} before and "
                 f"{describe_scene(edited, models.miniworld)} after")
    return Edited(source, edited, note)


def warm_up(models: DemoModels, examples: Examples) -> float:
    """Run each tab once on an example (one sampling step), so the first visitor does not pay for first-call
    kernel selection and lazy imports (about 4 s for the first generation on 2 CPU cores). Returns the seconds."""
    t0 = time.perf_counter()
    reconstruct(models, examples.images[0])
    image, question, _ = examples.questions[0]
    for encoder in ENCODERS:
        ask(models, image, question, encoder)
    generate(models, examples.prompts[0], steps=1, n=1)
    edit(models, examples.edits[0][0], examples.edits[0][1], steps=1)
    return time.perf_counter() - t0


# -------------------------------------------------------------------------------------------------------- examples


@dataclass
class Examples:
    """Inputs one click away: example files are written once into the server's own folder."""

    images: list[str]  # scene PNGs (reconstruct)
    questions: list[tuple[str, str, str]]  # (image path, question, the scene graph's answer)
    prompts: list[str]
    edits: list[tuple[str, str]]  # (image path, instruction)


def make_examples(models: DemoModels, folder: str | Path, n: int = 4) -> Examples:
    """Mini-world examples: held-out test scenes, their questions, mini GenEval prompts and edit instructions. For
    other models: the same scenes at the model's size (the prompts still read as plain English)."""
    from unilip.config import get_preset
    from unilip.data.miniworld import make_records, render_pil

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cfg = models.miniworld or get_preset("mini").miniworld
    size = models.image_size

    def save(scene, stem: str) -> str:
        path = folder / f"{stem}.png"
        render_pil(scene, cfg, size).save(path)
        return str(path)

    captions = list(make_records("captions", cfg, "test", 0, n))
    images = [save(r["scene"], f"scene-{i}") for i, r in enumerate(captions)]
    vqa = list(make_records("vqa", cfg, "test", 0, n))
    questions = [(save(r["scene"], f"question-{i}"), r["question"], r["answer"]) for i, r in enumerate(vqa)]
    edits_ = list(make_records("edit", cfg, "test", 0, n))
    edits = [(save(r["scene"], f"edit-{i}"), r["instruction"]) for i, r in enumerate(edits_)]
    return Examples(images, questions, list(EXAMPLE_PROMPTS), edits)
