"""The batches every trainer reads: a step-indexed, exactly resumable image loader, plus its transforms.

Why step-indexed: training is counted in steps, checkpoints are taken at steps, and a run resumed at step k must
see exactly the batches an uninterrupted run sees from step k on. So the sample at every *global position* of the
data stream is a pure function of (seed, position), the positions of a step are a pure function of (step, rank,
world size), and nothing depends on how many workers ran, how often the loader was restarted, or which images
failed before. The rules, for per-process batch ``B``, ``W`` processes and global batch ``G = B * W``:

* **Map-style sources** (folders, manifests, mini-world datasets). Global step ``s`` covers global positions
  ``[s*G, (s+1)*G)``, and rank ``r`` takes the contiguous slice ``[s*G + r*B, s*G + (r+1)*B)``. Position ``p``
  lies in epoch ``e = p // N`` (``N = len(source)``) and reads item ``perm_e[p % N]``, ``perm_e`` being the
  permutation of ``range(N)`` drawn by ``np.random.default_rng([seed, e])``. Generated (``infinite``) sources
  and ``train=False`` skip the permutation: item ``p % N``.
* **Webdataset sources** are read front to back, looping over the shards forever. Position ``p`` is the ``p``-th
  image of that endless stream, and goes to rank ``p % W`` (round-robin), so rank ``r`` takes positions
  ``s*G + j*W + r`` for ``j < B`` at step ``s``. Resuming at step ``k`` skips ``k*G`` stream items unread by the
  decoder (whole epochs are skipped without reading once the epoch length is known).
* **Augmentation** of position ``p`` draws from ``np.random.default_rng([seed, p, 7])`` only.
* **Bad images** never stop a run. A position whose image cannot be read takes the image of the next position
  that can (map-style: the next items of the same epoch's order, wrapping to its start; webdataset: the next
  items of the stream), keeps its own augmentation, is counted in :attr:`ResumableImageLoader.skipped` and logged
  as a warning. Only when no image at all can be read is it an error (:class:`UniLIPError`).

Changing the world size while keeping ``G`` keeps every step's global batch (map-style: identical content and
order across the concatenated ranks; webdataset: the same set of images).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import (
    DataLoader,
    Dataset,
    IterableDataset,
    Sampler,
    get_worker_info,
)

from unilip.checks import MAX_RESIZED_PIXELS
from unilip.data.images import SkipCounter
from unilip.data.sources import ImageSource, decode_item
from unilip.errors import ConfigError, ImageLoadError, UniLIPError

__all__ = ["ResumableImageLoader", "eval_transform", "pil_to_tensor", "resize_shorter_side", "train_transform"]

logger = logging.getLogger("unilip.data")

# The third key of the per-sample augmentation seed, so these streams never coincide with the permutation
# streams default_rng([seed, epoch]) for any (seed, position).
_AUGMENT_STREAM = 7

CROPS = ("random", "center")

# (source, reason) of an ImageLoadError: exceptions built with custom __init__ arguments do not survive pickling
# out of a DataLoader worker, so errors travel as plain tuples and are rebuilt in the main process.
_ErrorRecord = tuple[str, str]


# --------------------------------------------------------------------------------------------------------------
# transforms
# --------------------------------------------------------------------------------------------------------------


def resize_shorter_side(img: Image.Image, size: int) -> Image.Image:
    """Resize so the shorter side is ``size`` pixels (aspect kept), bicubic.

    Pillow's ``resize`` filters with a support scaled by the reduction factor, i.e. it antialiases when it
    downscales (the official UniLIP data pipeline uses bicubic with ``antialias=True``). ``reducing_gap=None``
    keeps it exact: no cheaper box pre-reduction.
    """
    w, h = img.size
    if min(w, h) == size:
        return img
    if w <= h:
        new = (size, max(size, round(h * size / w)))
    else:
        new = (max(size, round(w * size / h)), size)
    if new[0] * new[1] > MAX_RESIZED_PIXELS:  # bounded before Pillow allocates it
        raise ImageLoadError(getattr(img, "filename", "") or f"<{w}x{h} image>",
                             f"resizing its shorter side to {size} px would make {new[0]}x{new[1]} pixels, over the "
                             f"limit of {MAX_RESIZED_PIXELS:,}; use a smaller size or a less elongated image")
    return img.resize(new, Image.BICUBIC, reducing_gap=None)


def pil_to_tensor(img: Image.Image) -> torch.Tensor:
    """RGB PIL image -> float tensor (3, H, W) in [0, 1]."""
    arr = np.array(img.convert("RGB") if img.mode != "RGB" else img, dtype=np.uint8)  # (H, W, 3), writable copy
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous().float().div_(255.0)  # (3, H, W)


def train_transform(
    img: Image.Image, size: int, rng: np.random.Generator, crop: str = "random", flip: bool = True
) -> torch.Tensor:
    """Training augmentation: resize the shorter side to ``size``, crop ``size`` x ``size``, maybe flip.

    Args:
        img: an RGB image.
        size: output side in pixels.
        rng: the only source of randomness (the loader passes one seeded by the sample's position). Three draws,
            always in the same order (crop x, crop y, flip), whatever ``crop`` and ``flip`` say.
        crop: ``"random"`` (uniform offset) or ``"center"``.
        flip: mirror left-right with probability 0.5.

    Returns:
        float tensor (3, size, size) in [0, 1].
    """
    if crop not in CROPS:
        raise ConfigError(f"crop: unknown crop {crop!r}; allowed: {list(CROPS)}")
    img = resize_shorter_side(img, size)
    w, h = img.size
    dx, dy = int(rng.integers(0, w - size + 1)), int(rng.integers(0, h - size + 1))
    do_flip = bool(rng.random() < 0.5)
    if crop == "center":
        dx, dy = (w - size) // 2, (h - size) // 2
    img = img.crop((dx, dy, dx + size, dy + size))
    if flip and do_flip:
        img = img.transpose(Image.FLIP_LEFT_RIGHT)
    return pil_to_tensor(img)


def eval_transform(img: Image.Image, size: int) -> torch.Tensor:
    """Evaluation preprocessing: resize the shorter side to ``size``, centre crop; deterministic.

    Matches the official evaluation's Resize + CenterCrop. Returns a float tensor (3, size, size) in [0, 1].
    """
    img = resize_shorter_side(img, size)
    w, h = img.size
    dx, dy = (w - size) // 2, (h - size) // 2
    return pil_to_tensor(img.crop((dx, dy, dx + size, dy + size)))


def squash_transform(img: Image.Image, size: int) -> torch.Tensor:
    """Both sides to ``size`` (the aspect not kept), Pillow's bicubic: the official edit pipeline's preprocessing of a
    source image (``image.resize((448, 448))``). Returns a float tensor (3, size, size) in [0, 1]."""
    if img.size != (size, size):
        img = img.resize((size, size), Image.Resampling.BICUBIC, reducing_gap=None)
    return pil_to_tensor(img)


# --------------------------------------------------------------------------------------------------------------
# position -> tensor, shared by both source kinds
# --------------------------------------------------------------------------------------------------------------


class _Augment:
    """The transform of one global position: a pure function of (seed, position, image)."""

    def __init__(self, seed: int, image_size: int, train: bool, flip: bool):
        self.seed, self.image_size, self.train, self.flip = seed, image_size, train, flip

    def __call__(self, img: Image.Image, position: int) -> torch.Tensor:
        if not self.train:
            return eval_transform(img, self.image_size)
        rng = np.random.default_rng([self.seed, position, _AUGMENT_STREAM])
        return train_transform(img, self.image_size, rng, crop="random", flip=self.flip)


def _record(err: ImageLoadError) -> _ErrorRecord:
    return (err.source, err.reason)


# --------------------------------------------------------------------------------------------------------------
# map-style sources: a Dataset over global positions and a sampler of the rank's positions per step
# --------------------------------------------------------------------------------------------------------------


class _PositionDataset(Dataset):
    """Item = a global position; returns (image tensor (3,S,S), error records of the bad images it passed)."""

    def __init__(self, source: ImageSource, seed: int, augment: _Augment, shuffle: bool):
        self.source = source
        self.n = len(source)
        self.seed = seed
        self.augment = augment
        self.shuffle = shuffle
        self._perms: dict[int, np.ndarray] = {}  # the last two epochs' orders (a step may straddle an epoch end)

    def _order(self, epoch: int) -> np.ndarray | None:
        if not self.shuffle:
            return None
        if epoch not in self._perms:
            if len(self._perms) >= 2:
                self._perms.pop(min(self._perms))
            self._perms[epoch] = np.random.default_rng([self.seed, epoch]).permutation(self.n)
        return self._perms[epoch]

    def __getitem__(self, position: int) -> tuple[torch.Tensor, list[_ErrorRecord]]:
        epoch, offset = divmod(position, self.n)
        order = self._order(epoch)
        errors: list[_ErrorRecord] = []
        # A bad image is replaced by the next item of the same epoch's order, wrapping: after n tries every item
        # has been tried once, so nothing at all is readable.
        for k in range(self.n):
            slot = (offset + k) % self.n
            index = int(order[slot]) if order is not None else slot
            try:
                img = self.source.load(index)
            except ImageLoadError as err:
                errors.append(_record(err))
                continue
            return self.augment(img, position), errors
        first = f"; first: {errors[0][0]}: {errors[0][1]}" if errors else ""
        raise UniLIPError(f"{self.source.name}: none of its {self.n} images can be read{first}")


class _StepPositions(Sampler[list[int]]):
    """Batch sampler: the rank's B positions of step start, start + 1, ... (forever)."""

    def __init__(self, start_step: int, batch_size: int, rank: int, world_size: int):
        self.start_step, self.batch_size, self.rank, self.world_size = start_step, batch_size, rank, world_size

    def __iter__(self) -> Iterator[list[int]]:
        step = self.start_step
        global_batch = self.batch_size * self.world_size
        while True:
            first = step * global_batch + self.rank * self.batch_size
            yield list(range(first, first + self.batch_size))
            step += 1


def _collate(items: list[tuple[torch.Tensor, list[_ErrorRecord]]]) -> tuple[torch.Tensor, list[_ErrorRecord]]:
    return torch.stack([t for t, _ in items]), [e for _, errs in items for e in errs]  # (B, 3, S, S)


# --------------------------------------------------------------------------------------------------------------
# iterable sources: each worker reads the stream and builds the batches of its own steps
# --------------------------------------------------------------------------------------------------------------


class _StreamBatches(IterableDataset):
    """Batches of the rank's round-robin positions, one per step; worker w of n builds steps start + w + k*n.

    A DataLoader asks its workers for batches in turn (0, 1, ..., n-1, 0, ...) and returns them in that order, so
    the loader sees steps in order whatever the number of workers. Every worker reads the whole stream, but only
    decodes the positions it needs.
    """

    def __init__(self, source: ImageSource, augment: _Augment, start_step: int, batch_size: int, rank: int, world_size: int):
        self.source, self.augment = source, augment
        self.start_step, self.batch_size, self.rank, self.world_size = start_step, batch_size, rank, world_size

    def _my_positions(self, worker: int, num_workers: int) -> Iterator[int]:
        B, W = self.batch_size, self.world_size
        step = self.start_step + worker
        while True:
            for j in range(B):
                yield step * B * W + j * W + self.rank
            step += num_workers

    def __iter__(self) -> Iterator[tuple[torch.Tensor, list[_ErrorRecord]]]:
        info = get_worker_info()
        worker, num_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        wanted = self._my_positions(worker, num_workers)
        next_wanted = next(wanted)
        pending: list[int] = []  # wanted positions still waiting for a readable image (oldest first)
        done: list[torch.Tensor] = []
        errors: list[_ErrorRecord] = []
        epoch_len: int | None = None
        q = 0  # global stream position of the next item
        while True:
            if epoch_len and not pending and next_wanted - q >= epoch_len:
                q += (next_wanted - q) // epoch_len * epoch_len  # whole epochs nobody here needs: not even read
            count = 0
            for item in self.source.encoded():
                count += 1
                if q == next_wanted:
                    pending.append(q)
                    next_wanted = next(wanted)
                if pending:
                    try:
                        img = decode_item(item)
                    except ImageLoadError as err:
                        errors.append(_record(err))
                        if epoch_len is not None and q - pending[0] >= epoch_len:
                            raise UniLIPError(f"{self.source.name}: no image in the whole stream can be read") from None
                    else:
                        done.extend(self.augment(img, p) for p in pending)
                        pending.clear()
                        while len(done) >= self.batch_size:
                            yield torch.stack(done[: self.batch_size]), errors  # (B, 3, S, S)
                            done, errors = done[self.batch_size :], []
                q += 1
            if epoch_len is None:
                if count == 0:
                    raise UniLIPError(f"{self.source.name}: the shards hold no samples")
                epoch_len = count


# --------------------------------------------------------------------------------------------------------------
# the loader
# --------------------------------------------------------------------------------------------------------------


class ResumableImageLoader:
    """Endless batches (B, 3, S, S) in [0, 1] whose order is a pure function of (seed, step, rank, world_size).

    See the module docstring for the exact order. Iterating yields batches for steps ``start_step``,
    ``start_step + 1``, ... forever (training is step-based); :meth:`state_dict` records the next step, and a
    loader built with ``start_step=state["step"]`` (or given the state through :meth:`load_state_dict`) yields
    exactly the batches the uninterrupted loader would have yielded next.

    Args:
        source: an :class:`ImageSource` (see :func:`unilip.data.sources.open_source`).
        batch_size: images per process per step (B).
        image_size: output side S in pixels.
        seed: decides the epoch orders and every augmentation.
        rank, world_size: this process and the number of processes; ranks get disjoint positions.
        train: random crop (+ flip) and shuffled epochs; ``False`` gives resize + centre crop in source order.
        flip: random horizontal flips (training only).
        num_workers: DataLoader worker processes; the batches do not depend on it.
        start_step: the first step to yield.
    """

    def __init__(
        self,
        source: ImageSource,
        batch_size: int,
        image_size: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        train: bool = True,
        flip: bool = True,
        num_workers: int = 0,
        start_step: int = 0,
    ):
        _check_args(batch_size, image_size, seed, rank, world_size, num_workers, start_step)
        if not source.iterable and len(source) == 0:
            raise UniLIPError(f"{source.name}: holds no images")
        self.source = source
        self.batch_size, self.image_size, self.seed = batch_size, image_size, seed
        self.rank, self.world_size = rank, world_size
        self.train, self.flip, self.num_workers = train, flip, num_workers
        self.step = start_step  # the next step __iter__ yields
        self.skipped = SkipCounter(what="images")

    @property
    def global_batch_size(self) -> int:
        """Images per step over all processes (B * W)."""
        return self.batch_size * self.world_size

    def steps_per_epoch(self) -> int:
        """Steps that cover a map-style source once (the last one wraps into the next epoch)."""
        if self.source.iterable:
            raise TypeError(f"{self.source.name} is a stream; its epoch length is not known in advance")
        return -(-len(self.source) // self.global_batch_size)

    def _dataloader(self) -> DataLoader:
        augment = _Augment(self.seed, self.image_size, self.train, self.flip)
        common: dict[str, Any] = {"num_workers": self.num_workers, "persistent_workers": False}
        if self.source.iterable:
            stream = _StreamBatches(self.source, augment, self.step, self.batch_size, self.rank, self.world_size)
            return DataLoader(stream, batch_size=None, **common)
        shuffle = self.train and not self.source.infinite
        dataset = _PositionDataset(self.source, self.seed, augment, shuffle)
        sampler = _StepPositions(self.step, self.batch_size, self.rank, self.world_size)
        return DataLoader(dataset, batch_sampler=sampler, collate_fn=_collate, **common)

    def __iter__(self) -> Iterator[torch.Tensor]:
        """Batches (B, 3, S, S) for steps self.step, self.step + 1, ... (one iteration at a time, please)."""
        for batch, errors in self._dataloader():
            for source, reason in errors:
                self.skipped.skip(ImageLoadError(source, reason))  # logs the warning in the main process
            for _ in range(len(batch)):
                self.skipped.ok()
            self.step += 1
            yield batch

    def state_dict(self) -> dict[str, Any]:
        """What resumes this loader: the next step plus the settings the order depends on."""
        return {
            "step": self.step,
            "seed": self.seed,
            "batch_size": self.batch_size,
            "world_size": self.world_size,
            "image_size": self.image_size,
            "source": self.source.name,
            "skipped": self.skipped.count,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue at ``state["step"]``; refuse a state whose seed or global batch would give another order."""
        if state["seed"] != self.seed:
            raise ConfigError(f"seed: the saved loader used seed {state['seed']}, this one {self.seed}; the order would differ")
        saved_global = state["batch_size"] * state["world_size"]
        if saved_global != self.global_batch_size:
            raise ConfigError(
                f"batch_size: the saved loader used a global batch of {saved_global} images per step, this one "
                f"{self.global_batch_size}; resuming would skip or repeat data"
            )
        self.step = int(state["step"])


def _check_args(batch_size: int, image_size: int, seed: int, rank: int, world_size: int, num_workers: int, start_step: int) -> None:
    if batch_size < 1:
        raise ConfigError(f"batch_size: must be at least 1 (got {batch_size})")
    if image_size < 1:
        raise ConfigError(f"image_size: must be at least 1 pixel (got {image_size})")
    if seed < 0:
        raise ConfigError(f"seed: must be non-negative (got {seed}); numpy seeds are unsigned")
    if world_size < 1 or not 0 <= rank < world_size:
        raise ConfigError(f"rank: must be in [0, world_size={world_size}) (got {rank})")
    if num_workers < 0:
        raise ConfigError(f"num_workers: must be non-negative (got {num_workers})")
    if start_step < 0:
        raise ConfigError(f"start_step: must be non-negative (got {start_step})")
