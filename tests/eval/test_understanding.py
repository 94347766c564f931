"""The VQA scorer: an oracle scores 100 %, a constant answer scores about chance, per type."""

import re

import pytest

from unilip.data.miniworld import MiniWorldConfig
from unilip.eval.understanding import evaluate_understanding

CFG = MiniWorldConfig()


class Oracle:
    """Gives the recorded answers in order (cheating on purpose: the scorer must give 100 %)."""

    def __init__(self, answers):
        self.answers = iter(answers)

    def answer(self, questions, images=None):
        return [next(self.answers) for _ in questions]


class Constant:
    def __init__(self, word):
        self.word = word

    def answer(self, questions, images=None):
        return [self.word] * len(questions)


def test_oracle_scores_everything_and_constant_answers_score_chance():
    from unilip.eval.understanding import vqa_records

    records = vqa_records("miniworld:test", 400, CFG)
    result = evaluate_understanding(Oracle([r["answer"] for r in records]), "miniworld:test", 400, CFG, knowledge=False)
    assert result["overall"] == 1.0 and result["n"] == 400
    for word in ("yes", "two", "red", "left"):
        r = evaluate_understanding(Constant(word), "miniworld:test", 400, CFG, knowledge=False)
        for qtype, acc in r["per_type"].items():
            assert acc <= r["chance"][qtype] + 0.1, (word, qtype, acc)
    assert r["chance"] == pytest.approx({"count": 0.25, "color": 1 / 6, "exist": 0.5, "position": 0.25})


def test_knowledge_is_scored_on_held_out_phrasings():
    r = evaluate_understanding(Constant("green"), "miniworld:test", 8, CFG)
    assert 0 < r["knowledge"]["accuracy"] < 0.5 and r["knowledge"]["n"] > 20
    assert all(re.search(r"\?|\.$", row["question"]) for row in r["rows"])


def test_results_json_and_the_answers_beside_it(tmp_path):
    import json

    from unilip.eval.understanding import answers_path, write_understanding_results

    r = evaluate_understanding(Constant("red"), "miniworld:test", 8, CFG, knowledge=False)
    rows = r.pop("rows")
    out = write_understanding_results({"miniworld:test": r}, {"miniworld:test": rows}, tmp_path / "sub" / "vqa.json")
    assert json.loads(out.read_text()) == {"miniworld:test": r}
    answers = answers_path(out, "miniworld:test")
    assert answers.name == "vqa-miniworld_test-answers.jsonl"
    assert [json.loads(line) for line in answers.read_text().splitlines()] == rows
