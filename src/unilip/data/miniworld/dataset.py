"""Mini-world datasets on disk: the records, the writer, and the reader every trainer uses.

Four tasks. ``images``: a scene. ``captions``: a scene and a caption. ``vqa``: a scene, a question and its one-word
answer, the question type cycling over the four types and the answer drawn uniformly from its type's answers (a
scene that cannot carry that answer is redrawn). ``edit``: source scene, instruction and target scene, the edit
type cycling over the five types.

Two formats. ``folder``: ``images/*.png`` + ``metadata.jsonl`` (one JSON record a line). ``wds``: webdataset tar
shards ``{split}-000000.tar`` holding ``KEY.png`` (or ``KEY.source.png`` + ``KEY.target.png``) and ``KEY.json``.
Both carry ``dataset.json`` (task, split, range, config). Scene graphs ride along in every record, so a scorer
never needs to re-sample a scene.
"""

from __future__ import annotations

import io
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from unilip.data.images import SkipCounter, load_image_array
from unilip.data.miniworld.config import MiniWorldConfig
from unilip.data.miniworld.edits import EDIT_TYPES, make_edit
from unilip.data.miniworld.language import caption
from unilip.data.miniworld.questions import (
    QUESTION_TYPES,
    answer_space,
    question_with_answer,
)
from unilip.data.miniworld.renderer import render_pil
from unilip.data.miniworld.scene import (
    SPLIT_SEED_BASE,
    SPLIT_SIZE,
    Scene,
    sample_scene,
    scene_seed,
)
from unilip.errors import ConfigError, ImageLoadError, UniLIPError

TASKS = ("images", "captions", "vqa", "edit")
FORMATS = ("folder", "wds")
# vqa / edit record r draws its scenes from indices r * _ATTEMPTS .. r * _ATTEMPTS + _ATTEMPTS - 1 of the split, so
# records stay independent (any range can be written alone) and the splits stay disjoint.
_ATTEMPTS = 64


def _forbidden(cfg: MiniWorldConfig, split: str) -> set[tuple[str, str]]:
    return set() if split == "heldout" else cfg.heldout_set()


def _vqa_record(cfg: MiniWorldConfig, split: str, r: int) -> dict[str, Any]:
    rng = np.random.default_rng([SPLIT_SEED_BASE[split] + r, 2])
    qtype = QUESTION_TYPES[r % len(QUESTION_TYPES)]
    answers = list(answer_space(qtype, cfg))
    forbidden = _forbidden(cfg, split)
    for answer in [answers[int(rng.integers(len(answers)))]] + list(rng.permutation(answers)):
        for attempt in range(_ATTEMPTS):
            scene = sample_scene(cfg, scene_seed(split, r * _ATTEMPTS + attempt), split)
            q = question_with_answer(scene, qtype, str(answer), cfg, rng, forbidden)
            if q is not None:
                return {"scene": scene, "question": q.question, "answer": q.answer, "qtype": q.qtype}
    raise RuntimeError(f"no scene carries a {qtype} question (record {r}); the config is too restrictive")


def _edit_record(cfg: MiniWorldConfig, split: str, r: int) -> dict[str, Any]:
    rng = np.random.default_rng([SPLIT_SEED_BASE[split] + r, 3])
    edit_type = EDIT_TYPES[r % len(EDIT_TYPES)]
    for attempt in range(_ATTEMPTS):
        scene = sample_scene(cfg, scene_seed(split, r * _ATTEMPTS + attempt), split)
        edit = make_edit(scene, edit_type, cfg, rng, _forbidden(cfg, split))
        if edit is not None:
            record = {"scene": edit.source, "target": edit.target, "instruction": edit.instruction, "edit_type": edit_type}
            if edit.region:
                record["region"] = edit.region
            return record
    raise RuntimeError(f"no scene allows a {edit_type} edit (record {r}); the config is too restrictive")


def make_records(task: str, cfg: MiniWorldConfig, split: str = "train", start: int = 0, n: int = 1) -> Iterator[dict[str, Any]]:
    """The records ``start .. start + n - 1`` of a task and split; each holds Scene objects and text, no pixels."""
    if task not in TASKS:
        raise ConfigError(f"task: unknown task {task!r}; allowed: {list(TASKS)}")
    if split not in SPLIT_SEED_BASE:
        raise ConfigError(f"split: unknown split {split!r}; allowed: {list(SPLIT_SEED_BASE)}")
    limit = SPLIT_SIZE // _ATTEMPTS if task in ("vqa", "edit") else SPLIT_SIZE
    if start < 0 or n < 0 or start + n > limit:
        raise ConfigError(f"start/n: records must lie in [0, {limit}) for task {task!r} (got start={start}, n={n})")
    for r in range(start, start + n):
        if task == "vqa":
            record = _vqa_record(cfg, split, r)
        elif task == "edit":
            record = _edit_record(cfg, split, r)
        else:
            record = {"scene": sample_scene(cfg, scene_seed(split, r), split)}
            if task == "captions":
                record["caption"] = caption(record["scene"], np.random.default_rng([SPLIT_SEED_BASE[split] + r, 1]))
        yield {"id": f"{split}-{r:09d}", **record}


# --------------------------------------------------------------------------------------------------------------------
# Writing


def _png(scene: Scene, cfg: MiniWorldConfig, size: int) -> bytes:
    buf = io.BytesIO()
    render_pil(scene, cfg, size).save(buf, format="PNG", compress_level=1)  # fast; 64 px PNGs are tiny anyway
    return buf.getvalue()


def _json_record(record: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.to_dict() if isinstance(v, Scene) else v) for k, v in record.items()}


class _Image(NamedTuple):
    """Where one image of a record lives: its scene's record key, the folder's file key, the tar suffix, the
    sample key of its pixels."""

    scene_key: str
    file_key: str
    suffix: str
    pixels_key: str


def _images(task: str) -> tuple[_Image, ...]:
    if task == "edit":
        return (_Image("scene", "source_file", "source.png", "source_image"), _Image("target", "target_file", "target.png", "target_image"))
    return (_Image("scene", "file", "png", "image"),)


def write_dataset(
    out: str | os.PathLike[str],
    task: str,
    n: int,
    cfg: MiniWorldConfig | None = None,
    split: str = "train",
    start: int = 0,
    size: int | None = None,
    fmt: str = "folder",
    shard_size: int = 10_000,
    progress: bool = False,
) -> Path:
    """Write ``n`` records of ``task`` to ``out`` (created; must be empty or absent). Returns ``out``.

    The directory is built under a temporary name and renamed at the end, so a killed run leaves no half dataset.
    """
    from tqdm.auto import tqdm

    cfg = cfg or MiniWorldConfig()
    cfg.validate()
    size = size or cfg.image_size
    if fmt not in FORMATS:
        raise ConfigError(f"format: unknown format {fmt!r}; allowed: {list(FORMATS)}")
    if n < 1:
        raise ConfigError(f"n: must be at least 1 (got {n})")
    if not 16 <= size <= 4096:
        raise ConfigError(f"size: must be between 16 and 4096 pixels (got {size})")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UniLIPError(f"{out} already exists and is not an empty directory; choose another --out")
    tmp = out.with_name(f".{out.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)

    records = tqdm(make_records(task, cfg, split, start, n), total=n, disable=not progress, desc=f"{task}/{split}", unit="rec")
    if fmt == "folder":
        (tmp / "images").mkdir()
        with open(tmp / "metadata.jsonl", "w", encoding="utf-8") as meta:
            for record in records:
                row = _json_record(record)
                for im in _images(task):
                    row[im.file_key] = f"images/{record['id']}.{im.suffix}"
                    (tmp / row[im.file_key]).write_bytes(_png(record[im.scene_key], cfg, size))
                meta.write(json.dumps(row) + "\n")
    else:
        import webdataset as wds

        with wds.ShardWriter(str(tmp / f"{split}-%06d.tar"), maxcount=shard_size, verbose=0) as sink:
            for record in records:
                sample = {"__key__": record["id"], "json": _json_record(record)}
                for im in _images(task):
                    sample[im.suffix] = _png(record[im.scene_key], cfg, size)
                sink.write(sample)

    from unilip import __version__
    from unilip.config_io import to_dict

    info = {"task": task, "split": split, "start": start, "n": n, "size": size, "format": fmt,
            "unilip_version": __version__, "miniworld": to_dict(cfg)}
    (tmp / "dataset.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    if out.exists():
        out.rmdir()
    os.replace(tmp, out)
    return out


# --------------------------------------------------------------------------------------------------------------------
# Reading


class MiniWorldDataset:
    """A dataset written by :func:`write_dataset` (either format), as dicts with pixels and scene graphs.

    Each sample is its JSON record plus ``image`` (H, W, 3) uint8 — for ``edit``, ``source_image`` and
    ``target_image`` — with ``scene`` / ``target`` as :class:`Scene`. A record whose image cannot be read is skipped
    with a counted warning (``self.skipped``), never fatal. Folder datasets also index: ``len(ds)``, ``ds[i]``.
    """

    def __init__(self, path: str | os.PathLike[str]):
        self.root = Path(path)
        info_path = self.root / "dataset.json"
        if not info_path.is_file():
            raise UniLIPError(f"{self.root} is not a mini-world dataset (no dataset.json); write one with `unilip miniworld make`")
        self.info = json.loads(info_path.read_text(encoding="utf-8"))
        self.task = self.info["task"]
        self.skipped = SkipCounter(what="records")
        self._rows: list[dict[str, Any]] | None = None
        if self.info["format"] == "folder":
            with open(self.root / "metadata.jsonl", encoding="utf-8") as f:
                self._rows = [json.loads(line) for line in f if line.strip()]
            self.shards: list[Path] = []
        else:
            self.shards = sorted(self.root.glob("*.tar"))

    def __len__(self) -> int:
        return len(self._rows) if self._rows is not None else int(self.info["n"])

    def __getitem__(self, index: int) -> dict[str, Any]:
        """Record ``index``; if its image is bad, the next good record (the skip is counted and logged)."""
        if self._rows is None:
            raise TypeError("webdataset shards are read in order: iterate over the dataset instead of indexing it")
        n = len(self._rows)
        for step in range(n):
            sample = self._read_row(self._rows[(index + step) % n])
            if sample is not None:
                return sample
        raise UniLIPError(f"{self.root}: no readable record ({self.skipped.summary()})")

    def _read_row(self, row: dict[str, Any]) -> dict[str, Any] | None:
        """A folder record with its pixels, or None (counted) when an image is bad."""
        try:
            sample = self._sample(row, {im.pixels_key: load_image_array(self.root / row[im.file_key]) for im in _images(self.task)})
        except ImageLoadError as err:
            self.skipped.skip(err)
            return None
        self.skipped.ok()
        return sample

    def __iter__(self) -> Iterator[dict[str, Any]]:
        if self._rows is not None:
            for row in self._rows:
                sample = self._read_row(row)
                if sample is not None:
                    yield sample
            return
        import webdataset as wds

        urls = [str(p) for p in self.shards]
        for raw in wds.WebDataset(urls, shardshuffle=False, empty_check=False):
            key = raw["__key__"]
            try:
                row = json.loads(raw["json"])
                images = {im.pixels_key: load_image_array(raw[im.suffix], name=f"{raw['__url__']}:{key}.{im.suffix}") for im in _images(self.task)}
            except ImageLoadError as err:
                self.skipped.skip(err)
                continue
            except (KeyError, ValueError) as err:
                self.skipped.skip(ImageLoadError(f"{raw.get('__url__')}:{key}", f"incomplete sample ({err!r})"))
                continue
            self.skipped.ok()
            yield self._sample(row, images)

    @staticmethod
    def _sample(row: dict[str, Any], images: dict[str, np.ndarray]) -> dict[str, Any]:
        sample = dict(row)
        for key in ("scene", "target"):
            if key in sample:
                sample[key] = Scene.from_dict(sample[key])
        sample.update(images)
        return sample
