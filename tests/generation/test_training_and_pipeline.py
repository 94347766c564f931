"""Generator training (groups, data, exact resume, reports), saving and loading, the pipeline and its CLI."""

import json
import re

import numpy as np
import pytest
import torch
from tiny import TINY_DIT, TINY_MODEL, save_tiny_components, torchrun_train

from unilip.errors import ConfigError, UniLIPError
from unilip.train.generator_data import GenerationData, GenerationMix
from unilip.generation.model import UniLIPGenerator
from unilip.pipeline import UniLIPPipeline
from unilip.train.generator import GeneratorTask, load_generator_config, train_generator


@pytest.fixture(scope="module")
def components(tmp_path_factory):
    """A tiny MLLM and tokenizer on disk, as a generator stage reads them."""
    return save_tiny_components(tmp_path_factory.mktemp("components"))


def _cfg_args(components, out, *extra, steps=3):
    return [*TINY_MODEL, *TINY_DIT, f"model.mllm.pretrained={components / 'mllm'}", f"tokenizer={components / 'tokenizer'}",
            f"loop.output_dir={out}", f"loop.max_steps={steps}", f"loop.save_every={steps}", "loop.batch_size=6",
            "loop.log_every=1", "loop.report_every=0", "loop.progress=false", "optim.warmup_steps=1", "optim.lr=1e-3",
            "mix.edit=0.5", *extra]


def _cfg(components, out, *extra, steps=3):
    return load_generator_config(None, _cfg_args(components, out, *extra, steps=steps))


def test_data_mixes_captions_edits_knowledge_and_dropout():
    from unilip.config import get_preset

    data = GenerationData(get_preset("mini").miniworld, GenerationMix(edit=0.3, knowledge=1.0, loose=0.5, cfg_dropout=0.1))
    items = [data.make(p) for p in range(200)]
    edits = [it for it in items if it["source"] is not None]
    assert len(edits) == 60  # 6 of every 20 positions
    prompts = [it["prompt"] for it in items]
    assert any("in the color of" in p or "shape that" in p for p in prompts)  # knowledge-phrased single objects
    assert 5 <= sum(p in ("Generate an image.", "Edit the image.") for p in prompts) <= 40  # ~10 % dropout
    assert data.make(7)["prompt"] == data.make(7)["prompt"]  # a position always gives the same item
    batch = data.collate(items[:20])
    assert batch["images"].shape == (20, 3, 64, 64) and batch["sources"].shape == (6, 3, 64, 64)
    assert all(p in [it["prompt"] for it in edits] for p in batch["prompts"][-6:])  # edits go last
    relation_form = r"an? \w+ \w+ (to the left of|to the right of|above|below) an? \w+ \w+"

    def relational(share):
        mix = GenerationMix(edit=0.0, loose=0.0, knowledge=0.0, cfg_dropout=0.0, relation=share)
        related = GenerationData(get_preset("mini").miniworld, mix)
        return sum(bool(re.fullmatch(relation_form, related.make(p)["prompt"])) for p in range(100))

    assert relational(0.0) < 15 and relational(1.0) > 40  # the share restates most multi-object scenes


def test_stage_trains_only_its_groups(components, tmp_path):
    cfg = _cfg(components, tmp_path, "stage.trainable={queries: 1.0, projector: 1.0}")
    task = GeneratorTask(cfg)
    trainable = {n for n, p in task.model.named_parameters() if p.requires_grad}
    assert trainable == {"conditioner.queries", "connector.proj.weight", "connector.proj.bias"}
    before = {k: v.clone() for k, v in task.model.state_dict().items()}
    train_generator(cfg)
    final = UniLIPGenerator.from_pretrained(tmp_path / "final", task.model.conditioner.mllm, task.model.tokenizer, cfg.model)
    after = final.state_dict()
    assert not torch.equal(before["conditioner.queries"], after["conditioner.queries"])
    assert torch.equal(before["dit.proj_out.weight"], after["dit.proj_out.weight"])  # frozen DiT untouched
    assert torch.equal(before["connector.layers.0.mlp.up_proj.weight"], after["connector.layers.0.mlp.up_proj.weight"])
    saved = json.loads((tmp_path / "final" / "config.json").read_text())
    assert saved["_class_name"] == "UniLIPGenerator" and saved["latent_shape"] == [32, 2, 2]


def test_resume_reproduces_the_uninterrupted_run(components, tmp_path):
    full = train_generator(_cfg(components, tmp_path / "full", steps=4))
    train_generator(_cfg(components, tmp_path / "cut", "loop.save_every=2", steps=2))
    train_generator(_cfg(components, tmp_path / "cut", "loop.save_every=2", steps=4), resume=True)
    from safetensors.torch import load_file

    a, b = load_file(str(full / "final" / "model.safetensors")), load_file(str(tmp_path / "cut" / "final" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_report_writes_the_learning_curve(components, tmp_path):
    train_generator(_cfg(components, tmp_path, "loop.report_every=2", "eval_prompts=4", steps=2))
    row = json.loads((tmp_path / "eval.jsonl").read_text().splitlines()[0])
    assert row["step"] == 2 and 0 <= row["overall"] <= 1
    assert (tmp_path / "images" / "geneval-0000002.png").is_file()


def test_bad_generator_configs(components, tmp_path):
    with pytest.raises(ConfigError, match="trainable.decoder"):
        _cfg(components, tmp_path, "stage.trainable={decoder: 1.0}")
    with pytest.raises(ConfigError, match="condition_mode"):
        _cfg(components, tmp_path, "stage.condition_mode=both")
    with pytest.raises(ConfigError, match="mix.edit"):
        _cfg(components, tmp_path, "mix.edit=1.5")


@pytest.fixture(scope="module")
def pipeline_dir(components, tmp_path_factory):
    out = tmp_path_factory.mktemp("pipe")
    task = GeneratorTask(_cfg(components, out / "run"))
    UniLIPPipeline(task.model).save_pretrained(out / "pipe")
    return out / "pipe"


def test_pipeline_round_trip_seeds_and_arguments(pipeline_dir, tmp_path):
    pipe = UniLIPPipeline.from_pretrained(pipeline_dir)
    pipe.set_progress_bar_config(disable=True)
    g = lambda s: torch.Generator().manual_seed(s)
    a = pipe("a red circle", generator=g(1), output_type="pt").images
    b = pipe("a red circle", generator=g(1), output_type="pt").images
    c = pipe("a red circle", generator=g(2), output_type="pt").images
    assert a.shape == (1, 3, 32, 32) and torch.equal(a, b) and not torch.equal(a, c)
    many = pipe(["a red circle", "two squares"], num_images_per_prompt=3, output_type="np",
                generator=[g(i) for i in range(6)]).images
    assert many.shape == (6, 32, 32, 3) and many.dtype == np.uint8
    alone = pipe(["two squares"], generator=[g(3)], output_type="np").images
    # per-image seeds: an image does not depend on its batch (up to float rounding of batched matmuls)
    assert np.abs(many[3].astype(int) - alone[0]).max() <= 1 and not np.array_equal(many[3], many[4])
    steps = pipe("a red circle", generator=g(1), num_inference_steps=5, output_type="pt").images
    guided = pipe("a red circle", generator=g(1), guidance_scale=4.0, output_type="pt").images
    negative = pipe("a red circle", generator=g(1), negative_prompt="a blue square", output_type="pt").images
    assert not torch.equal(a, steps) and not torch.equal(a, guided) and not torch.equal(a, negative)
    pil = pipe("a red circle", generator=g(1)).images[0]
    assert pil.size == (32, 32)
    edited = pipe(["remove the circle", "make it red"], image=pil, generator=[g(0), g(1)], output_type="np").images
    assert edited.shape == (2, 32, 32, 3)
    pipe.save_pretrained(tmp_path / "again")
    again = UniLIPPipeline.from_pretrained(tmp_path / "again")
    assert torch.equal(again("a red circle", generator=g(1), output_type="pt").images, a)


def test_pipeline_bad_input(pipeline_dir, tmp_path):
    pipe = UniLIPPipeline.from_pretrained(pipeline_dir)
    with pytest.raises(UniLIPError, match="prompt"):
        pipe("  ")
    with pytest.raises(UniLIPError, match="output_type"):
        pipe("a circle", output_type="jpeg")
    for kwargs, message in (({"guidance_scale": float("nan")}, "guidance_scale: expected a finite number"),
                            ({"guidance_scale": 1e9}, r"guidance_scale: must be in \[1"),
                            ({"num_inference_steps": 0}, r"num_inference_steps: must be in \[1, 1000\]"),
                            ({"num_images_per_prompt": 10**6}, "num_images_per_prompt"),
                            ({"negative_prompt": "<img>" * 1000}, "negative_prompt: 5000 characters")):
        with pytest.raises(UniLIPError, match=message):
            pipe("a circle", **kwargs)
    for prompt in ("a <img> circle", "<IMG_CONTEXT>", "x <|im_end|>"):
        with pytest.raises(UniLIPError, match="chat markup"):
            pipe(prompt)
    with pytest.raises(UniLIPError, match="at most 1000 are allowed"):
        pipe("a" * 100_000)
    with pytest.raises(UniLIPError, match="source images"):
        pipe(["a", "b", "c"], image=[torch.rand(3, 32, 32), torch.rand(3, 32, 32)])
    with pytest.raises(UniLIPError, match="generators"):
        pipe(["a", "b"], generator=[torch.Generator()])
    with pytest.raises(UniLIPError, match="not a UniLIP pipeline directory"):
        UniLIPPipeline.from_pretrained(tmp_path)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(UniLIPError, match="bad.png"):
        pipe("remove the circle", image=bad)


def test_a_non_square_edit_source_is_cropped_or_squashed_as_the_generator_says(pipeline_dir):
    from PIL import Image

    pipe = UniLIPPipeline.from_pretrained(pipeline_dir)
    pixels = np.random.default_rng(0).integers(0, 256, (30, 52, 3), dtype=np.uint8)  # 52 x 30, as a 520 x 300 photo
    source = Image.fromarray(pixels)
    assert pipe.generator.cfg.generator.edit_source_resize == "crop"
    cropped = pipe._source_tensor(source, 1)[0]
    # ours: the shorter side to 32, the centre 32 x 32
    shorter = source.resize((55, 32), Image.Resampling.BICUBIC, reducing_gap=None)
    torch.testing.assert_close(cropped, torch.from_numpy(np.asarray(shorter)[:, 11:43]).permute(2, 0, 1).float() / 255)
    # the official edit pipeline, written from its description: PIL `resize((S, S))` (bicubic), then / 255
    pipe.generator.cfg.generator.edit_source_resize = "squash"
    official = torch.from_numpy(np.asarray(source.resize((32, 32)))).permute(2, 0, 1).float() / 255
    torch.testing.assert_close(pipe._source_tensor(source, 1)[0], official, atol=0, rtol=0)
    assert (cropped - official).abs().max() > 0.1


def test_generator_refuses_a_tokenizer_of_another_shape(pipeline_dir, components):
    from unilip.mllm.model import MLLM
    from unilip.tokenizer import UniLIPTokenizer
    from unilip.train.tokenizer import load_train_config

    cfg = load_train_config(None, [*TINY_MODEL, "model.tokenizer.latent_channels=16"]).model
    other = UniLIPTokenizer.from_config(cfg)
    with pytest.raises(UniLIPError, match="latents of shape"):
        UniLIPGenerator.from_pretrained(pipeline_dir / "generator", MLLM.from_pretrained(components / "mllm"), other)


def test_cli_generate_and_edit_same_seed_same_images(pipeline_dir, tmp_path):
    from unilip.cli import main

    assert main(["generate", "a", "red", "circle", "--model", str(pipeline_dir), "-n", "2", "--seed", "5", "-o", str(tmp_path / "a")]) == 0
    assert main(["generate", "a red circle", "--model", str(pipeline_dir), "-n", "2", "--seed", "5", "-o", str(tmp_path / "b")]) == 0
    for name in ("0000.png", "0001.png"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert main(["edit", str(tmp_path / "a" / "0000.png"), "remove the circle", "--model", str(pipeline_dir),
                 "--steps", "1", "-o", str(tmp_path / "e")]) == 0
    assert (tmp_path / "e" / "0000.png").is_file()
    assert main(["edit", str(tmp_path / "missing.png"), "remove it", "--model", str(pipeline_dir), "-o", str(tmp_path / "e")]) == 2


def test_two_processes_train_the_generator_in_step(components, tmp_path):
    """torchrun with 2 CPU processes (gloo): the ranks end with identical weights; rank 0 writes the final model."""
    cfg_args = [a for a in _cfg_args(components, tmp_path / "ddp", steps=2) if not a.startswith("loop.output_dir=")]
    torchrun_train("generator", [*cfg_args, "loop.batch_size=3"], tmp_path / "ddp", tmp_path / "torchrun.log")
    assert (tmp_path / "ddp" / "final" / "model.safetensors").is_file()


@pytest.mark.parametrize("bench", ["geneval-mini", "imgedit-mini", "wise-mini"])
def test_cli_benchmarks_write_json_and_html(pipeline_dir, tmp_path, bench):
    from unilip.cli import main

    assert main(["eval", bench, "--model", str(pipeline_dir), "--samples", "1", "--steps", "1", "-o", str(tmp_path)]) == 0
    result = json.loads((tmp_path / f"{bench}.json").read_text())
    assert 0 <= result["summary"]["overall"] <= 1 and result["rows"]
    assert (tmp_path / f"{bench}.html").read_text().count("<figure>") >= 5


def test_cli_latent_scale_is_one_over_the_latent_std(components, capsys):
    from unilip.cli import main
    from unilip.data.miniworld import render, sample_split
    from unilip.generation.model import measure_latent_scale
    from unilip.tokenizer import UniLIPTokenizer
    from unilip.train.mllm import load_mllm_config

    assert main(["latent-scale", "--tokenizer", str(components / "tokenizer"), "--n", "8"]) == 0
    printed = float(capsys.readouterr().out.split()[2])
    world = load_mllm_config(None, TINY_MODEL).model.miniworld
    images = torch.from_numpy(np.stack([render(s, world) for s in sample_split(world, "train", 0, 8)])).permute(0, 3, 1, 2) / 255
    expected = measure_latent_scale(UniLIPTokenizer.from_pretrained(components / "tokenizer").eval(), images.float())
    assert printed == pytest.approx(expected, rel=0.02)  # the CLI renders at 64 px and resizes to the tokenizer's 32


def test_the_frozen_pool_serves_what_the_renderer_would_and_resumes_exactly(components, tmp_path):
    from unilip.train.frozen_pool import FrozenPool

    task = GeneratorTask(_cfg(components, tmp_path / "x"))
    model, data = task.model, task.data
    pool = FrozenPool(model, data, 12, chunk=4, progress=False)  # the last chunk mixes edits and captions
    assert sorted(pool.index(p) for p in range(12)) == list(range(12))  # each epoch: a permutation of the pool
    assert [pool.index(p) for p in range(12, 24)] != [pool.index(p) for p in range(12)]
    # item i of the pool: the latent and the conditions the render-every-step path computes for stream position i
    for i in (0, 9, 10, 11):  # edits and captions (mix.edit=0.5: positions 0-9 of each 20 are edits)
        item, raw = {"latent": pool.latents[i], "prefix": pool.prefixes[i]}, data.make(i)
        torch.testing.assert_close(item["latent"], model.latents(raw["image"][None])[0])
        sources = None if raw["source"] is None else raw["source"][None]
        expected, mask = model.conditions_of(model.prefix([raw["prompt"]], sources))
        got, got_mask = model.conditions_of(FrozenPool.collate([item])["prefix"])
        assert torch.equal(got_mask, mask)
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    prompts = [data.make(p)["prompt"] for p in range(10, 20)]  # captions: one prefix per distinct text
    assert len({id(pool.prefixes[p]) for p in range(10, 12)}) == len(set(prompts[:2]))
    # a pooled run resumes to the same weights as the uninterrupted one
    full = train_generator(_cfg(components, tmp_path / "full", "pool=12", steps=4))
    train_generator(_cfg(components, tmp_path / "cut", "pool=12", "loop.save_every=2", steps=2))
    train_generator(_cfg(components, tmp_path / "cut", "pool=12", "loop.save_every=2", steps=4), resume=True)
    from safetensors.torch import load_file

    a, b = load_file(str(full / "final" / "model.safetensors")), load_file(str(tmp_path / "cut" / "final" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ConfigError, match="pool"):
        _cfg(components, tmp_path / "y", "pool=-1")


def test_int8_weights_for_the_language_model_connector_and_dit(pipeline_dir):
    pytest.importorskip("torchao")  # the quant extra (CI installs it with the test extra)
    pipe = UniLIPPipeline.from_pretrained(pipeline_dir)
    pipe.set_progress_bar_config(disable=True)
    g = lambda: torch.Generator().manual_seed(5)  # noqa: E731
    before = pipe("a red circle", generator=g(), output_type="pt").images
    decoder_weight = pipe.generator.tokenizer.decoder.conv_in.weight.clone()
    pipe.quantize("int8")
    assert type(pipe.generator.dit.transformer_blocks[0].attn1.to_q.weight).__name__ == "Int8Tensor"
    assert type(pipe.generator.connector.layers[0].self_attn.q_proj.weight).__name__ == "Int8Tensor"
    assert torch.equal(pipe.generator.tokenizer.decoder.conv_in.weight, decoder_weight)  # the decoder keeps its weights
    after = pipe("a red circle", generator=g(), output_type="pt").images
    assert after.shape == before.shape and torch.isfinite(after).all()
    assert (after - before).abs().mean() < 0.05  # per-channel int8: close to the fp32 image, not equal
    with pytest.raises(UniLIPError, match="int8"):
        pipe.quantize("int4")


def test_model_offload_moves_each_component_only_while_it_runs(pipeline_dir, monkeypatch):
    pipe = UniLIPPipeline.from_pretrained(pipeline_dir)
    pipe.set_progress_bar_config(disable=True)
    g = lambda: torch.Generator().manual_seed(2)  # noqa: E731
    source = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(0))
    plain = pipe("make it red", image=source, generator=g(), output_type="pt").images
    model = pipe.generator
    names = {id(model.tokenizer.encoder): "encoder", id(model.conditioner): "mllm", id(model.connector): "connector",
             id(model.dit): "dit", id(model.tokenizer.decoder): "decoder"}
    moves = []
    original_to = torch.nn.Module.to

    def spy(self, *args, **kwargs):
        if id(self) in names:
            moves.append((names[id(self)], str(args[0] if args else kwargs.get("device"))))
        return original_to(self, *args, **kwargs)

    pipe.enable_model_cpu_offload("cpu")  # the execution device is the CPU here: the order of the moves is the test
    monkeypatch.setattr(torch.nn.Module, "to", spy)
    offloaded = pipe("make it red", image=source, generator=g(), output_type="pt").images
    assert torch.equal(plain, offloaded)
    assert [m for m, _ in moves] == ["encoder", "encoder", "mllm", "connector", "mllm", "connector", "dit", "dit",
                                     "decoder", "decoder"]
    assert pipe.device == torch.device("cpu")


def test_sequential_offload_keeps_the_weights_off_the_device_between_layers(pipeline_dir, monkeypatch):
    pipe = UniLIPPipeline.from_pretrained(pipeline_dir)
    pipe.set_progress_bar_config(disable=True)
    g = lambda: torch.Generator().manual_seed(2)  # noqa: E731
    source = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(0))
    plain = [pipe("a red circle", generator=g(), output_type="pt").images,
             pipe("make it red", image=source, generator=g(), output_type="pt").images]
    pipe.enable_sequential_cpu_offload("cpu")  # the CPU as the execution device: where the weights wait is the test
    model = pipe.generator
    units = [model.tokenizer.encoder.vision_tower, model.conditioner.mllm.model, model.connector, model.dit,
             model.tokenizer.decoder]
    assert all(p.is_meta for unit in units for p in unit.parameters())  # each layer's weights only in its forward
    assert not model.conditioner.queries.is_meta and model.conditioner.queries.device == pipe.device
    used = []
    linear = torch.nn.functional.linear
    monkeypatch.setattr(torch.nn.functional, "linear", lambda x, w, b=None: used.append(w.is_meta) or linear(x, w, b))
    offloaded = [pipe("a red circle", generator=g(), output_type="pt").images,
                 pipe("make it red", image=source, generator=g(), output_type="pt").images]
    assert torch.equal(plain[0], offloaded[0]) and torch.equal(plain[1], offloaded[1])
    assert used and not any(used)  # every weight the maths touched was materialised for it
    assert all(p.is_meta for unit in units for p in unit.parameters())
    with pytest.raises(UniLIPError, match="layer by layer"):
        pipe.to("cpu")
    with pytest.raises(UniLIPError, match="already offloaded"):
        pipe.enable_model_cpu_offload("cpu")


def test_compile_hands_the_decoder_to_torch_compile(pipeline_dir, monkeypatch):
    """What ``compile()`` hands to torch.compile (compiling for real takes tens of seconds: measured in
    benchmarks/generation_speed.py, not here)."""
    pipe = UniLIPPipeline.from_pretrained(pipeline_dir)
    compiled = []
    monkeypatch.setattr(torch.nn.Module, "compile", lambda self, *a, **k: compiled.append(self))
    assert pipe.compile() is pipe
    model = pipe.generator
    assert compiled == [model.tokenizer.decoder]
