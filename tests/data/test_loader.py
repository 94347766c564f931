"""Tests for unilip.data.loader: transforms, and batches that are a pure function of (seed, step, rank, world)."""

from __future__ import annotations

import itertools
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from unilip.data.loader import ResumableImageLoader, eval_transform, train_transform
from unilip.data.sources import ImageSource, open_source
from unilip.errors import ConfigError, ImageLoadError, UniLIPError

from .test_sources import write_folder, write_shards

S = 8  # output side: tiny, the tests are about order, not pixels


def take(loader: ResumableImageLoader, n: int) -> list[torch.Tensor]:
    return list(itertools.islice(loader, n))


class Numbered(ImageSource):
    """A map-style source whose item i is a flat image of value i (so a batch tells which items it holds)."""

    def __init__(self, n: int, bad: frozenset[int] = frozenset()):
        self.n, self.bad, self.name = n, bad, "numbered"

    def __len__(self) -> int:
        return self.n

    def load(self, index: int) -> Image.Image:
        if index in self.bad:
            raise ImageLoadError(f"item{index}", "broken on purpose")
        return Image.new("RGB", (S, S), (index, index, index))


def ids(batch: torch.Tensor) -> list[int]:
    """Item values of a Numbered batch (flat images, so flips and crops do not change them)."""
    return [round(float(v) * 255) for v in batch[:, 0, 0, 0]]


def shard_id(img: torch.Tensor) -> int:
    """Which image of write_shards this is: image i is flat grey (37 * i) % 256, but for one pixel."""
    grey = float(img[1].median()) * 255
    return min(range(7), key=lambda i: abs((37 * i) % 256 - grey))


def loader(source, **kw) -> ResumableImageLoader:
    args = {"batch_size": 3, "image_size": S, "seed": 0} | kw
    return ResumableImageLoader(source, **args)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return write_folder(tmp_path_factory.mktemp("data") / "imgs", 7)


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    return write_shards(tmp_path_factory.mktemp("data") / "shards", [4, 3])


# ---------------------------------------------------------------------------------------------- transforms


def test_train_transform_shape_range_and_rng_only():
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (30, 50, 3), dtype=np.uint8))
    out = train_transform(img, 16, np.random.default_rng(1))
    assert out.shape == (3, 16, 16) and out.dtype == torch.float32
    assert 0.0 <= float(out.min()) and float(out.max()) <= 1.0
    assert torch.equal(out, train_transform(img, 16, np.random.default_rng(1)))
    crops = {train_transform(img, 16, np.random.default_rng(k), flip=False).sum().item() for k in range(8)}
    assert len(crops) > 1  # the crop really is random across rngs


def test_train_transform_flip_mirrors():
    img = Image.fromarray(np.tile(np.arange(16, dtype=np.uint8)[None, :, None] * 10, (16, 1, 3)))
    outs = [train_transform(img, 16, np.random.default_rng(k)) for k in range(10)]
    plain = train_transform(img, 16, np.random.default_rng(0), flip=False)
    assert any(torch.equal(o, plain.flip(-1)) for o in outs) and any(torch.equal(o, plain) for o in outs)


def test_eval_transform_is_deterministic_centre_crop():
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 60, 3), dtype=np.uint8))
    a, b = eval_transform(img, 20), eval_transform(img, 20)
    assert a.shape == (3, 20, 20) and torch.equal(a, b)
    assert 0.0 <= float(a.min()) and float(a.max()) <= 1.0
    center = train_transform(img, 20, np.random.default_rng(5), crop="center", flip=False)
    assert torch.equal(a, center)
    with pytest.raises(ConfigError, match="crop"):
        train_transform(img, 20, np.random.default_rng(0), crop="middle")


# ---------------------------------------------------------------------------------------------- order


def test_map_style_order_is_the_seeded_permutation():
    src = Numbered(10)
    got = [i for b in take(loader(src, batch_size=4), 5) for i in ids(b)]  # 20 positions = 2 epochs
    perm0 = np.random.default_rng([0, 0]).permutation(10).tolist()
    perm1 = np.random.default_rng([0, 1]).permutation(10).tolist()
    assert got == perm0 + perm1


def test_same_seed_same_batches_other_seed_differs(folder: Path):
    src = open_source(str(folder))
    a, b, c = (take(loader(src, seed=s), 4) for s in (3, 3, 4))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not all(torch.equal(x, y) for x, y in zip(a, c))


def test_resume_map_style_is_exact(folder: Path):
    src = open_source(str(folder))
    full = take(loader(src), 8)
    resumed = take(loader(src, start_step=3), 5)
    assert all(torch.equal(x, y) for x, y in zip(full[3:], resumed, strict=True))


def test_state_dict_resumes_where_iteration_stopped(folder: Path):
    src = open_source(str(folder))
    first = loader(src)
    it = iter(first)
    for _ in range(4):
        next(it)
    state = first.state_dict()
    assert state["step"] == 4 and state["seed"] == 0
    again = loader(src, start_step=state["step"])
    other = loader(src)
    other.load_state_dict(state)
    nxt = next(it)
    assert torch.equal(nxt, next(iter(again))) and torch.equal(nxt, next(iter(other)))
    with pytest.raises(ConfigError, match="seed"):
        loader(src, seed=1).load_state_dict(state)
    with pytest.raises(ConfigError, match="global batch"):
        loader(src, batch_size=2).load_state_dict(state)


def test_two_ranks_are_disjoint_and_cover_the_global_batch():
    src = Numbered(40)
    single = take(loader(src, batch_size=4), 3)
    ranks = [take(loader(src, batch_size=2, rank=r, world_size=2), 3) for r in (0, 1)]
    for step in range(3):
        r0, r1 = ids(ranks[0][step]), ids(ranks[1][step])
        assert not set(r0) & set(r1)
        assert r0 + r1 == ids(single[step])  # contiguous slices of the same global batch
        assert torch.equal(torch.cat([ranks[0][step], ranks[1][step]]), single[step])


def test_workers_do_not_change_the_batches(folder: Path, shards: Path):
    for spec in (str(folder), str(shards)):
        src = open_source(spec)
        a = take(loader(src, num_workers=0, start_step=1), 5)
        b = take(loader(src, num_workers=2, start_step=1), 5)
        assert all(torch.equal(x, y) for x, y in zip(a, b)), spec


def test_generated_miniworld_source_uses_positions_directly():
    src = open_source("miniworld:train")
    batch = take(loader(src, batch_size=2, image_size=16, train=False), 2)[1]
    expect = torch.stack([eval_transform(src.load(i), 16) for i in (2, 3)])
    assert torch.equal(batch, expect)
    assert batch.shape == (2, 3, 16, 16)


def test_eval_mode_reads_in_source_order():
    got = [i for b in take(loader(Numbered(5), batch_size=2, train=False), 3) for i in ids(b)]
    assert got == [0, 1, 2, 3, 4, 0]


# ---------------------------------------------------------------------------------------------- webdataset


def test_wds_round_robin_and_loops_forever(shards: Path):
    src = open_source(str(shards))  # 7 images, ids 0..6
    batches = take(loader(src, batch_size=2), 5)  # 10 positions: wraps into the second epoch
    assert [shard_id(img) for batch in batches for img in batch] == [0, 1, 2, 3, 4, 5, 6, 0, 1, 2]
    r0 = take(loader(src, batch_size=2, rank=0, world_size=2), 3)
    r1 = take(loader(src, batch_size=2, rank=1, world_size=2), 3)
    single = take(loader(src, batch_size=4), 3)
    for s in range(3):  # rank r takes positions s*4 + j*2 + r: together, the single-process global batch
        assert torch.equal(torch.stack([r0[s][0], r1[s][0], r0[s][1], r1[s][1]]), single[s])


def test_resume_wds_is_exact(shards: Path):
    src = open_source(str(shards))
    full = take(loader(src, batch_size=2), 12)  # 24 positions, more than three epochs of 7
    for start in (3, 8):  # 8: positions from 16 on, so whole epochs are skipped unread
        resumed = take(loader(src, batch_size=2, start_step=start), 12 - start)
        assert all(torch.equal(x, y) for x, y in zip(full[start:], resumed, strict=True))


def test_wds_bad_member_is_replaced_and_counted(tmp_path: Path, caplog):
    root = write_shards(tmp_path / "shards", [5], bad={1})
    ld = loader(open_source(str(root)), batch_size=2, train=False)
    with caplog.at_level(logging.WARNING, logger="unilip.data"):
        batches = take(ld, 3)
    assert torch.equal(batches[0][1], batches[1][0])  # position 1 took the image of position 2
    assert ld.skipped.count >= 1 and "skipping a bad input" in caplog.text


def test_wds_all_bad_raises(tmp_path: Path):
    root = write_shards(tmp_path / "shards", [3], bad={0, 1, 2})
    with pytest.raises(UniLIPError, match="no image"):
        take(loader(open_source(str(root)), batch_size=2), 1)


# ---------------------------------------------------------------------------------------------- bad images


def test_corrupt_file_in_folder_costs_a_warning_not_the_run(tmp_path: Path, caplog):
    root = write_folder(tmp_path / "imgs", 5)
    (root / "broken.png").write_bytes(b"\x89PNG this is not a png")
    (root / "empty.png").write_bytes(b"")
    ld = loader(open_source(str(root)), batch_size=4, num_workers=2)
    with caplog.at_level(logging.WARNING, logger="unilip.data"):
        batches = take(ld, 6)  # 24 positions: every file is hit several times
    assert all(b.shape == (4, 3, S, S) for b in batches)
    assert ld.skipped.count >= 2
    assert "broken.png" in caplog.text and ld.state_dict()["skipped"] == ld.skipped.count


def test_bad_item_takes_the_next_item_of_the_epoch_order():
    src = Numbered(6, bad=frozenset({2}))
    got = [i for b in take(loader(src, batch_size=6, train=False), 1) for i in ids(b)]
    assert got == [0, 1, 3, 3, 4, 5]


def test_nothing_readable_raises():
    with pytest.raises(UniLIPError, match="none of its 3 images"):
        take(loader(Numbered(3, bad=frozenset({0, 1, 2}))), 1)


@pytest.mark.parametrize(
    "kw, key",
    [({"batch_size": 0}, "batch_size"), ({"rank": 2, "world_size": 2}, "rank"), ({"start_step": -1}, "start_step"),
     ({"num_workers": -1}, "num_workers"), ({"seed": -1}, "seed")],
)
def test_bad_arguments_name_the_key(kw, key):
    with pytest.raises(ConfigError, match=key):
        loader(Numbered(3), **kw)
