"""Captions and questions: true to the scene graph, varied, balanced, and silent about held-out pairs."""

import re
from collections import Counter

import numpy as np

from unilip.data.miniworld import MiniWorldConfig, Scene, SceneObject, caption, relation
from unilip.data.miniworld.dataset import make_records
from unilip.data.miniworld.language import NUMBER_WORDS, refer
from unilip.data.miniworld.questions import QUESTION_TYPES, answer_space

CFG = MiniWorldConfig()


def test_captions_name_every_object_and_use_several_templates():
    records = list(make_records("captions", CFG, "train", 0, 300))
    starts = Counter(r["caption"].split(" ")[0] for r in records)
    assert len(starts) >= 5  # 'a', 'two', 'there', 'an', 'three', ...
    for r in records:
        text = r["caption"]
        for o in r["scene"].objects:
            assert o.color in text and o.shape in text
        m = re.match(r"(\w+) objects?: ", text)
        if m:
            assert NUMBER_WORDS.index(m.group(1)) == len(r["scene"].objects)


def test_relation_captions_are_true():
    phrases = {"to the left of": "left", "to the right of": "right", "above": "above", "below": "below"}
    seen = 0
    for r in make_records("captions", CFG, "train", 0, 600):
        for phrase, rel in phrases.items():
            m = re.fullmatch(rf"an? (\w+) (\w+) {phrase} an? (\w+) (\w+)", r["caption"])
            if m:
                seen += 1
                by = {(o.color, o.shape): o for o in r["scene"].objects}
                assert relation(by[m.group(1), m.group(2)], by[m.group(3), m.group(4)]) == rel
    assert seen > 20


def test_relation_captions_of_any_scene_are_true_or_none():
    from unilip.data.miniworld.language import RELATION_PHRASES, relation_caption

    pattern = re.compile(r"an? (\w+) (\w+) (to the left of|to the right of|above|below) an? (\w+) (\w+)")
    phrases = {phrase: rel for rel, phrase in RELATION_PHRASES.items()}
    stated = 0
    for r in make_records("captions", CFG, "train", 0, 300):
        text = relation_caption(r["scene"], np.random.default_rng(0))
        if len(r["scene"].objects) == 1:
            assert text is None
        if text is None:
            continue
        stated += 1
        c1, s1, phrase, c2, s2 = pattern.fullmatch(text).groups()
        assert (c1, s1) != (c2, s2)
        assert any(relation(a, b) == phrases[phrase] for a in r["scene"].objects for b in r["scene"].objects
                   if (a.color, a.shape) == (c1, s1) and (b.color, b.shape) == (c2, s2))
    assert stated > 100


def test_relation_and_referring_expressions():
    a, b = SceneObject("circle", "red", "small", 0.2, 0.5), SceneObject("square", "blue", "small", 0.8, 0.55)
    assert relation(a, b) == "left" and relation(b, a) == "right"
    assert relation(a, SceneObject("square", "blue", "small", 0.25, 0.9)) == "above"
    assert relation(a, SceneObject("square", "blue", "small", 0.35, 0.35)) is None  # diagonal: no clear relation
    scene = Scene("white", (a, b, SceneObject("circle", "green", "large", 0.5, 0.2)))
    assert refer(scene, 1) == "square"
    assert refer(scene, 0) == "red circle"
    assert refer(scene, 0, ("size", "shape")) == "small circle"
    twins = Scene("white", (a, SceneObject("circle", "red", "small", 0.8, 0.8)))
    assert refer(twins, 0) is None


def _answer(scene: Scene, q: str) -> str:
    """An independent reading of each question template, to check the generator's answers."""
    objs = scene.objects
    if m := re.fullmatch(r"how many (objects are there|shapes are in the picture)\?", q):
        return NUMBER_WORDS[len(objs)]
    if m := re.fullmatch(r"how many (\w+) objects are there\?", q):
        w = m.group(1)
        return NUMBER_WORDS[sum(o.color == w or o.size == w for o in objs)]
    if m := re.fullmatch(r"how many (?:(\w+) )?(\w+)s are there\?", q):
        return NUMBER_WORDS[sum(o.shape == m.group(2) and m.group(1) in (None, o.color) for o in objs)]
    if m := re.fullmatch(r"(?:what color is|which color does) the (.+?)(?: have)?\?", q):
        words = m.group(1).split()
        [o] = [o for o in objs if o.shape == words[-1] and (len(words) == 1 or o.size == words[0])]
        return o.color
    if m := re.fullmatch(r"is there an? (?:(\w+) )?(\w+)\?", q):
        return "yes" if any(o.shape == m.group(2) and m.group(1) in (None, o.color) for o in objs) else "no"
    if m := re.fullmatch(r"are there any (\w+) objects\?", q):
        return "yes" if any(o.color == m.group(1) for o in objs) else "no"
    if m := re.fullmatch(r"where is the (.+) (?:relative|compared) to the (.+)\?", q):

        def find(desc):
            words = desc.split()
            found = [o for o in objs if all(w in (o.size, o.color, o.shape) for w in words)]
            assert len(found) == 1, desc
            return found[0]

        return relation(find(m.group(1)), find(m.group(2)))
    raise AssertionError(f"unknown template: {q}")


def test_answers_are_correct_and_balanced():
    records = list(make_records("vqa", CFG, "train", 0, 1600))
    by_type = {t: [r for r in records if r["qtype"] == t] for t in QUESTION_TYPES}
    for qtype, recs in by_type.items():
        assert len(recs) == 400
        answers = Counter(r["answer"] for r in recs)
        space = answer_space(qtype, CFG)
        assert set(answers) == set(space)
        # a constant answer scores at most chance + 8 points
        assert max(answers.values()) / len(recs) <= 1 / len(space) + 0.08, (qtype, answers)
        assert len({r["question"] for r in recs}) >= 10
    for r in records:
        assert _answer(r["scene"], r["question"]) == r["answer"], r


def test_train_text_never_mentions_heldout_pairs():
    pairs = [f"{c} {s}" for c, s in CFG.heldout_set()]
    texts = [r["caption"] for r in make_records("captions", CFG, "train", 0, 300)]
    texts += [r["question"] for r in make_records("vqa", CFG, "train", 0, 400)]
    texts += [r["instruction"] for r in make_records("edit", CFG, "train", 0, 200)]
    for t in texts:
        assert not any(p in t for p in pairs), t
    held = [r["caption"] for r in make_records("captions", CFG, "heldout", 0, 50)]
    assert sum(any(p in t for p in pairs) for t in held) >= 25


def test_caption_rng_decides_template():
    scene = make_records("images", CFG, "train", 7, 1).__next__()["scene"]
    texts = {caption(scene, np.random.default_rng(i)) for i in range(40)}
    assert len(texts) >= 4
