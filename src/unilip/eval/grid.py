"""Image grids: rows of image batches side by side (originals above reconstructions), saved as PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(B, 3, H, W) float in [0, 1] -> (B, H, W, 3) uint8, rounded (not truncated)."""
    return (images.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def save_grid(rows: list[torch.Tensor], path: str | Path, pad: int = 2) -> Path:
    """Save a grid with one row per batch in ``rows`` (all (B, 3, H, W) in [0, 1], same shape)."""
    arrays = [to_uint8(r) for r in rows]
    b, h, w, _ = arrays[0].shape
    grid = np.full((len(rows) * (h + pad) + pad, b * (w + pad) + pad, 3), 255, np.uint8)
    for i, arr in enumerate(arrays):
        for j in range(b):
            y, x = pad + i * (h + pad), pad + j * (w + pad)
            grid[y : y + h, x : x + w] = arr[j]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid).save(path)
    return path
