"""Read images safely: the one place every unilip command and data loader turns "an image" into RGB pixels.

Why one module: image files in the wild are empty, truncated, mislabelled, 16-bit, CMYK, palette-with-alpha,
rotated by EXIF, or decompression bombs. Handling each case once, here, means every caller gets the same RGB
uint8 result for a good image and the same one-line :class:`~unilip.errors.ImageLoadError` (naming the source and
the reason) for a bad one, never a Pillow traceback.

Only numpy and Pillow are imported: torch tensors are accepted by duck typing (``.detach().cpu().numpy()``) so that
``import unilip.data.images`` stays cheap. Pillow's global state (``Image.MAX_IMAGE_PIXELS``,
``ImageFile.LOAD_TRUNCATED_IMAGES``) is only read, never changed.
"""

from __future__ import annotations

import io
import logging
import os
import re
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from unilip.errors import ImageLoadError, UniLIPError

__all__ = [
    "DEFAULT_MAX_ASPECT",
    "DEFAULT_MAX_PIXELS",
    "IMAGE_EXTENSIONS",
    "SkipCounter",
    "image_to_array",
    "iter_images",
    "list_image_files",
    "load_image",
    "load_image_array",
]

logger = logging.getLogger("unilip.data")

#: Largest image (width * height) decoded by default: 64 megapixels (e.g. 8000x8000) is far above any training or
#: inference resolution, yet a few hundred MB of RGB at most, so a hostile or broken file cannot exhaust memory.
DEFAULT_MAX_PIXELS = 64_000_000

#: Longest side over shortest side accepted by default (panoramas are ~4:1; a 1 x 500,000 strip is an attack).
DEFAULT_MAX_ASPECT = 32.0

#: File suffixes (lowercase) that :func:`list_image_files` treats as images.
IMAGE_EXTENSIONS = frozenset(
    {".png", ".jpg", ".jpeg", ".jpe", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm", ".pnm"}
)

# Pillow formats we refuse to open even though Pillow can: EPS is rendered by running Ghostscript on the file,
# which is not something an image loader should do to untrusted data.
_REFUSED_FORMATS = frozenset({"EPS"})

_EMPTY = "empty file (0 bytes)"
_NOT_IMAGE = "not an image (unrecognised format)"
_WHITE = 255


# --------------------------------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------------------------------


def load_image(src: Any, *, max_pixels: int | None = DEFAULT_MAX_PIXELS, max_aspect: float | None = DEFAULT_MAX_ASPECT,
               name: str | None = None) -> Image.Image:
    """Return ``src`` as a new RGB (8 bits per channel) PIL image, or raise :class:`ImageLoadError`.

    ``src`` may be a path (``str`` / ``os.PathLike``), encoded image bytes (``bytes``/``bytearray``/``memoryview``),
    a binary file-like object with ``.read()``, a ``PIL.Image.Image``, a numpy array or a torch tensor.
    Transparency is composited on white, 16-bit and float data are rescaled to 0..255, and EXIF orientation is
    applied to encoded sources (paths, bytes, files), so a photo comes out the way viewers show it.

    ``max_pixels`` is the decompression-bomb guard: an image whose width*height exceeds it is refused, for encoded
    sources from the header before any pixel is decoded. ``None`` disables it (Pillow's own hard limit, twice
    ``Image.MAX_IMAGE_PIXELS``, still applies to encoded data). ``max_aspect`` refuses images longer than that many
    times their width (or wider than their height): a 1 x 500,000 strip passes the pixel cap, but resizing its short
    side to the model's size would make it 64 x 32 M. ``name`` is what error messages call the source.
    """
    if isinstance(src, Image.Image):
        label = name or _pil_name(src)
        img = _from_pil(src, max_pixels, label)
    elif isinstance(src, (str, os.PathLike)):
        label = name or str(src)
        img = _from_path(Path(src), max_pixels, label)
    elif isinstance(src, (bytes, bytearray, memoryview)):
        label = name or "<bytes>"
        img = _from_bytes(bytes(src), max_pixels, label)
    elif isinstance(src, np.ndarray) or _is_tensor_like(src):
        label = name or "<array>"
        img = _from_array(src, max_pixels, label)
    elif hasattr(src, "read"):
        label = name or _file_object_name(src)
        img = _from_file_object(src, max_pixels, label)
    else:
        raise ImageLoadError(
            name or f"<{type(src).__name__}>",
            f"unsupported source type {type(src).__name__} (expected a path, bytes, a binary file object, "
            "a PIL image, a numpy array or a torch tensor)",
        )
    w, h = img.size
    if max_aspect is not None and max(w, h) > max_aspect * min(w, h):
        raise ImageLoadError(label, f"aspect ratio {w}x{h} is more extreme than {max_aspect:g}:1 (resizing its short "
                                    "side would make a huge image; crop it, or raise max_aspect)")
    return img


def load_image_array(src: Any, **kw: Any) -> np.ndarray:
    """Like :func:`load_image` but return an (H, W, 3) uint8 numpy array (writable, owning its memory)."""
    return image_to_array(load_image(src, **kw))


def image_to_array(img: Image.Image) -> np.ndarray:
    """Return a PIL image as an (H, W, 3) uint8 array, converting any mode with the same rules as :func:`load_image`.

    A copy is returned, because ``np.asarray`` of a PIL image is read-only and callers (augmentations, in-place
    normalisation) expect to be able to write to it.
    """
    if img.mode != "RGB":
        img = _to_rgb(img, _pil_name(img))
    return np.array(img, dtype=np.uint8)


def list_image_files(folder: str | os.PathLike[str], recursive: bool = True) -> list[Path]:
    """Return the image files under ``folder`` (by suffix, case-insensitive), sorted so runs are reproducible.

    Raises :class:`UniLIPError` (not a bare ``FileNotFoundError``) when ``folder`` is missing or not a folder, so
    the CLI can print one clear line.
    """
    root = Path(folder)
    if not root.exists():
        raise UniLIPError(f"image folder {root} does not exist")
    if not root.is_dir():
        raise UniLIPError(f"image folder {root} is not a folder")
    candidates = root.rglob("*") if recursive else root.iterdir()
    return sorted(p for p in candidates if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


class SkipCounter:
    """Counts bad inputs that a data loader skips, so one broken file costs a logged warning, not the whole run.

    Call :meth:`ok` for each good item and :meth:`skip` for each bad one; :meth:`summary` gives a one-line report
    such as ``"skipped 3 of 120 images (first: cannot read image a.png: empty file (0 bytes))"``.
    """

    def __init__(self, what: str = "images", max_examples: int = 3):
        self.what = what
        self.max_examples = max_examples
        self.count = 0  # items skipped
        self.seen = 0  # items attempted: good and skipped
        self.examples: list[str] = []

    def ok(self) -> None:
        """Record one item that loaded fine."""
        self.seen += 1

    def skip(self, err: BaseException) -> None:
        """Record one bad item: log a warning with the running count and keep the first few messages."""
        self.count += 1
        self.seen += 1
        if len(self.examples) < self.max_examples:
            self.examples.append(str(err))
        logger.warning("skipping a bad input (%d %s skipped so far): %s", self.count, self.what, err)

    def summary(self) -> str:
        """One line for the end of a run, e.g. ``skipped 2 of 50 images (first: ...)``."""
        line = f"skipped {self.count} of {self.seen} {self.what}"
        if self.examples:
            line += f" (first: {self.examples[0]})"
        return line

    def __repr__(self) -> str:
        return f"SkipCounter({self.summary()!r})"


def iter_images(
    paths: Iterable[str | os.PathLike[str]], *, counter: SkipCounter | None = None, **load_kw: Any
) -> Iterator[tuple[Path, Image.Image]]:
    """Yield ``(path, RGB image)`` for each loadable path, skipping bad ones with a counted warning.

    Pass your own ``counter`` to read ``counter.count`` / ``counter.summary()`` afterwards; without one, a summary
    is logged at the end if anything was skipped. ``load_kw`` goes to :func:`load_image` (e.g. ``max_pixels``).
    """
    own_counter = counter is None
    counter = SkipCounter(what="images") if counter is None else counter
    for p in paths:
        path = Path(p)
        try:
            img = load_image(path, **load_kw)
        except ImageLoadError as err:
            counter.skip(err)
            continue
        counter.ok()
        yield path, img
    if own_counter and counter.count:
        logger.warning("%s", counter.summary())


# --------------------------------------------------------------------------------------------------------------
# encoded sources: paths, bytes, file objects
# --------------------------------------------------------------------------------------------------------------


def _from_path(path: Path, max_pixels: int | None, name: str) -> Image.Image:
    """Check the path gives a non-empty regular file (clear reasons for the common mistakes), then decode it."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ImageLoadError(name, "no such file") from None
    except OSError as e:
        raise ImageLoadError(name, _os_reason(e)) from None
    if path.is_dir():
        raise ImageLoadError(name, "is a directory, not an image file")
    if st.st_size == 0:
        raise ImageLoadError(name, _EMPTY)
    try:
        # We open the file ourselves so it is always closed, even when Pillow raises inside Image.open.
        with open(path, "rb") as f:
            return _decode(f, max_pixels, name)
    except OSError as e:  # only from open(): _decode turns Pillow's errors into ImageLoadError
        raise ImageLoadError(name, _os_reason(e)) from None


def _from_bytes(data: bytes, max_pixels: int | None, name: str) -> Image.Image:
    if not data:
        raise ImageLoadError(name, _EMPTY)
    return _decode(io.BytesIO(data), max_pixels, name)


def _from_file_object(f: Any, max_pixels: int | None, name: str) -> Image.Image:
    """Read the whole stream first: it works for unseekable streams and lets us detect empty input."""
    try:
        data = f.read()
    except OSError as e:
        raise ImageLoadError(name, _os_reason(e)) from None
    if isinstance(data, str):
        raise ImageLoadError(name, "file object is open in text mode; open it with 'rb'")
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ImageLoadError(name, f"file object .read() returned {type(data).__name__}, not bytes")
    return _from_bytes(bytes(data), max_pixels, name)


def _decode(fp: Any, max_pixels: int | None, name: str) -> Image.Image:
    """Identify, size-check, fully decode and convert one encoded image; every Pillow failure -> ImageLoadError.

    ``Image.open`` only reads the header, so the size check runs before any pixel memory is allocated; ``load()``
    then decodes every pixel so truncation is caught here rather than later, in the middle of a training step.
    """
    with warnings.catch_warnings():
        # Pillow warns (rather than fails) between MAX_IMAGE_PIXELS and twice that. When our limit is at or below
        # Pillow's, any such image is too large for us anyway, so fail right away; when the caller allowed more
        # (max_pixels=None or a larger limit), the warning is noise and the caller's choice stands.
        action = "error" if _escalate_pillow_warning(max_pixels) else "ignore"
        warnings.simplefilter(action, Image.DecompressionBombWarning)
        try:
            with Image.open(fp, formats=_open_formats()) as im:
                _check_size(im.size, max_pixels, name)
                im.load()
                im = _apply_exif_orientation(im)
                return _to_rgb(im, name)
        except ImageLoadError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise ImageLoadError(name, _bomb_reason(str(e), max_pixels)) from None
        except UnidentifiedImageError:
            raise ImageLoadError(name, _NOT_IMAGE) from None
        except (OSError, ValueError, SyntaxError, EOFError, IndexError) as e:
            raise ImageLoadError(name, f"corrupt or truncated image data ({_pillow_message(e)})") from None


def _open_formats() -> list[str]:
    """The Pillow formats we let ``Image.open`` try: all registered ones except those in ``_REFUSED_FORMATS``."""
    Image.init()  # registers all plugins, as Image.open itself would
    return [f for f in Image.ID if f not in _REFUSED_FORMATS]


def _escalate_pillow_warning(max_pixels: int | None) -> bool:
    pillow_limit = Image.MAX_IMAGE_PIXELS
    return max_pixels is not None and (pillow_limit is None or max_pixels <= pillow_limit)


def _apply_exif_orientation(im: Image.Image) -> Image.Image:
    """Rotate/flip as the EXIF orientation tag says. Broken EXIF must not cost a good image: keep it unrotated."""
    try:
        return ImageOps.exif_transpose(im)
    except Exception as e:  # noqa: BLE001 - metadata only; the pixels are already decoded and valid
        logger.debug("ignoring unreadable EXIF orientation: %s", e)
        return im


def _bomb_reason(pillow_msg: str, max_pixels: int | None) -> str:
    """Turn Pillow's decompression-bomb message into our 'too large' reason, with the pixel count and the limit."""
    n = re.search(r"\((\d+) pixels\)", pillow_msg)
    lim = re.search(r"limit of (\d+) pixels", pillow_msg)
    if not n:
        return f"too large ({pillow_msg})"
    pixels = int(n.group(1))
    if max_pixels is not None and pixels > max_pixels:
        return _too_large(pixels, max_pixels)
    limit = int(lim.group(1)) if lim else 0
    return f"too large: {pixels:,} pixels exceeds Pillow's hard limit of {limit:,} pixels (decompression-bomb guard)"


def _too_large(pixels: int, limit: int, size: tuple[int, int] | None = None) -> str:
    dims = f"{size[0]}x{size[1]} = " if size else ""
    return (
        f"too large: {dims}{pixels:,} pixels exceeds the limit of {limit:,} pixels "
        "(decompression-bomb guard; raise max_pixels to allow it)"
    )


def _check_size(size: tuple[int, int], max_pixels: int | None, name: str) -> None:
    """Refuse empty images and images over ``max_pixels``, using only the (header) size."""
    w, h = size
    if w <= 0 or h <= 0:
        raise ImageLoadError(name, f"image has zero width or height ({w}x{h})")
    if max_pixels is not None and w * h > max_pixels:
        raise ImageLoadError(name, _too_large(w * h, max_pixels, (w, h)))


def _pillow_message(e: BaseException) -> str:
    return str(e) or type(e).__name__


def _os_reason(e: OSError) -> str:
    if isinstance(e, PermissionError):
        return "permission denied"
    if isinstance(e, IsADirectoryError):
        return "is a directory, not an image file"
    return e.strerror or str(e) or type(e).__name__


def _file_object_name(f: Any) -> str:
    n = getattr(f, "name", None)
    return str(n) if isinstance(n, (str, os.PathLike)) else "<file>"


# --------------------------------------------------------------------------------------------------------------
# in-memory sources: PIL images and arrays
# --------------------------------------------------------------------------------------------------------------


def _from_pil(im: Image.Image, max_pixels: int | None, name: str) -> Image.Image:
    """Convert a caller's PIL image; it may be lazily opened, so decode it under the same guards as a file."""
    _check_size(im.size, max_pixels, name)
    try:
        im.load()
        return _to_rgb(im, name)
    except ImageLoadError:
        raise
    except (OSError, ValueError, SyntaxError, EOFError, IndexError) as e:
        raise ImageLoadError(name, f"corrupt or truncated image data ({_pillow_message(e)})") from None


def _pil_name(im: Image.Image) -> str:
    """A PIL image opened from a file is named by that file in errors; others are "<PIL image>"."""
    filename = getattr(im, "filename", None)
    return os.fsdecode(filename) if filename else "<PIL image>"


def _is_tensor_like(x: Any) -> bool:
    return all(hasattr(x, a) for a in ("detach", "cpu", "numpy"))


def _from_array(src: Any, max_pixels: int | None, name: str) -> Image.Image:
    """Validate an array's shape and value range, then build the RGB image (channel-last, uint8)."""
    arr = _as_numpy(src, name)
    hwc = _to_hwc(arr, name)
    _check_size((hwc.shape[1], hwc.shape[0]), max_pixels, name)
    u8 = _array_to_uint8(hwc, name)
    channels = u8.shape[2]
    if channels == 1:
        u8 = np.repeat(u8, 3, axis=2)
    elif channels == 4:
        u8 = _composite_on_white(u8)
    return Image.fromarray(np.ascontiguousarray(u8))


def _as_numpy(src: Any, name: str) -> np.ndarray:
    if isinstance(src, np.ndarray):
        return src
    try:  # a torch tensor (or anything shaped like one); torch itself is never imported here
        return np.asarray(src.detach().cpu().numpy())
    except Exception as e:  # noqa: BLE001 - report any conversion failure as a clear refusal
        raise ImageLoadError(name, f"cannot convert {type(src).__name__} to a numpy array ({e})") from None


_SHAPES_ALLOWED = "(H,W), (H,W,C) or (C,H,W) with C in 1, 3, 4"


def _to_hwc(arr: np.ndarray, name: str) -> np.ndarray:
    """Return the array as (H, W, C). Channel-first is recognised when the first dim is <=4 and the last is >4."""
    given = arr.shape  # error messages name the shape the caller passed, not our transposed view
    if arr.ndim == 2:
        arr = arr[:, :, None]
    elif arr.ndim == 3:
        if arr.shape[-1] > 4 and arr.shape[0] <= 4:
            arr = np.moveaxis(arr, 0, -1)
    else:
        raise ImageLoadError(name, f"array has shape {given} ({arr.ndim} dims); allowed: {_SHAPES_ALLOWED}")
    if arr.size == 0:
        raise ImageLoadError(name, f"array has shape {given} with no pixels; allowed: {_SHAPES_ALLOWED}")
    if arr.shape[2] not in (1, 3, 4):
        raise ImageLoadError(
            name, f"array has shape {given} with {arr.shape[2]} channels; allowed: {_SHAPES_ALLOWED}"
        )
    return arr


def _array_to_uint8(arr: np.ndarray, name: str) -> np.ndarray:
    """Map each supported dtype to uint8 0..255 (see load_image); refuse values that have no clear meaning."""
    kind = arr.dtype.kind
    if arr.dtype == np.uint8:
        return arr
    if kind == "b":
        return arr.astype(np.uint8) * 255
    if arr.dtype == np.uint16:
        return _scale_16bit(arr)
    if kind == "f":
        return _float_array_to_uint8(arr, name)
    if kind in "iu":
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or hi > 255:
            raise ImageLoadError(
                name,
                f"{arr.dtype} array has values in [{lo}, {hi}]; integer arrays must be in 0..255 "
                "(uint16 arrays are scaled from 0..65535)",
            )
        return arr.astype(np.uint8)
    raise ImageLoadError(
        name, f"array dtype {arr.dtype} is not supported; allowed: uint8, uint16, bool, float in [0,1], ints 0..255"
    )


def _float_array_to_uint8(arr: np.ndarray, name: str) -> np.ndarray:
    if not np.isfinite(arr).all():
        raise ImageLoadError(name, f"{arr.dtype} array contains NaN or infinite values")
    lo, hi = float(arr.min()), float(arr.max())
    if lo < -0.001 or hi > 1.001:
        raise ImageLoadError(
            name,
            f"{arr.dtype} array has values in [{lo:g}, {hi:g}]; float arrays must be in [0,1] "
            "(divide by 255 for 0..255 data)",
        )
    return np.rint(np.clip(arr.astype(np.float64), 0.0, 1.0) * 255.0).astype(np.uint8)


def _scale_16bit(arr: np.ndarray) -> np.ndarray:
    """0..65535 -> 0..255 by value/257 rounded, so 65535 -> 255 and 257*k -> k exactly."""
    a = np.clip(arr.astype(np.int64), 0, 65535)
    return ((a + 128) // 257).astype(np.uint8)


def _composite_on_white(rgba: np.ndarray) -> np.ndarray:
    """Alpha-composite (H,W,4) uint8 on white, exactly: out = (c*a + 255*(255-a)) / 255, rounded."""
    c = rgba[..., :3].astype(np.uint32)
    a = rgba[..., 3:4].astype(np.uint32)
    out = (c * a + _WHITE * (255 - a) + 127) // 255
    return out.astype(np.uint8)


# --------------------------------------------------------------------------------------------------------------
# mode conversion
# --------------------------------------------------------------------------------------------------------------


def _to_rgb(im: Image.Image, name: str) -> Image.Image:
    """Convert any Pillow mode to a new RGB image (transparency on white, wide/float data rescaled to 0..255)."""
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        return _grey_to_rgb(_scale_16bit(np.asarray(im)))
    if mode == "I":
        a = np.asarray(im).astype(np.int64)
        return _grey_to_rgb(_scale_16bit(a) if a.max() > 255 else np.clip(a, 0, 255).astype(np.uint8))
    if mode == "F":
        return _grey_to_rgb(_float_image_to_uint8(np.asarray(im), name))
    if mode == "La":  # premultiplied alpha: Pillow converts it to RGBA only via LA
        im = im.convert("LA")
    if im.has_transparency_data:
        rgba = np.asarray(im.convert("RGBA"))
        return Image.fromarray(_composite_on_white(rgba))
    try:
        return im.convert("RGB") if mode != "RGB" else im.copy()
    except ValueError as e:
        raise ImageLoadError(name, f"unsupported image mode {mode!r} ({e})") from None


def _grey_to_rgb(grey: np.ndarray) -> Image.Image:
    return Image.fromarray(np.repeat(grey[:, :, None], 3, axis=2))


def _float_image_to_uint8(a: np.ndarray, name: str) -> np.ndarray:
    """Mode "F" files carry no range: values up to 1.0 are taken as 0..1, anything larger as 0..255; clipped."""
    if not np.isfinite(a).all():
        raise ImageLoadError(name, "float image contains NaN or infinite values")
    scale = 255.0 if a.max() <= 1.0 else 1.0
    return np.rint(np.clip(a.astype(np.float64) * scale, 0.0, 255.0)).astype(np.uint8)
