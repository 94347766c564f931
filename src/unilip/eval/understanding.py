"""Understanding: exact-match VQA accuracy of an MLLM on mini-world questions, per question type, with chance levels.

The same questions can be answered with the MLLM's original encoder or with a UniLIP encoder swapped in
(:meth:`unilip.mllm.model.MLLM.use_encoder`): the paper's claim in miniature is that the two score the same.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unilip.data.miniworld.config import MiniWorldConfig
from unilip.data.miniworld.questions import QUESTION_TYPES, answer_space


def vqa_records(data: str, n: int | None, cfg: MiniWorldConfig) -> list[dict[str, Any]]:
    """Questions with their images: ``miniworld:SPLIT`` (generated, ``n`` of them) or a dataset written by
    ``unilip miniworld make --task vqa`` (all, or the first ``n``)."""
    from unilip.data.miniworld.dataset import MiniWorldDataset, make_records
    from unilip.data.miniworld.renderer import render
    from unilip.errors import UniLIPError

    if data.startswith("miniworld:"):
        split = data.split(":", 1)[1]
        records = list(make_records("vqa", cfg, split, 0, n or 1000))
        for r in records:
            r["image"] = render(r["scene"], cfg)
        return records
    ds = MiniWorldDataset(data)
    if ds.task != "vqa":
        raise UniLIPError(f"{data} holds a {ds.task} dataset; understanding needs --task vqa")
    records = []
    for sample in ds:
        records.append(sample)
        if n is not None and len(records) >= n:
            break
    return records


@torch.no_grad()
def evaluate_understanding(mllm, data: str, n: int | None, cfg: MiniWorldConfig, batch_size: int = 64,
                           knowledge: bool = True) -> dict[str, Any]:
    """Accuracy overall and per type (and on held-out phrasings of the world-knowledge facts, text only)."""
    records = vqa_records(data, n, cfg)
    correct: dict[str, list[bool]] = defaultdict(list)
    rows = []
    for i in range(0, len(records), batch_size):
        chunk = records[i : i + batch_size]
        images = torch.from_numpy(np.stack([r["image"] for r in chunk])).permute(0, 3, 1, 2).float() / 255
        size = getattr(mllm, "image_size", None)
        if size is not None and images.shape[-1] != size:  # the scenes at the MLLM's own resolution
            images = torch.nn.functional.interpolate(images, size=(size, size), mode="bilinear", antialias=True)
        answers = mllm.answer([r["question"] for r in chunk], images)
        for r, a in zip(chunk, answers):
            correct[r["qtype"]].append(a == r["answer"])
            rows.append({"id": r["id"], "qtype": r["qtype"], "question": r["question"], "answer": r["answer"], "prediction": a})
    per_type = {t: float(np.mean(correct[t])) for t in QUESTION_TYPES if correct[t]}
    result = {
        "n": len(records), "data": data,
        "overall": float(np.mean([c for t in correct for c in correct[t]])),
        "per_type": per_type,
        "chance": {t: 1 / len(answer_space(t, cfg)) for t in per_type},
        "rows": rows,
    }
    if knowledge:
        from unilip.data.miniworld.knowledge import knowledge_facts

        facts = [f for f in knowledge_facts(cfg.colors, cfg.shapes, cfg.max_objects) if f.held_out]
        answers = mllm.answer([f.question for f in facts])
        result["knowledge"] = {"n": len(facts), "accuracy": float(np.mean([a == f.answer for a, f in zip(answers, facts)]))}
    return result


def answers_path(out: str | Path, data: str) -> Path:
    """Where :func:`write_understanding_results` puts the answers to ``data``: beside ``out``, named after both."""
    out = Path(out)
    return out.with_name(f"{out.stem}-{data.replace(':', '_').replace('/', '_')}-answers.jsonl")


def write_understanding_results(results: dict[str, Any], answers: dict[str, list[dict[str, Any]]],
                                out: str | Path) -> Path:
    """``results`` as JSON at ``out``, and each dataset's answers (the ``rows`` of :func:`evaluate_understanding`)
    as JSONL beside it, one line per question: what a reader opens to see which questions went wrong."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    for data, rows in answers.items():
        with open(answers_path(out, data), "w") as f:
            f.writelines(json.dumps(row) + "\n" for row in rows)
    out.write_text(json.dumps(results, indent=2) + "\n")
    return out
