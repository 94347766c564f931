"""Dataset writer and reader: both formats round-trip, records are reproducible, bad files are skipped."""

import json
import logging
import tarfile

import numpy as np
import pytest

from unilip.data.miniworld import MiniWorldConfig, render
from unilip.data.miniworld.dataset import TASKS, MiniWorldDataset, make_records, write_dataset
from unilip.errors import ConfigError, UniLIPError

CFG = MiniWorldConfig()


@pytest.mark.parametrize("fmt", ["folder", "wds"])
@pytest.mark.parametrize("task", TASKS)
def test_round_trip(tmp_path, task, fmt):
    out = write_dataset(tmp_path / "ds", task, 6, CFG, split="val", start=3, fmt=fmt, shard_size=4)
    info = json.loads((out / "dataset.json").read_text())
    assert (info["task"], info["split"], info["start"], info["n"], info["format"]) == (task, "val", 3, 6, fmt)
    if fmt == "wds":
        assert len(list(out.glob("*.tar"))) == 2
    expected = list(make_records(task, CFG, "val", 3, 6))
    samples = list(MiniWorldDataset(out))
    assert [s["id"] for s in samples] == [r["id"] for r in expected]
    for s, r in zip(samples, expected):
        assert s["scene"] == r["scene"]
        if task == "edit":
            assert s["target"] == r["target"] and s["instruction"] == r["instruction"]
            assert np.array_equal(s["source_image"], render(r["scene"], CFG))
            assert np.array_equal(s["target_image"], render(r["target"], CFG))
        else:
            assert np.array_equal(s["image"], render(r["scene"], CFG))
    assert not list(tmp_path.glob(".*partial"))


def test_records_are_independent_of_the_range():
    whole = list(make_records("vqa", CFG, "train", 0, 10))
    part = list(make_records("vqa", CFG, "train", 5, 5))
    assert [(r["id"], r["question"], r["answer"], r["scene"]) for r in whole[5:]] == [(r["id"], r["question"], r["answer"], r["scene"]) for r in part]


def test_image_size_and_indexing(tmp_path):
    out = write_dataset(tmp_path / "ds", "captions", 3, CFG, size=96)
    ds = MiniWorldDataset(out)
    assert len(ds) == 3 and ds[1]["image"].shape == (96, 96, 3) and isinstance(ds[1]["caption"], str)


def test_bad_image_in_folder_is_skipped_and_counted(tmp_path, caplog):
    out = write_dataset(tmp_path / "ds", "images", 4, CFG)
    (out / "images" / "train-000000001.png").write_bytes(b"")
    (out / "images" / "train-000000002.png").write_bytes(b"not a png at all")
    ds = MiniWorldDataset(out)
    with caplog.at_level(logging.WARNING, logger="unilip.data"):
        ids = [s["id"] for s in ds]
    assert ids == ["train-000000000", "train-000000003"]
    assert ds.skipped.count == 2 and ds.skipped.summary().startswith("skipped 2 of 4 records")
    assert ds[1]["id"] == "train-000000003"  # indexing a bad record gives the next good one
    assert "empty file" in caplog.text and "not an image" in caplog.text


def test_bad_member_in_shard_is_skipped(tmp_path):
    out = write_dataset(tmp_path / "ds", "images", 3, CFG, fmt="wds")
    shard = next(out.glob("*.tar"))
    with tarfile.open(shard) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]
    with tarfile.open(shard, "w") as tar:
        for m, data in members:
            if m.name == "train-000000001.png":
                data = data[: len(data) // 2]  # truncated PNG
                m.size = len(data)
            import io

            tar.addfile(m, io.BytesIO(data))
    ds = MiniWorldDataset(out)
    assert [s["id"] for s in ds] == ["train-000000000", "train-000000002"]
    assert ds.skipped.count == 1 and "train-000000001.png" in ds.skipped.summary()


def test_refuses_to_overwrite_and_bad_arguments(tmp_path):
    write_dataset(tmp_path / "ds", "images", 1, CFG)
    with pytest.raises(UniLIPError, match="already exists"):
        write_dataset(tmp_path / "ds", "images", 1, CFG)
    with pytest.raises(ConfigError, match="task"):
        write_dataset(tmp_path / "x", "poems", 1, CFG)
    with pytest.raises(ConfigError, match="format"):
        write_dataset(tmp_path / "x", "images", 1, CFG, fmt="zip")
    with pytest.raises(ConfigError, match="n: "):
        write_dataset(tmp_path / "x", "images", 0, CFG)
    with pytest.raises(UniLIPError, match="dataset.json"):
        MiniWorldDataset(tmp_path)
