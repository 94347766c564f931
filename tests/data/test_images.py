"""Tests for unilip.data.images: every input kind and mode gives RGB uint8, every bad input a clear ImageLoadError."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile, features

from unilip.data.images import (
    DEFAULT_MAX_PIXELS,
    IMAGE_EXTENSIONS,
    SkipCounter,
    image_to_array,
    iter_images,
    list_image_files,
    load_image,
    load_image_array,
)
from unilip.errors import ImageLoadError, UniLIPError


def _rgb_array(h: int = 6, w: int = 5) -> np.ndarray:
    return (np.arange(h * w * 3, dtype=np.int64) * 7 % 256).astype(np.uint8).reshape(h, w, 3)


def _encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def _check_rgb(img: Image.Image, size: tuple[int, int]) -> np.ndarray:
    assert isinstance(img, Image.Image)
    assert img.mode == "RGB"
    assert img.size == size
    arr = np.asarray(img)
    assert arr.dtype == np.uint8 and arr.shape == (size[1], size[0], 3)
    return arr


def _check_rgb_img(img: Image.Image, size: tuple[int, int]) -> Image.Image:
    _check_rgb(img, size)
    return img


def _px(img: Image.Image, x: int = 0, y: int = 0) -> tuple[int, ...]:
    return tuple(int(v) for v in np.asarray(img)[y, x])


# ---------------------------------------------------------------------------------------------- input kinds


@pytest.fixture()
def png_file(tmp_path: Path) -> Path:
    p = tmp_path / "pic.png"
    Image.fromarray(_rgb_array()).save(p)
    return p


def test_path_str_and_pathlib(png_file: Path) -> None:
    for src in (str(png_file), png_file):
        arr = _check_rgb(load_image(src), (5, 6))
        np.testing.assert_array_equal(arr, _rgb_array())


def test_bytes_bytearray_memoryview(png_file: Path) -> None:
    data = png_file.read_bytes()
    for src in (data, bytearray(data), memoryview(data)):
        np.testing.assert_array_equal(_check_rgb(load_image(src), (5, 6)), _rgb_array())


def test_file_object(png_file: Path) -> None:
    with open(png_file, "rb") as f:
        np.testing.assert_array_equal(_check_rgb(load_image(f), (5, 6)), _rgb_array())
    np.testing.assert_array_equal(load_image_array(io.BytesIO(png_file.read_bytes())), _rgb_array())


def test_pil_image_is_copied_not_aliased() -> None:
    src = Image.fromarray(_rgb_array())
    out = load_image(src)
    np.testing.assert_array_equal(_check_rgb(out, (5, 6)), _rgb_array())
    assert out is not src


def test_numpy_hwc_and_channel_first() -> None:
    a = _rgb_array(6, 7)
    np.testing.assert_array_equal(_check_rgb(load_image(a), (7, 6)), a)
    np.testing.assert_array_equal(_check_rgb(load_image(np.moveaxis(a, -1, 0)), (7, 6)), a)


def test_numpy_grey_shapes() -> None:
    g = np.full((6, 7), 77, np.uint8)
    for src in (g, g[:, :, None], g[None]):
        assert _px(_check_rgb_img(load_image(src), (7, 6))) == (77, 77, 77)


def test_numpy_rgba_composited_on_white() -> None:
    a = np.array([[[255, 0, 0, 0], [0, 0, 255, 255], [0, 0, 0, 128], [200, 100, 50, 51]]], np.uint8)
    img = load_image(a)
    assert [_px(img, x) for x in range(4)] == [
        (255, 255, 255),
        (0, 0, 255),
        (127, 127, 127),  # 0*128/255 + 255*127/255 = 127 exactly
        (244, 224, 214),  # (c*51 + 255*204)/255 = c/5 + 204
    ]


def test_numpy_rgba_channel_first_wide() -> None:
    a = np.zeros((4, 2, 6), np.uint8)
    a[:3] = 10
    a[3] = 255
    assert _px(_check_rgb_img(load_image(a), (6, 2))) == (10, 10, 10)


def test_numpy_dtypes() -> None:
    u16 = np.array([[0, 65535, 257 * 100]], np.uint16)
    assert [_px(load_image(u16), x) for x in range(3)] == [(0, 0, 0), (255, 255, 255), (100, 100, 100)]
    b = np.array([[True, False]])
    assert [_px(load_image(b), x) for x in range(2)] == [(255, 255, 255), (0, 0, 0)]
    f = np.array([[0.0, 1.0, 0.5, 1.0005, -0.0005]], np.float32)
    assert [_px(load_image(f), x)[0] for x in range(5)] == [0, 255, 128, 255, 0]
    i = np.array([[0, 77, 255]], np.int64)
    assert [_px(load_image(i), x)[0] for x in range(3)] == [0, 77, 255]


class _FakeTensor:
    """Duck-typed torch tensor: the loader must not import torch."""

    def __init__(self, a: np.ndarray):
        self._a = a

    def detach(self) -> _FakeTensor:
        return self

    def cpu(self) -> _FakeTensor:
        return self

    def numpy(self) -> np.ndarray:
        return self._a


def test_tensor_like_channel_first_float() -> None:
    a = np.zeros((3, 4, 5), np.float32)
    a[0] = 1.0
    assert _px(_check_rgb_img(load_image(_FakeTensor(a)), (5, 4))) == (255, 0, 0)


def test_image_to_array_returns_writable_copy() -> None:
    img = Image.new("L", (3, 2), 9)
    arr = image_to_array(img)
    assert arr.shape == (2, 3, 3) and arr.dtype == np.uint8 and arr.flags.writeable
    assert (arr == 9).all()
    assert load_image_array(np.zeros((2, 2), np.uint8)).flags.writeable


# ---------------------------------------------------------------------------------------------- PIL modes


def test_mode_L_and_1() -> None:
    assert _px(load_image(Image.new("L", (2, 2), 77))) == (77, 77, 77)
    assert _px(load_image(Image.new("1", (2, 2), 1))) == (255, 255, 255)


def test_rgba_pil() -> None:
    im = Image.new("RGBA", (3, 1))
    im.putpixel((0, 0), (255, 0, 0, 0))
    im.putpixel((1, 0), (0, 0, 255, 255))
    im.putpixel((2, 0), (0, 0, 0, 128))
    out = load_image(im)
    assert [_px(out, x) for x in range(3)] == [(255, 255, 255), (0, 0, 255), (127, 127, 127)]


def test_la_and_pa() -> None:
    assert _px(load_image(Image.new("LA", (1, 1), (0, 0)))) == (255, 255, 255)
    assert _px(load_image(Image.new("LA", (1, 1), (40, 255)))) == (40, 40, 40)
    pa = Image.new("PA", (1, 1), (1, 255))
    pa.putpalette([0, 0, 0, 10, 20, 30])
    assert _px(load_image(pa)) == (10, 20, 30)


def _palette_image() -> Image.Image:
    p = Image.new("P", (3, 1))
    p.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255])
    for x in range(3):
        p.putpixel((x, 0), x)
    return p


def test_palette_exact_colours_and_transparency() -> None:
    p = _palette_image()
    assert [_px(load_image(p), x) for x in range(3)] == [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    p.info["transparency"] = 1
    assert [_px(load_image(p), x) for x in range(3)] == [(255, 0, 0), (255, 255, 255), (0, 0, 255)]


def test_16bit_modes() -> None:
    for mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        im = Image.new(mode, (3, 1))
        for x, v in enumerate((0, 65535, 257 * 100)):
            im.putpixel((x, 0), v)
        assert [_px(load_image(im), x) for x in range(3)] == [(0, 0, 0), (255, 255, 255), (100, 100, 100)], mode


def test_mode_I_ranges() -> None:
    small = Image.fromarray(np.array([[0, 77, 255]], np.int32))
    assert small.mode == "I"
    assert [_px(load_image(small), x)[0] for x in range(3)] == [0, 77, 255]
    wide = Image.fromarray(np.array([[0, 257 * 100, 65535, 70000]], np.int32))
    assert [_px(load_image(wide), x)[0] for x in range(4)] == [0, 100, 255, 255]


def test_mode_F_ranges() -> None:
    unit = Image.fromarray(np.array([[0.0, 0.5, 1.0]], np.float32))
    assert unit.mode == "F"
    assert [_px(load_image(unit), x)[0] for x in range(3)] == [0, 128, 255]
    byte = Image.fromarray(np.array([[0.0, 77.0, 300.0, -5.0]], np.float32))
    assert [_px(load_image(byte), x)[0] for x in range(4)] == [0, 77, 255, 0]


def test_cmyk_ycbcr_lab_hsv() -> None:
    assert _px(load_image(Image.new("CMYK", (1, 1), (0, 0, 0, 0)))) == (255, 255, 255)
    assert _px(load_image(Image.new("YCbCr", (1, 1), (255, 128, 128)))) == (255, 255, 255)
    assert _px(load_image(Image.new("HSV", (1, 1), (0, 255, 255)))) == (255, 0, 0)
    lab = _px(load_image(Image.new("LAB", (1, 1), (255, 128, 128))))
    assert all(v >= 250 for v in lab)  # L=100, a=b=0 is white up to colour-management rounding


# ---------------------------------------------------------------------------------------------- real files


def test_png_16bit_greyscale_file(tmp_path: Path) -> None:
    p = tmp_path / "g16.png"
    im = Image.fromarray(np.array([[0, 65535, 257 * 100]], np.uint16))
    im.save(p)
    with Image.open(p) as check:
        assert check.mode.startswith("I")  # really stored as 16-bit
    assert [_px(load_image(p), x) for x in range(3)] == [(0, 0, 0), (255, 255, 255), (100, 100, 100)]


def test_png_rgba_file(tmp_path: Path) -> None:
    p = tmp_path / "a.png"
    im = Image.new("RGBA", (2, 1))
    im.putpixel((0, 0), (255, 0, 0, 0))
    im.putpixel((1, 0), (0, 0, 255, 255))
    im.save(p)
    out = load_image(p)
    assert [_px(out, x) for x in range(2)] == [(255, 255, 255), (0, 0, 255)]


def test_jpeg_cmyk_file(tmp_path: Path) -> None:
    p = tmp_path / "c.jpg"
    Image.new("CMYK", (8, 8), (0, 0, 0, 0)).save(p)
    with Image.open(p) as check:
        assert check.mode == "CMYK"
    assert _px(_check_rgb_img(load_image(p), (8, 8))) == (255, 255, 255)


def test_gif_palette_with_transparency_file(tmp_path: Path) -> None:
    p = tmp_path / "t.gif"
    _palette_image().save(p, transparency=1)
    out = load_image(p)
    assert [_px(out, x) for x in range(3)] == [(255, 0, 0), (255, 255, 255), (0, 0, 255)]


@pytest.mark.parametrize("suffix", [".tif", ".bmp", ".ppm", ".webp"])
def test_lossless_formats(tmp_path: Path, suffix: str) -> None:
    if suffix == ".webp" and not features.check("webp"):
        pytest.skip("Pillow built without WebP")
    p = tmp_path / f"x{suffix}"
    kw = {"lossless": True} if suffix == ".webp" else {}
    Image.fromarray(_rgb_array()).save(p, **kw)
    np.testing.assert_array_equal(_check_rgb(load_image(p), (5, 6)), _rgb_array())


def test_exif_orientation_applied_to_files(tmp_path: Path) -> None:
    p = tmp_path / "rot.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    Image.new("RGB", (4, 2), (200, 10, 10)).save(p, exif=exif)
    assert load_image(p).size == (2, 4)
    with Image.open(p) as lazy:  # an in-memory PIL image is taken as given
        assert load_image(lazy).size == (4, 2)


# ---------------------------------------------------------------------------------------------- refusals


def _refusal(src, *words: str, **kw) -> ImageLoadError:
    with pytest.raises(ImageLoadError) as ei:
        load_image(src, **kw)
    msg = str(ei.value)
    for w in words:
        assert w in msg, (w, msg)
    return ei.value


def test_zero_byte_file_and_bytes(tmp_path: Path) -> None:
    p = tmp_path / "empty.png"
    p.write_bytes(b"")
    err = _refusal(p, "empty.png", "empty file (0 bytes)")
    assert err.reason == "empty file (0 bytes)" and err.source == str(p)
    _refusal(b"", "<bytes>", "empty file (0 bytes)")
    _refusal(io.BytesIO(b""), "empty file (0 bytes)")


def test_text_file_named_png(tmp_path: Path) -> None:
    p = tmp_path / "notes.png"
    p.write_text("this is not an image\n")
    _refusal(p, "notes.png", "not an image (unrecognised format)")


@pytest.mark.parametrize("fmt,suffix", [("PNG", ".png"), ("JPEG", ".jpg")])
def test_truncated_files(tmp_path: Path, fmt: str, suffix: str) -> None:
    data = _encode(Image.fromarray(_rgb_array(64, 64)), fmt)
    p = tmp_path / f"half{suffix}"
    p.write_bytes(data[: len(data) // 2])
    err = _refusal(p, "half" + suffix, "corrupt or truncated image data", "truncated")
    assert "Traceback" not in str(err)


def test_missing_path_and_directory(tmp_path: Path) -> None:
    _refusal(tmp_path / "nope.jpg", "nope.jpg", "no such file")
    _refusal(tmp_path, str(tmp_path), "is a directory")


def test_too_large_checked_from_header(tmp_path: Path) -> None:
    p = tmp_path / "big.png"
    Image.new("L", (100, 100)).save(p)
    _refusal(p, "big.png", "too large", "100x100", "10,000 pixels", "5,000 pixels", max_pixels=5000)
    assert load_image(p, max_pixels=None).size == (100, 100)
    assert load_image(p, max_pixels=10_000).size == (100, 100)
    _refusal(Image.new("L", (100, 100)), "too large", max_pixels=5000)
    _refusal(np.zeros((100, 100), np.uint8), "too large", max_pixels=5000)


def test_pillow_bomb_warning_becomes_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Pillow's own guard fires inside Image.open (warning above MAX_IMAGE_PIXELS, error above twice that).
    p = tmp_path / "bomb.png"
    Image.new("L", (100, 100)).save(p)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 6000)  # 10,000 pixels: warning zone
    _refusal(p, "bomb.png", "too large", "10,000 pixels", "5,000 pixels", max_pixels=5000)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 4000)  # 10,000 > 2*4000: Pillow's hard error
    _refusal(p, "too large", "10,000 pixels", "5,000 pixels", max_pixels=5000)
    _refusal(p, "too large", "10,000 pixels", "8,000 pixels", max_pixels=None)


def test_pillow_bomb_warning_respects_larger_max_pixels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = tmp_path / "ok.png"
    Image.new("L", (100, 100)).save(p)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 6000)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing may leak out of the load
        assert load_image(p, max_pixels=20_000).size == (100, 100)


def test_zero_sized_pil_image() -> None:
    _refusal(Image.new("RGB", (0, 5)), "zero width or height")


@pytest.mark.parametrize(
    "arr,words",
    [
        (np.zeros((2, 2, 2, 3), np.uint8), ["shape (2, 2, 2, 3)", "allowed"]),
        (np.zeros(5, np.uint8), ["shape (5,)", "allowed"]),
        (np.zeros((5, 6, 2), np.uint8), ["shape (5, 6, 2) with 2 channels", "allowed"]),
        (np.zeros((2, 5, 6), np.uint8), ["shape (2, 5, 6) with 2 channels", "allowed"]),
        (np.zeros((0, 6, 3), np.uint8), ["no pixels"]),
        (np.full((2, 2), 2.0, np.float32), ["float arrays must be in [0,1]"]),
        (np.array([[0.5, np.nan]]), ["NaN"]),
        (np.array([[0, 300]], np.int32), ["0..255"]),
        (np.array([[1 + 1j]]), ["dtype complex128 is not supported"]),
    ],
)
def test_bad_arrays(arr: np.ndarray, words: list[str]) -> None:
    _refusal(arr, "<array>", *words)


def test_name_overrides_source_and_unsupported_type() -> None:
    _refusal(b"", "shard-3/img.png", name="shard-3/img.png")
    _refusal(12345, "unsupported source type int")


def test_errors_are_unilip_errors(tmp_path: Path) -> None:
    with pytest.raises(UniLIPError):
        load_image(tmp_path / "missing.png")


def test_pillow_global_state_unchanged(tmp_path: Path) -> None:
    before = (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES)
    good = tmp_path / "g.png"
    Image.new("RGB", (4, 4)).save(good)
    bad = tmp_path / "b.png"
    bad.write_bytes(good.read_bytes()[:40])
    load_image(good)
    for src, kw in ((bad, {}), (good, {"max_pixels": 4})):
        with pytest.raises(ImageLoadError):
            load_image(src, **kw)
    assert (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES) == before
    assert before[1] is False


# ---------------------------------------------------------------------------------------------- folders, skipping


def _folder_with_good_and_bad(root: Path) -> None:
    (root / "sub").mkdir()
    Image.new("RGB", (3, 3), (1, 2, 3)).save(root / "a.png")
    Image.new("RGB", (3, 3)).save(root / "B.JPG")
    Image.new("L", (3, 3)).save(root / "sub" / "c.bmp")
    (root / "d.png").write_bytes(b"")
    (root / "sub" / "e.jpg").write_text("not a jpeg")
    (root / "readme.txt").write_text("ignored: not an image suffix")


def test_list_image_files(tmp_path: Path) -> None:
    _folder_with_good_and_bad(tmp_path)
    names = [p.relative_to(tmp_path).as_posix() for p in list_image_files(tmp_path)]
    assert names == sorted(names) and set(names) == {"a.png", "B.JPG", "d.png", "sub/c.bmp", "sub/e.jpg"}
    assert {p.name for p in list_image_files(tmp_path, recursive=False)} == {"a.png", "B.JPG", "d.png"}
    assert {".png", ".jpg", ".jpeg", ".webp", ".tiff"} <= IMAGE_EXTENSIONS
    with pytest.raises(UniLIPError, match="does not exist"):
        list_image_files(tmp_path / "nope")
    with pytest.raises(UniLIPError, match="not a folder"):
        list_image_files(tmp_path / "a.png")


def test_iter_images_skips_bad_files_with_counted_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    _folder_with_good_and_bad(tmp_path)
    counter = SkipCounter(what="images")
    with caplog.at_level(logging.WARNING, logger="unilip.data"):
        got = list(iter_images(list_image_files(tmp_path), counter=counter))
    assert sorted(p.name for p, _ in got) == ["B.JPG", "a.png", "c.bmp"]
    assert all(img.mode == "RGB" for _, img in got)
    assert counter.count == 2 and counter.seen == 5
    assert counter.summary().startswith("skipped 2 of 5 images (first: cannot read image ")
    warnings_logged = [r.getMessage() for r in caplog.records if r.name == "unilip.data"]
    assert len(warnings_logged) == 2
    assert "(1 images skipped so far)" in warnings_logged[0] and "d.png" in warnings_logged[0]
    assert "(2 images skipped so far)" in warnings_logged[1] and "e.jpg" in warnings_logged[1]


def test_iter_images_without_counter_logs_summary(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    _folder_with_good_and_bad(tmp_path)
    with caplog.at_level(logging.WARNING, logger="unilip.data"):
        assert len(list(iter_images(list_image_files(tmp_path), max_pixels=DEFAULT_MAX_PIXELS))) == 3
    assert any(r.getMessage().startswith("skipped 2 of 5 images") for r in caplog.records)


def test_skip_counter_summary_and_examples() -> None:
    c = SkipCounter(what="frames", max_examples=2)
    for _ in range(3):
        c.ok()
    for i in range(3):
        c.skip(ImageLoadError(f"f{i}.png", "empty file (0 bytes)"))
    assert c.count == 3 and c.seen == 6 and len(c.examples) == 2
    assert c.summary() == "skipped 3 of 6 frames (first: cannot read image f0.png: empty file (0 bytes))"
    assert SkipCounter().summary() == "skipped 0 of 0 images"


def test_module_does_not_import_torch() -> None:
    import subprocess
    import sys

    code = "import sys, unilip.data.images; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_extreme_aspect_ratios_are_refused_and_resizes_are_bounded() -> None:
    from unilip.data.loader import eval_transform

    strip = Image.new("RGB", (1, 50_000))
    with pytest.raises(ImageLoadError, match=r"strip: aspect ratio 1x50000 is more extreme than 32:1"):
        load_image(strip, name="strip")
    assert load_image(strip, max_aspect=None).size == (1, 50_000)  # the caller's choice stands
    assert load_image(Image.new("RGB", (320, 10))).size == (320, 10)  # 32:1 itself is fine
    tall = load_image(Image.new("RGB", (30, 900)))
    assert eval_transform(tall, 64).shape == (3, 64, 64)
    with pytest.raises(ImageLoadError, match=r"would make 4096x122880 pixels, over the limit of 64,000,000"):
        eval_transform(tall, 4096)  # refused before Pillow allocates 1.5 GB
