"""What the three mini generation benchmarks share: batched sampling at fixed per-image seeds, per-category tallies,
and the JSON + HTML output with sample grids."""

from __future__ import annotations

import html
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image



def seeded_generators(seed: int, index: int, samples: int) -> list[torch.Generator]:
    """One generator per sample: sample j of item i always starts from the same noise, whatever the batching."""
    return [torch.Generator().manual_seed(seed * 1_000_003 + index * 97 + j) for j in range(samples)]


@torch.no_grad()
def generate_for(pipe, prompts: list[str], samples: int, seed: int, sources: torch.Tensor | None = None,
                 batch_prompts: int = 16, steps: int | None = None, guidance: float | None = None) -> np.ndarray:
    """(len(prompts) * samples, H, W, 3) uint8: ``samples`` images per prompt (edits of ``sources`` when given),
    from a :class:`~unilip.pipeline.UniLIPPipeline` ``pipe``."""
    out = []
    for start in range(0, len(prompts), batch_prompts):
        chunk = prompts[start:start + batch_prompts]
        gens = [g for i in range(start, start + len(chunk)) for g in seeded_generators(seed, i, samples)]
        src = None if sources is None else sources[start:start + len(chunk)]
        out.append(pipe(chunk, image=src, num_images_per_prompt=samples, num_inference_steps=steps,
                        guidance_scale=guidance, generator=gens, output_type="np").images)
    return np.concatenate(out)


def spread_subset(items: list, n: int | None) -> list:
    """``n`` items evenly spread over ``items`` (all of them when ``n`` is None or not smaller)."""
    if n is None or n >= len(items):
        return items
    return [items[i] for i in np.linspace(0, len(items) - 1, n).round().astype(int)]


def tally(rows: list[dict[str, Any]], key: str = "category") -> dict[str, Any]:
    """Overall and per-``key`` accuracy of rows carrying ``ok`` (bool), and the held-out rows' accuracy."""
    groups: dict[str, list[bool]] = defaultdict(list)
    for r in rows:
        groups[r[key]].append(r["ok"])
    per = {k: float(np.mean(v)) for k, v in groups.items()}
    held = [r["ok"] for r in rows if r.get("heldout")]
    seen = [r["ok"] for r in rows if not r.get("heldout")]
    return {"overall": float(np.mean([r["ok"] for r in rows])) if rows else 0.0, f"per_{key}": per,
            "counts": {k: len(v) for k, v in groups.items()},
            "heldout": float(np.mean(held)) if held else None, "seen": float(np.mean(seen)) if seen else None,
            "n_heldout": len(held)}


def write_benchmark(name: str, summary: dict[str, Any], rows: list[dict[str, Any]], images: np.ndarray,
                    out_dir: str | Path, sources: np.ndarray | None = None, per_category_shown: int = 8) -> Path:
    """``{name}.json`` (summary + every row) and ``{name}.html`` (the tables and, per category, the first samples
    with their prompt and verdict) in ``out_dir``; sample images go to ``{name}-samples/``."""
    out = Path(out_dir)
    pics = out / f"{name}-samples"
    pics.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps({"summary": summary, "rows": rows}, indent=2) + "\n")
    key = "category" if rows and "category" in rows[0] else "edit_type"
    shown: dict[str, int] = defaultdict(int)
    cells: dict[str, list[str]] = defaultdict(list)
    for i, r in enumerate(rows):
        if shown[r[key]] >= per_category_shown:
            continue
        shown[r[key]] += 1
        tiles = [images[i]] if sources is None else [sources[r["item"]], images[i]]
        Image.fromarray(np.concatenate(tiles, 1)).resize((128 * len(tiles), 128), Image.NEAREST).save(pics / f"{i:05d}.png")
        verdict = "&#10003;" if r["ok"] else "&#10007;"
        cells[r[key]].append(f'<figure><img src="{pics.name}/{i:05d}.png"><figcaption>{verdict} '
                             f'{html.escape(r["prompt"])}{" (held-out)" if r.get("heldout") else ""}</figcaption></figure>')
    per = summary[f"per_{key}"]
    table = "".join(f"<tr><td>{html.escape(k)}</td><td>{v:.3f}</td><td>{summary['counts'][k]}</td></tr>" for k, v in per.items())
    extra = "".join(f"<li>{html.escape(k)}: {html.escape(json.dumps(v))}</li>" for k, v in summary.items()
                    if k not in (f"per_{key}", "counts"))
    body = "".join(f"<h2>{html.escape(k)}</h2><div class=row>{''.join(v)}</div>" for k, v in cells.items())
    page = (f"<!doctype html><meta charset=utf-8><title>{name}</title><style>body{{font-family:sans-serif}}"
            "figure{display:inline-block;margin:4px;width:260px;font-size:12px}td{padding:2px 8px}</style>"
            f"<h1>{name}</h1><table><tr><th>{key}</th><th>accuracy</th><th>samples</th></tr>{table}"
            f"<tr><td><b>overall</b></td><td><b>{summary['overall']:.3f}</b></td><td>{len(rows)}</td></tr></table>"
            f"<ul>{extra}</ul>{body}")
    (out / f"{name}.html").write_text(page)
    return out / f"{name}.json"
