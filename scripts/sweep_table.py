"""Tabulate the generator sweep (scripts/sweep_generator.sh): one row per point, the categories issue 12 charts.

    python scripts/sweep_table.py [results/sweep] [runs/sweep]    -> a markdown table on stdout
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _summary(folder: Path, bench: str) -> dict:
    path = folder / f"{bench}.json"
    return json.loads(path.read_text())["summary"] if path.is_file() else {}


def _train_stats(run: Path) -> tuple[float | None, float | None]:
    """Mean flow loss of the last 100 steps and mean images/s, from metrics.jsonl."""
    path = run / "metrics.jsonl"
    if not path.is_file():
        return None, None
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    last = max(r["step"] for r in rows)
    tail = [r["loss_flow"] for r in rows if r["step"] > last - 100]
    speed = [r["images_per_s"] for r in rows if "images_per_s" in r]
    return sum(tail) / len(tail), sum(speed) / len(speed)


def _mean(per_type: dict | None) -> float | None:
    return sum(per_type.values()) / len(per_type) if per_type else None


def main(results: Path = Path("results/sweep"), runs: Path = Path("runs/sweep")) -> None:
    cols = ("loss", "img/s", "GenEval", "position", "colour attr", "counting", "two obj", "ImgEdit ok", "recolour",
            "remove", "add", "replace", "move", "followed", "preserved", "content", "WISE")
    print("| point | " + " | ".join(cols) + " |")
    print("|---" * (len(cols) + 1) + "|")
    for folder in sorted(p for p in results.iterdir() if p.is_dir()):
        g, e, w = (_summary(folder, b) for b in ("geneval-mini", "imgedit-mini", "wise-mini"))
        loss, speed = _train_stats(runs / folder.name)
        gc, et = g.get("per_category", {}), e.get("per_edit_type", {})
        values = (loss, speed, g.get("overall"), gc.get("position"), gc.get("color_attr"), gc.get("counting"),
                  gc.get("two_object"), e.get("overall"), *(et.get(k) for k in ("recolor", "remove", "add", "replace", "move")),
                  *(_mean(e.get(k)) for k in ("followed", "preserved", "content")), w.get("overall"))
        cells = ["-" if v is None else f"{v:.0f}" if c == "img/s" else f"{v:.3f}" for c, v in zip(cols, values)]
        print(f"| {folder.name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(*(Path(a) for a in sys.argv[1:]))
