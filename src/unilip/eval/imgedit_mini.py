"""Mini ImgEdit: instruction-based edits of mini-world scenes (recolour, remove, add, replace, move), scored by the
detector against the exact target scene graph.

Per edit: **followed** -- the edited object is as instructed (recoloured / reshaped in place, gone, or added / moved
into the named region with its colour, shape and size); **preserved** -- every untouched object is still there,
unchanged and in place, and nothing else appeared; ``ok`` needs both. Also the PSNR against the target outside the
edited area (the changed objects' boxes, and the whole named region for add / move). A diagnostic, ``content``: the
output holds exactly the target's things (colour and shape), wherever they are -- right content, layout not judged.
Test-split edits plus edits on the held-out colour-shape pairs, reported apart.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unilip.data.miniworld import (
    EDIT_TYPES,
    REGIONS,
    detect,
    make_records,
    match_objects,
    render,
)
from unilip.data.miniworld.config import MiniWorldConfig
from unilip.data.miniworld.scene import Scene
from unilip.eval.gen_common import generate_for, tally, write_benchmark


def edit_records(cfg: MiniWorldConfig, n: int = 200, n_heldout: int = 50) -> list[dict[str, Any]]:
    """``n`` test-split edits (the five types in turn) and ``n_heldout`` from the held-out split."""
    records = [dict(r, heldout=False) for r in make_records("edit", cfg, "test", 0, n)]
    return records + [dict(r, heldout=True) for r in make_records("edit", cfg, "heldout", 0, n_heldout)]


def _changed(source: Scene, target: Scene) -> tuple[list, list, list]:
    """(untouched objects, objects only in the source, objects only in the target)."""
    tgt = list(target.objects)
    same, gone = [], []
    for o in source.objects:
        if o in tgt:
            tgt.remove(o)
            same.append(o)
        else:
            gone.append(o)
    return same, gone, tgt


def _in_region(obj, region: str, tol: float = 0.03) -> bool:
    """The object's centre lies in the named third of the image (within ``tol``: detected centres jitter)."""
    (x0, y0, x1, y1), _, _ = REGIONS[region]
    return x0 - tol <= obj.x <= x1 + tol and y0 - tol <= obj.y <= y1 + tol


def _mask_outside(record: dict[str, Any], gone: list, new: list, cfg: MiniWorldConfig) -> np.ndarray:
    """(S, S) bool: pixels outside the edited objects' boxes (and the named region for add / move)."""
    s = cfg.image_size
    keep = np.ones((s, s), bool)
    for o in gone + new:
        half = cfg.sizes[o.size] * s / 2 + 3
        x0, x1 = int(max(0, o.x * s - half)), int(min(s, np.ceil(o.x * s + half)))
        y0, y1 = int(max(0, o.y * s - half)), int(min(s, np.ceil(o.y * s + half)))
        keep[y0:y1, x0:x1] = False
    if record.get("region"):
        (bx0, by0, bx1, by1), _, _ = REGIONS[record["region"]]
        pad = max(cfg.sizes.values()) * s / 2
        keep[int(max(0, by0 * s - pad)):int(min(s, by1 * s + pad)), int(max(0, bx0 * s - pad)):int(min(s, bx1 * s + pad))] = False
    return keep


def score_edit(image: np.ndarray, record: dict[str, Any], cfg: MiniWorldConfig) -> dict[str, Any]:
    """followed / preserved / ok and the PSNR outside the edit, for one output image (H, W, 3) uint8."""
    source, target, kind = record["scene"], record["target"], record["edit_type"]
    det = detect(image, cfg)
    same, gone, new = _changed(source, target)
    preserved = match_objects(det, Scene(det.background, tuple(same))) == len(same) and len(det.objects) == len(target.objects)
    if kind in ("recolor", "replace"):
        followed = match_objects(det, Scene(det.background, tuple(new))) == len(new)
    elif kind == "remove":
        followed = match_objects(det, Scene(det.background, tuple(gone))) == 0
    else:  # add, move: the object, right colour / shape / size, in the named region
        o = new[0]
        followed = any((d.shape, d.color, d.size) == (o.shape, o.color, o.size) and _in_region(d, record["region"])
                       for d in det.objects)
        if kind == "move":
            followed = followed and match_objects(det, Scene(det.background, tuple(gone))) == 0
    keep = _mask_outside(record, gone, new, cfg)
    truth = render(target, cfg).astype(np.float64)
    mse = float(((image.astype(np.float64) - truth) ** 2)[keep].mean()) if keep.any() else 0.0
    psnr = 10 * np.log10(255 ** 2 / max(mse, 1e-10))
    # a diagnostic beside the score: the output holds exactly the target's things (colour, shape), wherever they are
    content = Counter((o.color, o.shape) for o in det.objects) == Counter((o.color, o.shape) for o in target.objects)
    return {"followed": bool(followed), "preserved": bool(preserved), "ok": bool(followed and preserved),
            "content": bool(content), "psnr_outside": float(psnr)}


def evaluate_imgedit(pipe, cfg: MiniWorldConfig, n: int = 200, n_heldout: int = 50, samples: int = 1, seed: int = 0,
                     out_dir: str | Path | None = None, steps: int | None = None, guidance: float | None = None) -> dict[str, Any]:
    """Edit every record's source ``samples`` times and score each result."""
    records = edit_records(cfg, n, n_heldout)
    sources = np.stack([render(r["scene"], cfg) for r in records])
    src = torch.from_numpy(sources).permute(0, 3, 1, 2).float() / 255
    images = generate_for(pipe, [r["instruction"] for r in records], samples, seed, sources=src, steps=steps,
                          guidance=guidance)
    rows = []
    for k, image in enumerate(images):
        r = records[k // samples]
        rows.append({"prompt": r["instruction"], "edit_type": r["edit_type"], "heldout": r["heldout"], "item": k // samples,
                     "sample": k % samples, **score_edit(image, r, cfg)})
    summary = tally(rows, "edit_type")
    for key in ("followed", "preserved", "content"):
        summary[key] = {t: float(np.mean([x[key] for x in rows if x["edit_type"] == t])) for t in EDIT_TYPES}
    summary["psnr_outside"] = {t: float(np.mean([x["psnr_outside"] for x in rows if x["edit_type"] == t])) for t in EDIT_TYPES}
    summary.update({"edits": len(records), "samples_per_edit": samples, "seed": seed})
    if out_dir is not None:
        write_benchmark("imgedit-mini", summary, rows, images, out_dir, sources=sources)
    return summary
