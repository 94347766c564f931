"""The mini generation benchmarks' prompts and scoring rules, checked on exact renders of known scenes."""

import json

import numpy as np
import pytest

from unilip.config import get_preset
from unilip.data.miniworld import render
from unilip.data.miniworld.scene import Scene, SceneObject
from unilip.eval.gen_common import seeded_generators, tally, write_benchmark
from unilip.eval.geneval_mini import CATEGORIES, geneval_prompts, satisfies
from unilip.eval.imgedit_mini import edit_records, score_edit
from unilip.eval.wise_mini import wise_prompts
from unilip.train.generator_data import GenerationData, GenerationMix
from unilip.data.miniworld.knowledge import indirect_references

WORLD = get_preset("mini").miniworld


def _scene(*objs):
    return Scene("white", tuple(SceneObject(s, c, "large", x, y) for s, c, x, y in objs))


def test_geneval_prompts_cover_every_category_and_the_heldout_pairs():
    specs = geneval_prompts(WORLD)
    assert len(specs) >= 300 and {s["category"] for s in specs} == set(CATEGORIES)
    assert any(s["heldout"] for s in specs) and len({s["prompt"] for s in specs}) > 250
    assert geneval_prompts(WORLD) == specs  # fixed


def test_geneval_rules():
    two_red = _scene(("circle", "red", 0.25, 0.5), ("circle", "red", 0.75, 0.5))
    count2 = {"objects": [{"shape": "circle", "count": 2}]}
    assert satisfies(two_red, count2)
    assert not satisfies(two_red, {"objects": [{"shape": "circle", "count": 3}]})
    assert satisfies(two_red, {"objects": [{"shape": "circle", "color": "red", "min": 1}]})
    assert not satisfies(two_red, {"objects": [{"shape": "circle", "color": "blue", "min": 1}]})
    pair = _scene(("circle", "red", 0.2, 0.5), ("square", "blue", 0.8, 0.5))
    left = {"objects": [{"shape": "circle", "color": "red", "min": 1}, {"shape": "square", "color": "blue", "min": 1}],
            "relation": "left"}
    assert satisfies(pair, left) and not satisfies(pair, dict(left, relation="right"))
    assert not satisfies(pair, dict(left, relation="above"))


def test_imgedit_scores_the_target_right_and_the_untouched_source_wrong():
    records = edit_records(WORLD, 50, 10)
    assert {r["edit_type"] for r in records} == {"recolor", "remove", "add", "replace", "move"}
    truth = [score_edit(render(r["target"], WORLD), r, WORLD) for r in records]
    assert np.mean([s["ok"] for s in truth]) >= 0.95 and min(s["psnr_outside"] for s in truth) > 60
    assert all(s["content"] for s in truth)
    unchanged = [score_edit(render(r["scene"], WORLD), r, WORLD) for r in records]
    assert not any(s["ok"] for s in unchanged)  # doing nothing never counts as following the instruction


def test_wise_asks_only_for_knowledge_the_generator_never_trained_on():
    specs = wise_prompts(WORLD)
    knowledge = [s for s in specs if s["category"] != "direct"]
    assert len(knowledge) >= 100 and {s["category"] for s in knowledge} == {"color", "shape", "both"}
    held_things = {t for ts in indirect_references("color", True).values() for t in ts}
    train_things = {t for ts in indirect_references("color", False).values() for t in ts}
    assert held_things.isdisjoint(train_things)
    data = GenerationData(WORLD, GenerationMix(knowledge=1.0, cfg_dropout=0.0))
    train_prompts = [data.make(p)["prompt"] for p in range(400)]
    knowledge_prompts = [p for p in train_prompts if "in the color of" in p]
    assert knowledge_prompts and not any(t in p for p in knowledge_prompts for t in held_things)
    assert any(t in s["prompt"] for s in knowledge if s["category"] in ("color", "both") for t in held_things)


def test_tally_and_pages(tmp_path):
    rows = [{"prompt": "a red circle", "category": "colors", "ok": True, "heldout": False},
            {"prompt": "a red triangle", "category": "colors", "ok": False, "heldout": True},
            {"prompt": "a circle", "category": "single_object", "ok": True}]
    summary = tally(rows)
    assert summary["overall"] == pytest.approx(2 / 3) and summary["per_category"] == {"colors": 0.5, "single_object": 1.0}
    assert summary["heldout"] == 0.0 and summary["seen"] == 1.0
    images = np.zeros((3, 64, 64, 3), np.uint8)
    path = write_benchmark("geneval-mini", summary, rows, images, tmp_path)
    assert json.loads(path.read_text())["summary"]["overall"] == pytest.approx(2 / 3)
    page = (tmp_path / "geneval-mini.html").read_text()
    assert "single_object" in page and "(held-out)" in page and (tmp_path / "geneval-mini-samples" / "00000.png").is_file()
    a, b = seeded_generators(0, 3, 2), seeded_generators(0, 3, 2)
    assert [g.initial_seed() for g in a] == [g.initial_seed() for g in b] and a[0].initial_seed() != a[1].initial_seed()
