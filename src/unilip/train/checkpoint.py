"""Training checkpoints: written atomically, read without unpickling anything, complete enough to resume exactly.

A checkpoint is a directory ``checkpoint-<step:07d>/``:

- ``model.safetensors`` (the whole trained module, frozen parts included), ``ema.safetensors``;
- ``optimizer.pt`` (``torch.save`` of the optimizer state; read back with ``weights_only=True``);
- ``aux_model.safetensors`` / ``aux_optimizer.pt`` when the task has a second objective (the GAN discriminator);
- ``rng-<rank>.json`` (Python, NumPy and torch generator states of every process) and ``state.json`` (step, data
  position, anything else the loop needs).

It is built as ``checkpoint-<step>.tmp`` and renamed when complete, so a run killed while saving leaves the previous
checkpoint as the newest one. The learning rate is a pure function of the step, so there is no scheduler state.
"""

from __future__ import annotations

import json
import os
import pickle
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_model, save_model
from torch import nn

from unilip.errors import UniLIPError

_PREFIX = "checkpoint-"


def rng_state() -> dict[str, Any]:
    """This process's generator states as JSON-able data."""
    np_state = np.random.get_state()
    state = {
        "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
        "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
        "torch": torch.get_rng_state().tolist(),
    }
    if torch.cuda.is_available():
        state["cuda"] = [s.tolist() for s in torch.cuda.get_rng_state_all()]
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), *rest))
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([torch.tensor(s, dtype=torch.uint8) for s in state["cuda"]])


def list_checkpoints(root: str | os.PathLike[str]) -> list[Path]:
    """Complete checkpoints under ``root``, oldest first (``.tmp`` leftovers of a killed save are ignored)."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and p.name.startswith(_PREFIX) and p.name[len(_PREFIX):].isdigit()]
    return sorted(found, key=lambda p: int(p.name[len(_PREFIX):]))


def write_checkpoint(
    root: Path,
    step: int,
    *,
    is_main: bool,
    rank: int,
    barrier,
    model: nn.Module,
    ema,
    optimizer: torch.optim.Optimizer,
    state: dict[str, Any],
    aux_model: nn.Module | None = None,
    aux_optimizer: torch.optim.Optimizer | None = None,
    keep: int = 2,
) -> Path:
    """Write ``checkpoint-<step>`` atomically from every process (each writes its RNG state), keep the newest ``keep``."""
    final = root / f"{_PREFIX}{step:07d}"
    tmp = root / f"{_PREFIX}{step:07d}.tmp"
    try:
        if is_main:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        barrier()
        (tmp / f"rng-{rank}.json").write_text(json.dumps(rng_state()))
        if is_main:
            save_model(model, str(tmp / "model.safetensors"))
            from safetensors.torch import save_file

            save_file(ema.state_dict(), str(tmp / "ema.safetensors"))
            torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
            if aux_model is not None:
                save_model(aux_model, str(tmp / "aux_model.safetensors"))
                torch.save(aux_optimizer.state_dict(), tmp / "aux_optimizer.pt")
            (tmp / "state.json").write_text(json.dumps({"step": step, **state}, indent=2))
    except (OSError, RuntimeError) as err:  # a full disk, a quota, a vanished folder: nothing half-written stays
        shutil.rmtree(tmp, ignore_errors=True)
        previous = list_checkpoints(root)
        reason = getattr(err, "strerror", None) or str(err)[:200]
        raise UniLIPError(f"cannot write the checkpoint of step {step} in {root} ({reason}); the partial {tmp.name} "
                          f"was removed and the newest checkpoint, {previous[-1].name if previous else 'none'}, is "
                          "intact: free space, then --resume") from err
    barrier()
    if is_main:
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        for old in list_checkpoints(root)[:-keep] if keep > 0 else []:
            shutil.rmtree(old, ignore_errors=True)
    barrier()
    return final


def read_checkpoint(
    path: Path,
    *,
    rank: int,
    model: nn.Module,
    ema,
    optimizer: torch.optim.Optimizer,
    aux_model: nn.Module | None = None,
    aux_optimizer: torch.optim.Optimizer | None = None,
) -> dict[str, Any]:
    """Restore everything written by :func:`write_checkpoint`; returns ``state.json``. Strict: a mismatch is an error."""
    try:
        missing, unexpected = load_model(model, str(path / "model.safetensors"), strict=False)
        if missing or unexpected:
            raise UniLIPError(f"checkpoint {path} does not match the model: missing {missing[:5]}, unexpected {unexpected[:5]}")
        from safetensors.torch import load_file

        ema.load_state_dict(load_file(str(path / "ema.safetensors")))
        optimizer.load_state_dict(torch.load(path / "optimizer.pt", map_location="cpu", weights_only=True))
        if aux_model is not None:
            load_model(aux_model, str(path / "aux_model.safetensors"))
            aux_optimizer.load_state_dict(torch.load(path / "aux_optimizer.pt", map_location="cpu", weights_only=True))
        rng_file = path / f"rng-{rank}.json"
        if not rng_file.is_file():
            raise UniLIPError(f"checkpoint {path} was written by fewer processes (no {rng_file.name}); resume with the same number")
        set_rng_state(json.loads(rng_file.read_text()))
        return json.loads((path / "state.json").read_text())
    except (OSError, ValueError, RuntimeError, KeyError, pickle.UnpicklingError) as err:
        raise UniLIPError(f"cannot resume from {path}: {err}") from err
