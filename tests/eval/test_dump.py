"""`unilip dump`: the folders the official GenEval / WISE / ImgEdit scorers read, chunking, resume and bad input."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from tiny import TINY_DIT, TINY_MODEL, save_tiny_components

from unilip.cli import main
from unilip.errors import UniLIPError
from unilip.eval.dump import chunk_batches, dump_samples, geneval_plan, imgedit_plan, wise_plan, write_png
from unilip.pipeline import UniLIPPipeline

GENEVAL_LINES = [
    '{"tag": "single_object", "include": [{"class": "circle", "count": 1}], "prompt": "a photo of a circle"}',
    ('{"tag": "two_object", "include": [{"class": "circle", "count": 1}, {"class": "square", "count": 1}], '
     '"prompt": "a photo of a circle and a square"}'),
    '{"prompt": "a red triangle", "extra": {"kept": [1, 2]}}',
    '{"tag": "counting", "prompt": "two squares"}',
    '{"tag": "colors", "prompt": "a blue circle"}',
]


@pytest.fixture(scope="module")
def pipeline_dir(tmp_path_factory):
    """A tiny random UniLIP pipeline saved as `unilip dump --model` reads it (32 px, one sampling step)."""
    from unilip.train.generator import GeneratorTask, load_generator_config

    root = save_tiny_components(tmp_path_factory.mktemp("dump-pipe"))
    gen_cfg = load_generator_config(None, [*TINY_MODEL, *TINY_DIT, "model.generator.num_inference_steps=1",
                                           f"model.mllm.pretrained={root / 'mllm'}", f"tokenizer={root / 'tokenizer'}",
                                           f"loop.output_dir={root / 'run'}"])
    UniLIPPipeline(GeneratorTask(gen_cfg).model).save_pretrained(root / "pipe")
    return root / "pipe"


@pytest.fixture(scope="module")
def pipe(pipeline_dir):
    return UniLIPPipeline.from_pretrained(pipeline_dir)


@pytest.fixture
def geneval_file(tmp_path):
    path = tmp_path / "evaluation_metadata.jsonl"
    path.write_text("\n".join(GENEVAL_LINES[:2]) + "\n\n" + "\n".join(GENEVAL_LINES[2:]) + "\n")  # a blank line inside
    return path


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _dump(pipe, plan, out, **kw):
    return dump_samples(pipe, plan, out, model="tiny", **{"batch_size": 2, **kw})


def test_geneval_layout_is_what_the_scorer_reads(pipe, geneval_file, tmp_path):
    plan = geneval_plan(geneval_file, samples=2)
    settings = _dump(pipe, plan, tmp_path / "out")
    files = _files(tmp_path / "out")
    expected = {f"{i:05d}/{name}" for i in range(5) for name in ("metadata.jsonl", "samples/00000.png", "samples/00001.png")}
    assert set(files) == expected | {"settings-0-of-1.json"}
    for i, line in enumerate(GENEVAL_LINES):
        meta = files[f"{i:05d}/metadata.jsonl"].decode()
        assert meta == line + "\n"  # the prompt's line as it stands; GenEval's scorer reads it with json.load
        assert json.loads(meta) == json.loads(line)
    for name in files:
        if name.endswith(".png"):
            assert re.match(r"\d+\.png", Path(name).name)  # the scorer's own filter
            assert Image.open(tmp_path / "out" / name).size == (32, 32)
    recorded = json.loads(files["settings-0-of-1.json"])
    assert recorded == settings and recorded["complete"]
    assert recorded["sampling"] | {"prompts_sha256": None} == {
        "benchmark": "geneval", "model": "tiny", "image_size": 32, "steps": 1, "scheduler": "euler",
        "guidance": pipe.generator.cfg.generator.cfg_scale,  # None: the generator config's, recorded resolved
        "seed": 0, "samples_per_prompt": 2, "batch_size": 2, "prompts_sha256": None}
    import hashlib

    assert recorded["sampling"]["prompts_sha256"] == {geneval_file.name: hashlib.sha256(geneval_file.read_bytes()).hexdigest()}
    assert recorded["chunk"] == {"index": 0, "n_chunks": 1, "batches": 3, "prompts": 5, "prompts_total": 5,
                                 "drawn": 5, "skipped_done": 0}
    assert recorded["seeds"]["first_prompt_seeds"] == [0, 1] and "seed 42" in recorded["seeds"]["rule"]


def test_wise_and_imgedit_layouts(pipe, tmp_path):
    data = tmp_path / "WISE" / "data"
    data.mkdir(parents=True)
    (data / "natural_science.json").write_text(json.dumps(
        [{"prompt_id": 401, "Prompt": "ice in the sun", "Explanation": "water", "Subcategory": "Physics"}]))
    (data / "cultural_common_sense.json").write_text(json.dumps(
        [{"prompt_id": 1, "Prompt": "a flag", "Explanation": "x"}, {"prompt_id": 2, "Prompt": "a lantern"}]))
    plan = wise_plan(data)
    assert [it.prompt for it in plan.items] == ["a flag", "a lantern", "ice in the sun"]  # files by name, entries in order
    _dump(pipe, plan, tmp_path / "wise")
    assert set(_files(tmp_path / "wise")) == {"1.png", "2.png", "401.png", "settings-0-of-1.json"}

    bench = tmp_path / "ImgEdit" / "singleturn"
    (bench / "daily object").mkdir(parents=True)
    Image.new("RGB", (40, 30), (200, 10, 10)).save(bench / "daily object" / "000276684.jpg")
    Image.new("RGB", (16, 16), (10, 200, 10)).save(bench / "animal.png")
    (bench / "singleturn.json").write_text(json.dumps({
        "1136": {"id": "daily object/000276684.jpg", "prompt": "Change the object's color to blue.", "edit_type": "alter"},
        "97": {"id": "animal.png", "prompt": "Add a square.", "edit_type": "add"}}))
    plan = imgedit_plan(bench / "singleturn.json")  # the images default to the JSON's own folder, as officially
    assert [it.source for it in plan.items] == [bench / "daily object" / "000276684.jpg", bench / "animal.png"]
    settings = _dump(pipe, plan, tmp_path / "edit")
    assert set(_files(tmp_path / "edit")) == {"1136.png", "97.png", "settings-0-of-1.json"}
    assert settings["inputs"]["images"] == str(bench.resolve())


def test_chunks_cover_every_prompt_once_and_keep_their_batches():
    for n, bs in [(0, 1), (1, 4), (7, 1), (10, 3), (553, 4)]:
        whole = chunk_batches(n, bs, 0, 1)
        assert [i for b in whole for i in b] == list(range(n))
        for k in (1, 2, 3, 4, 8):
            parts = [chunk_batches(n, bs, i, k) for i in range(k)]
            items = sorted(i for part in parts for b in part for i in b)
            assert items == list(range(n))  # the union is everything, with no overlap
            assert sorted((b for part in parts for b in part), key=lambda r: r.start) == whole  # same batches
    for index, k in [(2, 2), (-1, 2), (0, 0)]:
        with pytest.raises(UniLIPError, match="--index|--n-chunks"):
            chunk_batches(10, 2, index, k)
    with pytest.raises(UniLIPError, match="--batch-size"):
        chunk_batches(10, 0, 0, 1)


def test_chunking_does_not_change_the_images(pipe, geneval_file, tmp_path):
    plan = geneval_plan(geneval_file, samples=2)
    _dump(pipe, plan, tmp_path / "one")
    for i in range(2):
        _dump(pipe, plan, tmp_path / "two", index=i, n_chunks=2)
    one, two = _files(tmp_path / "one"), _files(tmp_path / "two")
    assert set(two) - set(one) == {"settings-0-of-2.json", "settings-1-of-2.json"}
    assert all(two[name] == data for name, data in one.items() if not name.startswith("settings"))
    assert len({data for name, data in one.items() if name.endswith(".png")}) == 10  # every image its own noise


def test_resume_skips_finished_prompts_and_redraws_a_broken_batch(pipe, geneval_file, tmp_path):
    plan = geneval_plan(geneval_file, samples=2)
    out = tmp_path / "out"
    _dump(pipe, plan, out)
    before = _files(out)
    lost = out / "00003" / "samples" / "00001.png"
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.png") if p != lost}
    lost.unlink()  # as if killed while writing the second batch
    (out / "00003" / ".00001.png.123.tmp").write_bytes(b"half a png")  # a killed run's leftover is hidden
    settings = _dump(pipe, plan, out)
    assert settings["chunk"] | {"drawn": 2, "skipped_done": 3} == settings["chunk"]  # the broken batch (2 prompts) redrawn
    assert _files(out)["00003/samples/00001.png"] == before["00003/samples/00001.png"]
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items())  # finished files are left alone


def test_writes_are_atomic(tmp_path):
    class Broken:
        def save(self, path, format=None):
            Path(path).write_bytes(b"\x89PNG half")
            raise OSError("disk full")

    with pytest.raises(OSError):
        write_png(Broken(), tmp_path / "00000.png")
    assert list(tmp_path.iterdir()) == []  # neither the target nor the temporary file


def test_a_folder_drawn_with_other_settings_is_refused(pipe, geneval_file, tmp_path):
    plan = geneval_plan(geneval_file, samples=1)
    _dump(pipe, plan, tmp_path / "out", index=1, n_chunks=2)
    with pytest.raises(UniLIPError, match=r"other settings .*steps 1 there, 2 now"):
        _dump(pipe, plan, tmp_path / "out", index=0, n_chunks=2, steps=2)
    with pytest.raises(UniLIPError, match="batch_size"):
        _dump(pipe, plan, tmp_path / "out", index=0, n_chunks=2, batch_size=1)
    _dump(pipe, plan, tmp_path / "out", index=0, n_chunks=3)  # another chunking of the same settings is fine


def _error(capsys, argv):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("unilip: error: ") and err.count("\n") == 1
    return err


def test_bad_inputs_name_the_problem_and_write_nothing(pipeline_dir, geneval_file, tmp_path, capsys):
    out = tmp_path / "out"
    common = ["--model", str(pipeline_dir), "-o", str(out)]
    assert "does not exist" in _error(capsys, ["dump", "geneval", "--prompts", str(tmp_path / "nope.jsonl"), *common])
    bad = tmp_path / "bad.jsonl"
    bad.write_text(GENEVAL_LINES[0] + "\n" + GENEVAL_LINES[1] + "\n{'prompt': 'single quotes'}\n")
    assert "bad.jsonl, line 3: not a JSON object" in _error(capsys, ["dump", "geneval", "--prompts", str(bad), *common])
    bad.write_text(GENEVAL_LINES[0] + "\n" + '{"tag": "colors", "text": "no prompt"}\n')
    assert "line 2: needs a non-empty string field 'prompt'" in _error(capsys, ["dump", "geneval", "--prompts", str(bad), *common])
    assert "--index: must be in 0..1" in _error(
        capsys, ["dump", "geneval", "--prompts", str(geneval_file), "--index", "2", "--n-chunks", "2", *common])

    wise = tmp_path / "wise"
    wise.mkdir()
    (wise / "a.json").write_text(json.dumps([{"prompt_id": 1, "Prompt": "a flag"}]))
    (wise / "b.json").write_text(json.dumps([{"prompt_id": 1, "Prompt": "a lantern"}]))
    assert "b.json, entry 0: prompt_id 1 is also in" in _error(capsys, ["dump", "wise", "--prompts", str(wise), *common])
    (wise / "b.json").write_text(json.dumps([{"prompt_id": 2, "prompt": "lower case"}]))
    assert "b.json, entry 0: needs a non-empty string field 'Prompt'" in _error(
        capsys, ["dump", "wise", "--prompts", str(wise), *common])

    bench = tmp_path / "singleturn.json"
    Image.new("RGB", (8, 8)).save(tmp_path / "here.png")
    bench.write_text(json.dumps({"1": {"id": "here.png", "prompt": "add a circle"},
                                 "2": {"id": "animal/000342021.jpg", "prompt": "remove the square"}}))
    err = _error(capsys, ["dump", "imgedit", "--bench", str(bench), *common])
    assert "1 ImgEdit source image(s) missing" in err and str(tmp_path / "animal" / "000342021.jpg") in err
    bench.write_text(json.dumps({"1": {"image": "here.png", "prompt": "add a circle"}}))
    assert "key '1': needs a string field 'id'" in _error(capsys, ["dump", "imgedit", "--bench", str(bench), *common])
    assert not out.exists()


def test_cli_dump_in_chunks(pipeline_dir, tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    (data / "spatio-temporal_reasoning.json").write_text(json.dumps(
        [{"prompt_id": i, "Prompt": f"{i} red circles"} for i in range(801, 804)]))
    for i in range(2):
        assert main(["dump", "wise", "--prompts", str(data), "--model", str(pipeline_dir), "--batch-size", "1",
                     "--index", str(i), "--n-chunks", "2", "-o", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    assert "wise chunk 0 of 2: 2 of 3 prompts (2 drawn" in printed and "chunk 1 of 2: 1 of 3" in printed
    assert set(_files(tmp_path / "out")) == {"801.png", "802.png", "803.png", "settings-0-of-2.json", "settings-1-of-2.json"}
    assert json.loads((tmp_path / "out" / "settings-1-of-2.json").read_text())["sampling"]["model"] == str(pipeline_dir.resolve())


def test_console_script_reports_a_missing_source_in_one_line(tmp_path):
    """The installed command, in a fresh process: the input check fails before any model loads or file is written."""
    bench = tmp_path / "singleturn.json"
    bench.write_text(json.dumps({"7": {"id": "gone.jpg", "prompt": "make it red"}}))
    exe = Path(sys.executable).with_name("unilip")
    r = subprocess.run([str(exe), "dump", "imgedit", "--bench", str(bench), "--images", str(tmp_path),
                        "-o", str(tmp_path / "out")], check=False, capture_output=True, text=True,
                       timeout=120,
                       env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr == (f"unilip: error: 1 ImgEdit source image(s) missing: {tmp_path / 'gone.jpg'} "
                        "(--images is the folder the 'id' paths are relative to)\n")
    assert not (tmp_path / "out").exists()
