"""Tests for unilip.data.sources: every spec kind opens, reads RGB images, and a bad spec says what was expected."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from unilip.data.miniworld.config import MiniWorldConfig
from unilip.data.miniworld.dataset import write_dataset
from unilip.data.miniworld.renderer import render_pil
from unilip.data.miniworld.scene import sample_scene, scene_seed
from unilip.data.sources import FileListSource, MiniWorldSource, WebDatasetSource, open_source
from unilip.errors import ImageLoadError, UniLIPError


def _image(i: int, size: tuple[int, int] = (20, 16)) -> Image.Image:
    """A small image whose pixels encode ``i`` (so tests can tell images apart)."""
    arr = np.full((size[1], size[0], 3), (i * 37) % 256, dtype=np.uint8)
    arr[0, 0] = (i % 256, 0, 255 - i % 256)
    return Image.fromarray(arr)


def _png(i: int) -> bytes:
    buf = io.BytesIO()
    _image(i).save(buf, format="PNG")
    return buf.getvalue()


def _id(img: Image.Image) -> int:
    return int(np.asarray(img)[0, 0, 0])


def write_folder(root: Path, n: int) -> Path:
    (root / "sub").mkdir(parents=True)
    for i in range(n):
        (root / ("sub" if i % 2 else "") / f"img{i:03d}.png").write_bytes(_png(i))
    return root


def write_shards(root: Path, counts: list[int], bad: set[int] = frozenset(), ext: str = "png") -> Path:
    """Tar shards shard-000.tar ... holding samples KEY.<ext> + KEY.json; sample indices in ``bad`` get junk bytes."""
    root.mkdir(parents=True, exist_ok=True)
    i = 0
    for s, count in enumerate(counts):
        with tarfile.open(root / f"shard-{s:03d}.tar", "w") as tar:
            for _ in range(count):
                for suffix, data in ((ext, b"not an image" if i in bad else _png(i)), ("json", json.dumps({"i": i}).encode())):
                    info = tarfile.TarInfo(f"{i:06d}.{suffix}")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
                i += 1
    return root


# ---------------------------------------------------------------------------------------------- each kind


def test_image_folder_is_recursive_sorted_and_rgb(tmp_path: Path):
    src = open_source(str(write_folder(tmp_path / "imgs", 5)))
    assert isinstance(src, FileListSource) and not src.iterable
    assert len(src) == 5
    ids = sorted(_id(src.load(i)) for i in range(5))
    assert ids == [0, 1, 2, 3, 4]
    assert src.load(0).mode == "RGB"


def test_jsonl_manifest_relative_absolute_and_metadata(tmp_path: Path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.png").write_bytes(_png(3))
    absolute = tmp_path / "y.png"
    absolute.write_bytes(_png(4))
    manifest = tmp_path / "list.jsonl"
    rows = [{"image": "a/x.png", "caption": "three"}, {}, {"path": str(absolute), "label": 4}, {"file": "a/x.png"}]
    manifest.write_text("\n".join("" if not r else json.dumps(r) for r in rows) + "\n")
    src = open_source(str(manifest))
    assert len(src) == 3
    assert [_id(src.load(i)) for i in range(3)] == [3, 4, 3]
    assert src.metadata(0)["caption"] == "three"
    assert src.metadata(1)["label"] == 4


def test_jsonl_manifest_errors_name_the_line(tmp_path: Path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"image": "a.png"}\n{"caption": "no path"}\n')
    with pytest.raises(UniLIPError, match="line 2"):
        open_source(str(bad))
    bad.write_text('{"image": "a.png"}\nnot json\n')
    with pytest.raises(UniLIPError, match="line 2.*not valid JSON"):
        open_source(str(bad))


def test_miniworld_generated_matches_render():
    cfg = MiniWorldConfig()
    src = open_source("miniworld:val", cfg)
    assert isinstance(src, MiniWorldSource) and src.infinite and len(src) >= 10**8
    expect = render_pil(sample_scene(cfg, scene_seed("val", 5), "val"), cfg)
    assert np.array_equal(np.asarray(src.load(5)), np.asarray(expect))
    with pytest.raises(UniLIPError, match="unknown split"):
        open_source("miniworld:nope")


def test_miniworld_folder_dataset(tmp_path: Path):
    out = write_dataset(tmp_path / "mw", "captions", 4, size=32)
    src = open_source(str(out))
    assert isinstance(src, FileListSource) and len(src) == 4
    assert src.load(2).size == (32, 32)


def test_miniworld_edit_dataset_gives_source_and_target(tmp_path: Path):
    out = write_dataset(tmp_path / "mw", "edit", 3, size=32)
    src = open_source(str(out))
    assert len(src) == 6
    assert [src.metadata(i)["role"] for i in range(2)] == ["source_file", "target_file"]
    wds_out = write_dataset(tmp_path / "mw_wds", "edit", 3, size=32, fmt="wds")
    wsrc = open_source(str(wds_out))
    assert isinstance(wsrc, WebDatasetSource)
    assert len(list(wsrc)) == 6


def test_webdataset_directory_and_patterns(tmp_path: Path):
    root = write_shards(tmp_path / "shards", [3, 2])
    for spec in (str(root), str(root / "shard-{000..001}.tar"), str(root / "shard-*.tar")):
        src = open_source(spec)
        assert src.iterable
        assert [_id(img) for img in src] == [0, 1, 2, 3, 4]
    with pytest.raises(TypeError):
        len(src)


def test_webdataset_other_extensions(tmp_path: Path):
    root = write_shards(tmp_path / "shards", [2], ext="jpg")
    assert len(list(open_source(str(root)))) == 2


def test_webdataset_bad_member_is_skipped_and_counted(tmp_path: Path):
    root = write_shards(tmp_path / "shards", [4], bad={1})
    src = open_source(str(root))
    assert [_id(img) for img in src] == [0, 2, 3]
    assert src.skipped.count == 1
    items = list(src.encoded())
    assert len(items) == 4 and isinstance(items[1], tuple)  # the bad member still holds its place


def test_webdataset_truncated_shard_does_not_stop_the_stream(tmp_path: Path):
    root = write_shards(tmp_path / "shards", [3, 3])
    with tarfile.open(root / "shard-000.tar") as tar:
        cut = tar.getmember("000001.png").offset_data + 10  # in the middle of the second image
    data = (root / "shard-000.tar").read_bytes()
    (root / "shard-000.tar").write_bytes(data[:cut])
    src = open_source(str(root))
    ids = [_id(img) for img in src]
    assert ids[-3:] == [3, 4, 5]
    assert src.skipped.count >= 1


def test_bad_image_in_folder_raises_image_load_error(tmp_path: Path):
    root = write_folder(tmp_path / "imgs", 2)
    (root / "zzz.png").write_bytes(b"garbage")
    src = open_source(str(root))
    with pytest.raises(ImageLoadError):
        src.load(len(src) - 1)


# ---------------------------------------------------------------------------------------------- bad specs


@pytest.mark.parametrize("spec", ["no/such/place", "nothing-{0..3}.tar", "x*.tar"])
def test_unknown_spec_says_what_was_expected(tmp_path: Path, spec: str, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UniLIPError, match="expected 'miniworld:SPLIT'|does not exist"):
        open_source(spec)


def test_other_files_and_empty_folders_are_refused(tmp_path: Path):
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(UniLIPError, match="expected"):
        open_source(str(tmp_path / "notes.txt"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(UniLIPError, match="no image files"):
        open_source(str(tmp_path / "empty"))


def test_folder_with_images_and_shards_is_ambiguous(tmp_path: Path):
    root = write_shards(tmp_path / "mix", [1])
    (root / "a.png").write_bytes(_png(0))
    with pytest.raises(UniLIPError, match="both"):
        open_source(str(root))


def test_first_images_of_an_indexed_source_and_of_a_short_stream(tmp_path):
    from unilip.data.sources import first_images, open_source

    world = open_source("miniworld:train")
    assert [im.tobytes() for im in first_images(world, 3)] == [world.load(i).tobytes() for i in range(3)]
    stream = open_source(str(write_shards(tmp_path / "shards", [3, 2])))
    assert [_id(im) for im in first_images(stream, 4)] == [0, 1, 2, 3]
    assert [_id(im) for im in first_images(stream, 100)] == [0, 1, 2, 3, 4]  # fewer than asked: all, no error
