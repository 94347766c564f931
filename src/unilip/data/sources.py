"""Image sources: every place training images can come from, behind one small interface.

A trainer never cares whether its images live in a folder, a JSONL manifest, webdataset shards, a mini-world
dataset on disk or the mini world itself: :func:`open_source` turns a one-line spec into an :class:`ImageSource`,
and :class:`~unilip.data.loader.ResumableImageLoader` turns that into batches.

Two kinds of source, because two kinds of storage:

* **map-style** (``iterable = False``): ``len(source)`` items, ``source.load(i)`` reads item ``i``. Random access is
  what makes a seeded permutation per epoch, and therefore exact resume, cheap.
* **iterable** (``iterable = True``): webdataset shards are read front to back; ``source.encoded()`` gives one
  epoch of still-encoded items (so a loader can skip the ones it does not need without decoding them), and
  iterating the source gives decoded RGB images.

Every image goes through :func:`~unilip.data.images.load_image`, so a bad one is always an
:class:`~unilip.errors.ImageLoadError`, never a Pillow traceback; the loader decides what to do about it (skip it).
This module imports no torch.
"""

from __future__ import annotations

import glob
import itertools
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from PIL import Image

from unilip.data.images import SkipCounter, list_image_files, load_image
from unilip.data.miniworld.config import MiniWorldConfig
from unilip.errors import ImageLoadError, UniLIPError

__all__ = [
    "MANIFEST_IMAGE_KEYS",
    "WDS_IMAGE_EXTENSIONS",
    "FileListSource",
    "ImageSource",
    "MiniWorldSource",
    "WebDatasetSource",
    "open_source",
]

logger = logging.getLogger("unilip.data")

#: Keys of a JSONL manifest record that may hold the image path, in the order they are looked up.
MANIFEST_IMAGE_KEYS = ("image", "file", "path")

#: Members of a webdataset sample tried as its image, in order (the first one present is used).
WDS_IMAGE_EXTENSIONS = ("png", "jpg", "jpeg", "webp")

# The image files of a mini-world folder dataset, per task (the keys write_dataset puts in metadata.jsonl).
_MINIWORLD_FILE_KEYS = {"edit": ("source_file", "target_file")}
_MINIWORLD_DEFAULT_FILE_KEYS = ("file",)
# The same for its webdataset format: each entry lists the member suffixes tried for one image of a sample.
_MINIWORLD_WDS_KEYS = {"edit": (("source.png",), ("target.png",))}

_EXPECTED = (
    "expected 'miniworld:SPLIT' (e.g. miniworld:train), a mini-world dataset directory (with dataset.json), "
    "an image folder, a .jsonl manifest, or webdataset shards (a folder of .tar files or a pattern such as "
    "data/shard-{000..009}.tar)"
)

#: A still-encoded item of a webdataset stream: (name for error messages, encoded bytes), or the error that stands
#: in its place (a sample without an image member, an unreadable shard).
EncodedItem = tuple[str, bytes] | ImageLoadError


class ImageSource:
    """Base class of the sources; see the module docstring for the two kinds.

    Attributes:
        name: what log lines and errors call the source (usually the spec it was opened from).
        iterable: True for stream-only sources (webdataset), which have no ``len`` and no ``load``.
        infinite: True for generated sources whose ``len`` is just "more than any run will read"; a loader walks
            them in index order instead of building a permutation of ``len`` items.
    """

    name: str = "<source>"
    iterable: bool = False
    infinite: bool = False

    def __len__(self) -> int:
        raise TypeError(f"{self.name} is read as a stream and has no length")

    def load(self, index: int) -> Image.Image:
        """Item ``index`` as an RGB image; raises :class:`ImageLoadError` when it cannot be read."""
        raise TypeError(f"{self.name} is read as a stream; iterate over it instead of indexing it")

    def metadata(self, index: int) -> dict[str, Any]:
        """Whatever the source knows about item ``index`` besides its pixels (e.g. manifest fields)."""
        return {}

    def __repr__(self) -> str:
        size = "stream" if self.iterable else f"{len(self)} items"
        return f"{type(self).__name__}({self.name!r}, {size})"


# --------------------------------------------------------------------------------------------------------------
# map-style sources
# --------------------------------------------------------------------------------------------------------------


class FileListSource(ImageSource):
    """A fixed list of image files (an image folder, a JSONL manifest, a mini-world folder dataset).

    Paths are kept as strings so the source pickles cheaply into DataLoader workers.
    """

    def __init__(self, paths: list[str | os.PathLike[str]], name: str, metadata: list[dict[str, Any]] | None = None):
        if not paths:
            raise UniLIPError(f"{name}: holds no images")
        if metadata is not None and len(metadata) != len(paths):
            raise ValueError(f"metadata has {len(metadata)} entries for {len(paths)} paths")
        self.paths = [os.fspath(p) for p in paths]
        self.name = name
        self._metadata = metadata

    def __len__(self) -> int:
        return len(self.paths)

    def load(self, index: int) -> Image.Image:
        return load_image(self.paths[index])

    def metadata(self, index: int) -> dict[str, Any]:
        meta = {"path": self.paths[index]}
        if self._metadata is not None:
            meta.update(self._metadata[index])
        return meta


class MiniWorldSource(ImageSource):
    """Mini-world scenes drawn on the fly: item ``i`` is scene ``i`` of the split, rendered; nothing on disk.

    Its length is the size of a split (10**9 scenes), far more than any run reads, so it is marked ``infinite``.
    """

    infinite = True

    def __init__(self, split: str, cfg: MiniWorldConfig | None = None):
        from unilip.data.miniworld.scene import SPLIT_SEED_BASE, SPLIT_SIZE

        if split not in SPLIT_SEED_BASE:
            raise UniLIPError(f"miniworld:{split}: unknown split {split!r}; allowed: {list(SPLIT_SEED_BASE)}")
        self.cfg = cfg or MiniWorldConfig()
        self.cfg.validate()
        self.split = split
        self.name = f"miniworld:{split}"
        self._len = SPLIT_SIZE

    def __len__(self) -> int:
        return self._len

    def load(self, index: int) -> Image.Image:
        from unilip.data.miniworld.renderer import render_pil
        from unilip.data.miniworld.scene import sample_scene, scene_seed

        scene = sample_scene(self.cfg, scene_seed(self.split, index), self.split)
        return load_image(render_pil(scene, self.cfg), name=f"{self.name}[{index}]")

    def metadata(self, index: int) -> dict[str, Any]:
        from unilip.data.miniworld.scene import scene_seed

        return {"split": self.split, "index": index, "seed": scene_seed(self.split, index)}


# --------------------------------------------------------------------------------------------------------------
# iterable source: webdataset shards
# --------------------------------------------------------------------------------------------------------------


class WebDatasetSource(ImageSource):
    """Webdataset tar shards, read in the given shard order (never shuffled: the loader owns all randomness).

    Args:
        urls: the shards, in reading order (local paths, or anything webdataset opens, e.g. ``pipe:``).
        name: what errors and log lines call the source.
        image_keys: one entry per image of a sample; each lists the member suffixes tried, first present wins.
            Default: one image, the first of png/jpg/jpeg/webp. A mini-world ``edit`` dataset has two
            (``source.png``, ``target.png``), so each of its samples gives two items.
    """

    iterable = True

    def __init__(self, urls: list[str], name: str, image_keys: tuple[tuple[str, ...], ...] = (WDS_IMAGE_EXTENSIONS,)):
        if not urls:
            raise UniLIPError(f"{name}: no webdataset shards")
        self.urls = list(urls)
        self.name = name
        self.image_keys = image_keys
        self.skipped = SkipCounter(what="images")

    def encoded(self) -> Iterator[EncodedItem]:
        """One epoch of items in shard order, still encoded; problems come as :class:`ImageLoadError` items.

        Unreadable shards and samples without an image member take a place in the stream like any item, so the
        stream is the same every time it is read, which is what lets a loader resume at a position.
        """
        from webdataset.tariterators import tarfile_samples

        problems: list[ImageLoadError] = []
        reported: set[str] = set()  # webdataset may report one broken shard twice (member, then stream)

        def handler(exn: Exception) -> bool:
            where = self._where(exn)
            if where not in reported:
                reported.add(where)
                reason = str(exn.args[0]).split(" @ ")[0] if exn.args else repr(exn)
                problems.append(ImageLoadError(where, f"unreadable shard data ({reason})"))
            return True  # keep reading: a broken shard costs its remaining samples, not the run

        for sample in tarfile_samples(({"url": u} for u in self.urls), handler=handler):
            yield from _drain(problems)
            for item in self._items(sample):
                yield item
        yield from _drain(problems)

    def _items(self, sample: dict[str, Any]) -> Iterator[EncodedItem]:
        where = f"{sample.get('__url__', self.name)}:{sample.get('__key__', '?')}"
        for alternatives in self.image_keys:
            suffix = next((s for s in alternatives if s in sample), None)
            if suffix is None:
                wanted = ", ".join(f".{s}" for s in alternatives)
                yield ImageLoadError(where, f"sample has no image member (expected one of {wanted})")
            else:
                yield f"{where}.{suffix}", sample[suffix]

    def _where(self, exn: Exception) -> str:
        """The shard an exception came from: webdataset appends the url to ``exn.args`` or names its stream."""
        for arg in reversed(getattr(exn, "args", ())):
            if isinstance(arg, str) and arg in self.urls:
                return arg
        text = " ".join(str(a) for a in getattr(exn, "args", ()))
        return next((u for u in self.urls if f"'{u}'" in text), self.name)

    def __iter__(self) -> Iterator[Image.Image]:
        """One epoch of decoded RGB images in shard order; bad ones are skipped and counted in ``self.skipped``."""
        for item in self.encoded():
            try:
                img = decode_item(item)
            except ImageLoadError as err:
                self.skipped.skip(err)
                continue
            self.skipped.ok()
            yield img


def first_images(source: ImageSource, n: int) -> list[Image.Image]:
    """The first ``n`` images of ``source`` (all of them when it has fewer), by index or, for a stream, in order."""
    if source.iterable:
        return list(itertools.islice(source, n))
    return [source.load(i) for i in range(min(n, len(source)))]


def decode_item(item: EncodedItem) -> Image.Image:
    """Decode one :meth:`WebDatasetSource.encoded` item, or raise the :class:`ImageLoadError` standing for it."""
    if isinstance(item, ImageLoadError):
        raise item
    name, data = item
    return load_image(data, name=name)


def _drain(errors: list[ImageLoadError]) -> Iterator[ImageLoadError]:
    while errors:
        yield errors.pop(0)


# --------------------------------------------------------------------------------------------------------------
# opening a spec
# --------------------------------------------------------------------------------------------------------------


def open_source(spec: str, miniworld: MiniWorldConfig | None = None) -> ImageSource:
    """Open the image source a spec names.

    Args:
        spec: one of
            ``miniworld:SPLIT`` (scenes generated on the fly, e.g. ``miniworld:train``);
            a mini-world dataset directory (with ``dataset.json``; an ``edit`` dataset gives source and target);
            an image folder (searched recursively);
            a ``.jsonl`` manifest (a JSON object a line, the image path under ``image``, ``file`` or ``path``,
            relative to the manifest's folder or absolute; the other keys become metadata);
            webdataset shards: a folder of ``.tar`` files, or a brace/glob pattern (``data/shard-{000..009}.tar``).
        miniworld: the world of ``miniworld:SPLIT`` (default :class:`MiniWorldConfig`).

    Raises:
        UniLIPError: the spec matches none of the above (the message lists what was expected).
    """
    if spec.startswith("miniworld:"):
        return MiniWorldSource(spec.split(":", 1)[1], miniworld)
    path = Path(spec).expanduser()
    if path.is_dir():
        return _open_directory(path, spec)
    if path.is_file() and path.suffix.lower() == ".jsonl":
        return _open_manifest(path, spec)
    if _looks_like_shards(spec):
        return WebDatasetSource(_expand_shards(spec), spec)
    if path.exists():
        raise UniLIPError(f"cannot open image source {spec!r}: it is a file but not a .jsonl manifest or a .tar shard; {_EXPECTED}")
    raise UniLIPError(f"cannot open image source {spec!r}: no such file or folder; {_EXPECTED}")


def _open_directory(path: Path, spec: str) -> ImageSource:
    if (path / "dataset.json").is_file():
        return _open_miniworld_dataset(path, spec)
    shards = sorted(p for p in path.iterdir() if p.suffix == ".tar" and p.is_file())
    images = list_image_files(path)
    if shards and images:
        raise UniLIPError(
            f"{spec}: holds both .tar shards and image files; point at the shards with a pattern "
            f"({path}/*.tar) or move the images to their own folder"
        )
    if shards:
        return WebDatasetSource([str(p) for p in shards], spec)
    if not images:
        raise UniLIPError(f"{spec}: no image files or .tar shards in this folder; {_EXPECTED}")
    return FileListSource(images, spec)


def _open_miniworld_dataset(path: Path, spec: str) -> ImageSource:
    """A directory written by :func:`unilip.data.miniworld.dataset.write_dataset`, either format."""
    try:
        info = json.loads((path / "dataset.json").read_text(encoding="utf-8"))
        task, fmt = info["task"], info["format"]
    except (OSError, ValueError, KeyError) as e:
        raise UniLIPError(f"{spec}: unreadable dataset.json ({e!r}); rewrite it with `unilip miniworld make`") from None
    if fmt == "wds":
        shards = sorted(str(p) for p in path.glob("*.tar"))
        return WebDatasetSource(shards, spec, _MINIWORLD_WDS_KEYS.get(task, (("png",),)))
    keys = _MINIWORLD_FILE_KEYS.get(task, _MINIWORLD_DEFAULT_FILE_KEYS)
    paths: list[Path] = []
    meta: list[dict[str, Any]] = []
    for line_no, row in _read_jsonl(path / "metadata.jsonl", spec):
        for key in keys:
            if key not in row:
                raise UniLIPError(f"{spec}: metadata.jsonl line {line_no} has no {key!r}")
            paths.append(path / row[key])
            meta.append({"id": row.get("id"), "role": key, "line": line_no})
    return FileListSource(paths, spec, meta)


def _open_manifest(path: Path, spec: str) -> FileListSource:
    paths: list[Path] = []
    meta: list[dict[str, Any]] = []
    for line_no, row in _read_jsonl(path, spec):
        key = next((k for k in MANIFEST_IMAGE_KEYS if k in row), None)
        if key is None or not isinstance(row[key], str):
            raise UniLIPError(f"{spec}: line {line_no} has no image path (a string under one of {list(MANIFEST_IMAGE_KEYS)})")
        image = Path(row[key]).expanduser()
        paths.append(image if image.is_absolute() else path.parent / image)
        meta.append({k: v for k, v in row.items() if k != key})
    return FileListSource(paths, spec, meta)


def _read_jsonl(path: Path, spec: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, record) for each non-blank line; a line that is not a JSON object is an error, not a skip."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise UniLIPError(f"{spec}: cannot read {path} ({e.strerror or e})") from None
    for line_no, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as e:
            raise UniLIPError(f"{spec}: line {line_no} of {path.name} is not valid JSON ({e})") from None
        if not isinstance(row, dict):
            raise UniLIPError(f"{spec}: line {line_no} of {path.name} is not a JSON object")
        yield line_no, row


def _looks_like_shards(spec: str) -> bool:
    return spec.endswith(".tar") or any(c in spec for c in "{*?[")


def _expand_shards(spec: str) -> list[str]:
    """Brace-expand, then glob each piece that has wildcards; every named shard must exist (local paths)."""
    from braceexpand import braceexpand

    remote = "://" in spec or spec.startswith("pipe:")
    urls: list[str] = []
    for piece in braceexpand(spec):
        if remote:
            urls.append(piece)
        elif any(c in piece for c in "*?["):
            urls.extend(sorted(glob.glob(os.path.expanduser(piece))))
        elif Path(piece).expanduser().is_file():
            urls.append(str(Path(piece).expanduser()))
        else:
            raise UniLIPError(f"{spec}: shard {piece} does not exist")
    if not urls:
        raise UniLIPError(f"cannot open image source {spec!r}: the pattern matches no shard; {_EXPECTED}")
    return urls
