"""Sample folders for the official GenEval, WISE and ImgEdit scorers (``unilip dump``).

The official scorers cannot run inside unilip's environment: GenEval's needs mmdetection and its Mask2Former
weights, WISE and ImgEdit ask a GPT judge through the OpenAI API. So unilip writes exactly the folders they read
and stops there; the scoring happens in their own environments. The layouts (checked against the scorers' own
readers: djghosh13/geneval ``evaluation/evaluate_images.py``, PKU-YuanGroup/WISE ``gpt_eval.py``,
PKU-YuanGroup/ImgEdit ``Benchmark/Basic/basic_bench.py``) are::

    geneval:  OUT/{i:05d}/metadata.jsonl      the prompt's line of the GenEval jsonl, unchanged
              OUT/{i:05d}/samples/{k:05d}.png  k = 0..samples-1 (official: 4), i = the prompt's position
    wise:     OUT/{prompt_id}.png              one image per entry of every *.json in the WISE data folder
    imgedit:  OUT/{key}.png                    one edit per key of singleturn.json (source: IMAGES/{entry['id']})

and beside them ``settings-{index}-of-{n_chunks}.json``: model, steps, guidance, scheduler, seed rule, image size,
batch size, unilip and torch versions, the prompt files' sha256 (the scorers skip files they do not know).

Seeds differ from the official scripts on purpose. Those reset the global seed to 42 before every prompt, so an
image depends on the process that drew it. Here sample ``k`` of the ``i``-th prompt starts from its own
generator, ``gen_common.seeded_generators(seed, i, samples)[k]``, and the prompts are cut into batches of
``batch_size`` consecutive prompts that are dealt to the chunks in turn (batch ``b`` to chunk ``b % n_chunks``).
Every image is therefore drawn with the same noise in the same batch however many chunks (GPUs) share the work,
and a resumed run redraws an unfinished batch whole: the folder is byte-for-byte the one a single uninterrupted
run writes (same settings, same device). Each image is written to a hidden temporary file and renamed into place,
so a killed run never leaves a truncated PNG, and a rerun skips the batches whose files are all there.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from unilip.errors import UniLIPError

logger = logging.getLogger(__name__)

BENCHMARKS = ("geneval", "wise", "imgedit")
GENEVAL_SAMPLES = 4  # official: 4 images per GenEval prompt; WISE and ImgEdit are scored on one image each
# settings that decide the pixels: a resumed or parallel run into the same folder must agree on all of them
SAMPLING_KEYS = ("benchmark", "model", "image_size", "steps", "guidance", "scheduler", "seed", "samples_per_prompt",
                 "batch_size", "prompts_sha256")


@dataclass(frozen=True)
class DumpItem:
    """One prompt: what the model is asked and the files the scorer reads for it (paths relative to the output)."""

    index: int  # position in the benchmark's order; the seeds derive from it
    prompt: str
    images: tuple[str, ...]
    texts: tuple[tuple[str, str], ...] = ()  # (path, content) written beside the images, e.g. GenEval's metadata
    source: Path | None = None  # the image to edit (ImgEdit)


@dataclass
class DumpPlan:
    """A benchmark's prompts in order, with the inputs they came from (recorded in the settings file)."""

    benchmark: str
    items: list[DumpItem]
    samples: int
    inputs: dict[str, Any] = field(default_factory=dict)  # paths and sha256 of the prompt files
    layout: str = ""


# ------------------------------------------------------------------------------------------------ prompt sources


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _read_json(path: Path, what: str) -> Any:
    if not path.is_file():
        raise UniLIPError(f"{what} {path} does not exist" if not path.exists() else f"{what} {path} is not a file")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise UniLIPError(f"{path}: not UTF-8 text ({err.reason})") from None
    except json.JSONDecodeError as err:
        raise UniLIPError(f"{path}: not valid JSON (line {err.lineno}: {err.msg})") from None


def _plain_name(name: str, where: str) -> str:
    """An id used as a file name must stay in the output folder: no separators, not hidden, not empty."""
    if not name or name.startswith(".") or "/" in name or "\\" in name or "\0" in name:
        raise UniLIPError(f"{where}: {name!r} cannot be a file name (the scorer finds the image as <id>.png)")
    return name


def geneval_plan(prompts: str | Path, samples: int = GENEVAL_SAMPLES) -> DumpPlan:
    """GenEval's prompt file (``evaluation_metadata.jsonl``: one JSON object per line with at least ``prompt``).

    The ``i``-th prompt (0-based; blank lines are not counted) goes to ``{i:05d}/``: ``metadata.jsonl`` holds its
    line as it stands in the file (GenEval's scorer reads it back with ``json.load`` and needs ``tag`` and
    ``include`` too) and ``samples/`` its ``samples`` images.
    """
    path = Path(prompts)
    if samples < 1:
        raise UniLIPError(f"--samples: must be >= 1 (got {samples})")
    if not path.is_file():
        raise UniLIPError(f"GenEval prompt file {path} does not exist" if not path.exists()
                          else f"GenEval prompt file {path} is not a file (give the .jsonl, one prompt per line)")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise UniLIPError(f"{path}: not UTF-8 text ({err.reason})") from None
    items = []
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise UniLIPError(f"{path}, line {lineno}: not a JSON object ({err.msg})") from None
        if not isinstance(record, dict) or not isinstance(record.get("prompt"), str) or not record["prompt"].strip():
            raise UniLIPError(f"{path}, line {lineno}: needs a non-empty string field 'prompt' (GenEval's jsonl)")
        i = len(items)
        folder = f"{i:05d}"
        items.append(DumpItem(i, record["prompt"], tuple(f"{folder}/samples/{k:05d}.png" for k in range(samples)),
                              ((f"{folder}/metadata.jsonl", line.strip() + "\n"),)))
    if not items:
        raise UniLIPError(f"{path}: no prompts (expected GenEval's jsonl, one JSON object per line)")
    return DumpPlan("geneval", items, samples, {"prompts": str(path.resolve()), "sha256": {path.name: _sha256(path)}},
                    "{i:05d}/metadata.jsonl + {i:05d}/samples/{k:05d}.png")


def wise_plan(prompts: str | Path) -> DumpPlan:
    """WISE's data folder: every ``*.json`` in it (by name; WISE has cultural_common_sense, natural_science and
    spatio-temporal_reasoning) is a list of entries with ``prompt_id`` and ``Prompt``; each gives ``{prompt_id}.png``."""
    folder = Path(prompts)
    if not folder.is_dir():
        raise UniLIPError(f"WISE prompt folder {folder} does not exist" if not folder.exists()
                          else f"{folder} is not a folder (give WISE's data/ folder with its *.json files)")
    files = sorted(folder.glob("*.json"))
    if not files:
        raise UniLIPError(f"{folder}: no *.json prompt files (expected WISE's data/ folder)")
    items: list[DumpItem] = []
    seen: dict[str, str] = {}
    for path in files:
        entries = _read_json(path, "WISE prompt file")
        if not isinstance(entries, list):
            raise UniLIPError(f"{path}: expected a list of WISE entries ({{'prompt_id': ..., 'Prompt': ...}})")
        for n, entry in enumerate(entries):
            where = f"{path}, entry {n}"
            if not isinstance(entry, dict) or "prompt_id" not in entry:
                raise UniLIPError(f"{where}: needs the fields 'prompt_id' and 'Prompt'")
            if not isinstance(entry.get("Prompt"), str) or not entry["Prompt"].strip():
                raise UniLIPError(f"{where}: needs a non-empty string field 'Prompt'")
            name = _plain_name(str(entry["prompt_id"]), where)
            if name in seen:
                raise UniLIPError(f"{where}: prompt_id {name} is also in {seen[name]}; both would write {name}.png")
            seen[name] = where
            items.append(DumpItem(len(items), entry["Prompt"], (f"{name}.png",)))
    if not items:
        raise UniLIPError(f"{folder}: the *.json files hold no prompts")
    return DumpPlan("wise", items, 1, {"prompts": str(folder.resolve()), "sha256": {p.name: _sha256(p) for p in files}},
                    "{prompt_id}.png")


def imgedit_plan(bench: str | Path, images: str | Path | None = None) -> DumpPlan:
    """ImgEdit's single-turn benchmark: ``singleturn.json`` maps each key to ``{"id": <source image path relative
    to the image folder>, "prompt": <instruction>, ...}``; each key gives ``{key}.png``. ``images`` defaults to the
    JSON's own folder, where the official script finds them. Every source image must exist (checked before any
    generation, so a chunk cannot fail halfway on a missing file)."""
    path = Path(bench)
    root = Path(images) if images is not None else path.parent
    entries = _read_json(path, "ImgEdit benchmark file")
    if not isinstance(entries, dict):
        raise UniLIPError(f"{path}: expected a JSON object mapping keys to {{'id': <image>, 'prompt': <instruction>}}")
    if not root.is_dir():
        raise UniLIPError(f"ImgEdit image folder {root} does not exist" if not root.exists() else f"{root} is not a folder")
    items, missing = [], []
    for key, entry in entries.items():
        where = f"{path}, key {key!r}"
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), str) or not entry["id"]:
            raise UniLIPError(f"{where}: needs a string field 'id' (the source image, relative to the image folder)")
        if not isinstance(entry.get("prompt"), str) or not entry["prompt"].strip():
            raise UniLIPError(f"{where}: needs a non-empty string field 'prompt' (the instruction)")
        source = root / entry["id"]
        if not source.is_file():
            missing.append(str(source))
        items.append(DumpItem(len(items), entry["prompt"], (f"{_plain_name(key, where)}.png",), source=source))
    if missing:
        shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        raise UniLIPError(f"{len(missing)} ImgEdit source image(s) missing: {shown} (--images is the folder the "
                          "'id' paths are relative to)")
    if not items:
        raise UniLIPError(f"{path}: no edits")
    return DumpPlan("imgedit", items, 1, {"bench": str(path.resolve()), "images": str(root.resolve()),
                                          "sha256": {path.name: _sha256(path)}}, "{key}.png")


# ------------------------------------------------------------------------------------------------ chunks and files


def check_chunk(index: int, n_chunks: int) -> None:
    if n_chunks < 1:
        raise UniLIPError(f"--n-chunks: must be >= 1 (got {n_chunks})")
    if not 0 <= index < n_chunks:
        raise UniLIPError(f"--index: must be in 0..{n_chunks - 1} for --n-chunks {n_chunks} (got {index})")


def chunk_batches(n_items: int, batch_size: int, index: int, n_chunks: int) -> list[range]:
    """The batches of chunk ``index``: batch ``b`` holds items ``b * batch_size ..`` (up to ``batch_size`` of them)
    and goes to chunk ``b % n_chunks``. The chunks' batches together are every item exactly once, and a batch is
    the same whatever ``n_chunks`` is."""
    check_chunk(index, n_chunks)
    if batch_size < 1:
        raise UniLIPError(f"--batch-size: must be >= 1 (got {batch_size})")
    n_batches = math.ceil(n_items / batch_size)
    return [range(b * batch_size, min(n_items, (b + 1) * batch_size)) for b in range(index, n_batches, n_chunks)]


def is_done(item: DumpItem, out: Path) -> bool:
    """Whether every file of ``item`` is in ``out`` (files appear only complete, by rename)."""
    return all((out / p).is_file() for p in (*item.images, *(p for p, _ in item.texts)))


def _atomic_write(path: Path, write) -> None:
    """Write through a hidden temporary file in the same folder, then rename: the file appears whole or not at all.
    The temporary name starts with '.', so GenEval's ``\\d+\\.png`` match never picks it up."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_png(image, path: Path) -> None:
    _atomic_write(path, lambda tmp: image.save(tmp, format="PNG"))


def write_text(text: str, path: Path) -> None:
    _atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


# ------------------------------------------------------------------------------------------------ settings


def seed_rule(seed: int, samples: int) -> dict[str, Any]:
    """How each image's noise is seeded, in words and by example (the first prompt's seeds)."""
    from unilip.eval.gen_common import seeded_generators

    return {"seed": seed,
            "rule": ("sample k of the i-th prompt (i counts from 0 in the benchmark's order) starts from "
                     "unilip.eval.gen_common.seeded_generators(seed, i, samples)[k], a torch.Generator seeded "
                     "seed * 1000003 + i * 97 + k; the official scripts instead reset seed 42 before every prompt"),
            "first_prompt_seeds": [g.initial_seed() for g in seeded_generators(seed, 0, samples)]}


def settings_name(index: int, n_chunks: int) -> str:
    return f"settings-{index}-of-{n_chunks}.json"


def _check_earlier_runs(out: Path, settings: dict[str, Any]) -> None:
    """Refuse to add images to a folder whose earlier images were drawn with other settings."""
    for path in sorted(out.glob("settings-*-of-*.json")):
        try:
            earlier = json.loads(path.read_text(encoding="utf-8")).get("sampling", {})
        except (OSError, json.JSONDecodeError, AttributeError):
            raise UniLIPError(f"{path} is unreadable; remove it if its chunk's images are gone, or dump elsewhere") from None
        diff = [k for k in SAMPLING_KEYS if earlier.get(k) != settings["sampling"].get(k)]
        if diff:
            shown = ", ".join(f"{k} {earlier.get(k)!r} there, {settings['sampling'].get(k)!r} now" for k in diff)
            raise UniLIPError(f"{out} holds samples drawn with other settings ({path.name}: {shown}); "
                              "use another output folder or the same settings")


# ------------------------------------------------------------------------------------------------ the run


def dump_samples(pipe, plan: DumpPlan, out: str | Path, *, model: str, steps: int | None = None,
                 guidance: float | None = None, scheduler: str | None = None, seed: int = 0, batch_size: int = 4,
                 index: int = 0, n_chunks: int = 1) -> dict[str, Any]:
    """Write chunk ``index`` of ``n_chunks`` of ``plan`` into ``out`` with the :class:`UniLIPPipeline` ``pipe``.

    Args:
        model: what ``pipe`` was loaded from (recorded; a local folder is recorded as its absolute path).
        steps, guidance: sampling steps and CFG scale; ``None`` takes the generator config's (recorded resolved).
        scheduler: ``euler`` / ``dpm``, or ``None`` for the pipeline's own (recorded by what it is, e.g.
            ``dpm (flow_shift 3)``).
        batch_size: prompts per pipeline call (each with ``plan.samples`` images). It decides the batches, and with
            them the last bits of the images: keep it when resuming or adding chunks.
        index, n_chunks: which share of the batches this process draws (see :func:`chunk_batches`).

    Returns the settings written to ``out/settings-{index}-of-{n_chunks}.json`` with the counts of this run.
    """
    import torch

    from unilip import __version__
    from unilip.data.images import load_image
    from unilip.eval.gen_common import seeded_generators
    from unilip.generation.flow import describe_scheduler

    out = Path(out)
    batches = chunk_batches(len(plan.items), batch_size, index, n_chunks)
    g = pipe.generator.cfg.generator
    steps = g.num_inference_steps if steps is None else steps
    guidance = g.cfg_scale if guidance is None else guidance
    sampler = describe_scheduler(pipe.scheduler) if scheduler is None else scheduler
    model_id = str(Path(model).resolve()) if model != "mini" and Path(model).is_dir() else str(model)
    mine = [plan.items[i] for b in batches for i in b]
    settings: dict[str, Any] = {
        "sampling": {"benchmark": plan.benchmark, "model": model_id, "image_size": pipe.image_size, "steps": steps,
                     "guidance": guidance, "scheduler": sampler, "seed": seed, "samples_per_prompt": plan.samples,
                     "batch_size": batch_size, "prompts_sha256": plan.inputs.get("sha256")},
        "seeds": seed_rule(seed, plan.samples),
        "layout": plan.layout,
        "inputs": {k: v for k, v in plan.inputs.items() if k != "sha256"},
        "chunk": {"index": index, "n_chunks": n_chunks, "batches": len(batches), "prompts": len(mine),
                  "prompts_total": len(plan.items)},
        "unilip_version": __version__, "torch_version": torch.__version__,
        "device": str(pipe.device), "dtype": str(pipe.generator.conditioner.queries.dtype).replace("torch.", ""),
        "complete": False,
    }
    if out.exists() and not out.is_dir():
        raise UniLIPError(f"output {out} exists and is not a folder")
    if out.is_dir():
        _check_earlier_runs(out, settings)
    out.mkdir(parents=True, exist_ok=True)
    settings_path = out / settings_name(index, n_chunks)
    write_text(json.dumps(settings, indent=2) + "\n", settings_path)

    pipe.set_progress_bar_config(disable=True)
    done = drawn = 0
    for n, batch in enumerate(batches):
        items = [plan.items[i] for i in batch]
        if all(is_done(it, out) for it in items):
            done += len(items)
            continue
        # the whole batch is redrawn even when part of it is on disk: a smaller batch could change the last bits
        gens = [gen for it in items for gen in seeded_generators(seed, it.index, plan.samples)]
        sources = [load_image(it.source) for it in items] if items[0].source is not None else None
        images = pipe([it.prompt for it in items], image=sources, num_images_per_prompt=plan.samples,
                      num_inference_steps=steps, guidance_scale=guidance, generator=gens, scheduler=scheduler).images
        for j, it in enumerate(items):
            for rel, text in it.texts:
                if not (out / rel).is_file():
                    write_text(text, out / rel)
            for k, rel in enumerate(it.images):
                if not (out / rel).is_file():
                    write_png(images[j * plan.samples + k], out / rel)
        drawn += len(items)
        logger.info("%s chunk %d/%d: batch %d/%d done (%d prompts)", plan.benchmark, index, n_chunks, n + 1,
                    len(batches), len(items))
    settings["chunk"].update({"drawn": drawn, "skipped_done": done})
    settings["complete"] = True
    write_text(json.dumps(settings, indent=2) + "\n", settings_path)
    return settings


__all__ = ["BENCHMARKS", "DumpItem", "DumpPlan", "check_chunk", "chunk_batches", "dump_samples", "geneval_plan",
           "imgedit_plan", "is_done", "seed_rule", "settings_name", "wise_plan"]
