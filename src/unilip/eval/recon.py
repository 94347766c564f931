"""Reconstruction evaluation: per-image PSNR / SSIM (+ LPIPS), and Fréchet distances over the whole set.

``evaluate_reconstruction`` runs a tokenizer over an image source (eval transform: resize + centre crop) and
returns per-image rows and a summary. Metrics:

- ``psnr`` (data range 1) and ``ssim`` (standard, data range 1);
- ``ssim_official``: SSIM with ``data_range=2`` on [0, 1] images, the official UniLIP evaluation's quirk, which
  inflates SSIM; reported only to compare with the paper's numbers, and labelled as such;
- ``feature_fd``: a download-free Fréchet distance between originals and reconstructions in a reference encoder's
  feature space (mean of F over tokens). The reference should be the *original* encoder (before tokenizer
  training), so that the distance says how much meaning the reconstruction keeps;
- ``lpips`` and ``rfid`` when their weights are on disk (optional extras; a clear error otherwise).
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from unilip.errors import UniLIPError
from unilip.eval.metrics import FeatureFrechet, psnr, ssim, ssim_official


def images_to_evaluate(source, n: int | None) -> int:
    """``n``, or all of a finite ``source``; an endless one (a stream, the mini world's 10^9 scenes) needs ``n``."""
    if n is not None:
        return n
    if getattr(source, "iterable", False) or getattr(source, "infinite", False):
        raise UniLIPError(f"{getattr(source, 'name', 'this source')} has no end (a stream or a generated world): "
                          "pass --n, the number of images to evaluate")
    return len(source)


@torch.no_grad()
def evaluate_reconstruction(
    model: nn.Module,
    source,
    image_size: int,
    n: int | None = None,
    batch_size: int = 32,
    reference: nn.Module | None = None,
    pad_to_multiple: bool = False,
    lpips: nn.Module | None = None,
    rfid=None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Reconstruct ``n`` images of ``source`` (all of a finite one by default); returns (rows, summary)."""
    from unilip.data.images import ImageLoadError, SkipCounter
    from unilip.data.loader import eval_transform

    model.eval()
    device = next(model.parameters()).device
    reference = (reference or model.encoder).eval()
    fd = FeatureFrechet()
    skipped = SkipCounter(what="images")
    total = images_to_evaluate(source, n)
    rows: list[dict[str, Any]] = []
    names: list[str] = []
    batch: list[torch.Tensor] = []

    def flush() -> None:
        images = torch.stack(batch).to(device)
        recon = model.reconstruct(images, pad_to_multiple=pad_to_multiple).clamp(0, 1)
        metrics = {"psnr": psnr(recon, images), "ssim": ssim(recon, images), "ssim_official": ssim_official(recon, images)}
        if lpips is not None:
            metrics["lpips"] = lpips(recon, images).flatten()
        if rfid is not None:
            rfid.update(images, real=True)
            rfid.update(recon, real=False)
        fd.update(reference(images).mean(1).float().cpu().numpy(), reference(recon).mean(1).float().cpu().numpy())
        for i, name in enumerate(names):
            rows.append({"image": name, **{k: float(v[i]) for k, v in metrics.items()}})
        batch.clear()
        names.clear()

    def images():
        """(name, PIL image) pairs; bad images are skipped and counted (an iterable source skips them itself)."""
        if getattr(source, "iterable", False):
            for index, img in zip(range(total), source):
                yield f"{source.name}[{index}]", img
            return
        for index in range(total):
            try:
                img = source.load(index)
            except ImageLoadError as err:
                skipped.skip(err)
                continue
            skipped.ok()
            yield str(source.metadata(index).get("file", index)), img

    for name, img in images():
        batch.append(eval_transform(img, image_size))
        names.append(name)
        if len(batch) == batch_size:
            flush()
    if batch:
        flush()
    summary: dict[str, Any] = {"n_images": len(rows), "image_size": image_size, "skipped": skipped.count}
    for key in rows[0] if rows else []:
        if key != "image":
            summary[key] = float(np.mean([r[key] for r in rows]))
    summary["feature_fd"] = fd.compute() if len(rows) > 1 else math.nan
    if rfid is not None:
        summary["rfid"] = float(rfid.compute())
    summary["notes"] = {"ssim_official": "SSIM with data_range=2 on [0,1] images, as the official UniLIP evaluation "
                        "computes it (inflated); compare with the paper only", "feature_fd": "Fréchet distance of mean "
                        "encoder features (reference encoder), originals vs reconstructions"}
    return rows, summary


def write_results(rows: list[dict[str, Any]], summary: dict[str, Any], out: str | Path) -> tuple[Path, Path]:
    """``out`` is the summary JSON path; the per-image CSV goes beside it (``<stem>.csv``)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2) + "\n")
    table = out.with_suffix(".csv")
    with open(table, "w", newline="") as f:
        if rows:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    return out, table
