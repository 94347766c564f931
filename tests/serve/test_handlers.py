"""The web demo's request handlers, in-process on the bundled mini models: what each tab returns, and that every
bad input (file, text, number) ends as one clear UniLIPError rather than a traceback or a broken page."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from unilip.errors import UniLIPError
from unilip.serve import handlers as h

SMALL = h.Limits(max_pixels=100_000, max_upload_mb=1, max_text_chars=40)


def test_reconstruct_returns_model_size_images_and_metrics(models, scene_files):
    r = h.reconstruct(models, scene_files["rgba"])  # 200 x 150 RGBA -> resized, cropped, on white
    assert r.source.shape == r.reconstruction.shape == (64, 64, 3)
    assert r.source.dtype == np.uint8
    assert r.psnr > 15 and 0.5 < r.ssim <= 1
    assert "PSNR" in r.summary() and "64x64" in r.summary()


def test_ask_answers_the_mini_world_question_with_both_encoders(models, scene_files):
    for encoder in ("original", "unilip", "UniLIP"):
        assert h.ask(models, scene_files["question"], scene_files["question_text"], encoder) == scene_files["answer"]


def test_generate_is_seeded_and_judged_by_the_detector(models):
    a = h.generate(models, "a red circle", steps=2, guidance=2, seed=5, n=2)
    b = h.generate(models, "  a   red circle ", steps=2, guidance=2.0, seed=6, n=1)  # whitespace is collapsed
    assert [g.seed for g in a] == [5, 6] and len(b) == 1
    assert all(g.image.shape == (64, 64, 3) for g in a)
    np.testing.assert_array_equal(a[1].image, b[0].image)  # image i starts from seed + i
    assert all(g.ok is not None and "the detector sees" in g.caption for g in a)
    free = h.generate(models, "something the mini world never says", steps=1, n=1)
    assert free[0].ok is None and "the detector sees" in free[0].caption  # no GenEval spec: described, not judged


def test_edit_returns_source_and_result(models, scene_files):
    e = h.edit(models, scene_files["edit"], scene_files["instruction"], steps=4, seed=0)
    assert e.source.shape == e.edited.shape == (64, 64, 3)
    assert "seed 0" in e.note and "before" in e.note and "after" in e.note


@pytest.mark.parametrize("mode", ["RGBA", "LA", "L", "P", "I;16", "CMYK", "1"])
def test_odd_modes_become_rgb(models, tmp_path, mode):
    rgb = np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8)
    if mode == "I;16":
        im = Image.fromarray(rgb[..., 0].astype(np.uint16) * 257)
    else:
        im = Image.fromarray(rgb).convert(mode)
    path = tmp_path / ("x.jpg" if mode == "CMYK" else "x.png")
    im.save(path)
    assert h.reconstruct(models, path).source.shape == (64, 64, 3)


def test_bad_files_are_refused_clearly(models, scene_files, tmp_path):
    with pytest.raises(UniLIPError, match="cannot read image corrupt.png: corrupt or truncated"):
        h.reconstruct(models, scene_files["corrupt"])
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(UniLIPError, match="empty file"):
        h.ask(models, empty, "is there a circle?")
    text = tmp_path / "notes.png"
    text.write_text("hello")
    with pytest.raises(UniLIPError, match="not an image"):
        h.edit(models, text, "make it blue")
    huge = tmp_path / "huge.png"
    Image.new("L", (400, 300)).save(huge)  # 120,000 px > SMALL.max_pixels, refused from the header
    with pytest.raises(UniLIPError, match="too large"):
        h.reconstruct(models, huge, SMALL, name="holiday.png")
    heavy = tmp_path / "heavy.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (300, 300, 3), dtype=np.uint8)).save(heavy)
    with pytest.raises(UniLIPError, match="over the 0 MB limit"):
        h.reconstruct(models, heavy, h.Limits(max_upload_mb=0))
    with pytest.raises(UniLIPError, match="no image"):
        h.reconstruct(models, None)
    with pytest.raises(UniLIPError, match="upload is gone"):
        h.reconstruct(models, tmp_path / "missing.png")


def test_the_name_in_messages_is_the_users_not_the_servers(models, scene_files):
    with pytest.raises(UniLIPError) as err:
        h.reconstruct(models, scene_files["corrupt"], name="my photo.png")
    assert "my photo.png" in str(err.value) and str(scene_files["dir"]) not in str(err.value)


@pytest.mark.parametrize("text, message", [("", "is empty"), ("   \n\t ", "is empty"), (None, "is empty"),
                                           ("x" * 41, "too long: 41 characters, at most 40"), (42, "must be text")])
def test_bad_text_is_refused(models, scene_files, text, message):
    with pytest.raises(UniLIPError, match=message):
        h.generate(models, text, limits=SMALL)
    with pytest.raises(UniLIPError, match=message):
        h.ask(models, scene_files["question"], text, limits=SMALL)
    with pytest.raises(UniLIPError, match=message):
        h.edit(models, scene_files["edit"], text, limits=SMALL)


@pytest.mark.parametrize("kwargs, message", [
    ({"steps": 0}, "steps: 0 is out of range; allowed: 1 to 100"),
    ({"steps": 101}, "steps: 101 is out of range"),
    ({"steps": 2.5}, "steps: must be a whole number"),
    ({"steps": "many"}, "steps: give a number"),
    ({"steps": True}, "steps: give a number"),
    ({"guidance": 0.5}, "guidance: 0.5 is out of range; allowed: 1 to 20"),
    ({"guidance": float("nan")}, "guidance: nan is out of range"),
    ({"seed": -1}, "seed: -1 is out of range"),
    ({"seed": 2**31}, "seed: 2147483648 is out of range"),
    ({"n": 0}, "number of images: 0 is out of range; allowed: 1 to 4"),
    ({"n": 5}, "number of images: 5 is out of range"),
])
def test_out_of_range_numbers_are_refused(models, kwargs, message):
    with pytest.raises(UniLIPError, match=message.replace("(", r"\(")):
        h.generate(models, "a red circle", **kwargs)


def test_bad_encoder_is_refused(models, scene_files):
    with pytest.raises(UniLIPError, match="encoder: 'clip' is not one of original, unilip"):
        h.ask(models, scene_files["question"], "is there a circle?", "clip")


def test_examples_are_mini_world_inputs(models, tmp_path):
    ex = h.make_examples(models, tmp_path / "ex", n=3)
    assert h.warm_up(models, ex) > 0  # every tab runs on the examples
    assert len(ex.images) == len(ex.questions) == len(ex.edits) == 3
    assert all(Image.open(p).size == (64, 64) for p in ex.images + [q[0] for q in ex.questions])
    # every example prompt is a mini GenEval prompt, so the detector can judge what the page generates
    assert all(models.geneval_spec(p) is not None for p in ex.prompts)
