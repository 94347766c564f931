"""Official UniLIP checkpoints -> ours -> official: exact round trips at tiny sizes, names and shapes at the true 1B
sizes on `meta`, InternViT's fused-qkv attention against transformers' split layout, and malformed checkpoints."""

import json
import os
import pickle

import pytest
import torch
from tiny import TINY_DIT, TINY_MODEL

from unilip.config import UniLIPConfig, get_preset, load_config
from unilip.convert.official import (
    convert_official_generator,
    convert_official_tokenizer,
    export_internvl,
    export_official_generator,
    export_official_tokenizer,
    official_generator_to_ours,
    official_tokenizer_to_ours,
    ours_to_official_generator,
    ours_to_official_tokenizer,
    tokenizer_template,
)
from unilip.errors import UniLIPError
from unilip.hub import check_state_dict

UNILIP_OVERRIDES = [o.removeprefix("model.") for o in [*TINY_MODEL, *TINY_DIT, "model.mllm.vision.attention_bias=true"]]


def _tiny_cfg() -> UniLIPConfig:
    return load_config(UniLIPConfig, None, UNILIP_OVERRIDES, preset="mini")


def _jitter(module: torch.nn.Module) -> torch.nn.Module:
    """Random weights everywhere (zero-initialised output layers would make 'identical outputs' trivially true)."""
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return module


@pytest.fixture(scope="module")
def pipe():
    from unilip.generation.model import UniLIPGenerator
    from unilip.pipeline import UniLIPPipeline
    from unilip.mllm.model import MLLM
    from unilip.mllm.chat import build_text_tokenizer
    from unilip.tokenizer import UniLIPTokenizer

    torch.manual_seed(0)
    cfg = _tiny_cfg()
    mllm = _jitter(MLLM.from_config(cfg, build_text_tokenizer(image_seq_length=4)))
    tok = _jitter(UniLIPTokenizer.from_config(cfg))
    gen = UniLIPGenerator(cfg, mllm, tok)
    _jitter(gen.connector), _jitter(gen.dit), _jitter(gen.conditioner).requires_grad_(False)
    return UniLIPPipeline(gen.eval())


def _images(pipe, seed=3, scheduler="euler"):
    """Two generations and an edit; one named sampler, since a converted official pipeline defaults to SANA's."""
    gens = [torch.Generator().manual_seed(seed + i) for i in range(2)]
    t2i = pipe(["a red circle", "two blue squares"], generator=gens, output_type="pt", scheduler=scheduler).images
    src = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(seed))
    edit = pipe(["make it green"], image=src, generator=torch.Generator().manual_seed(seed), output_type="pt",
                scheduler=scheduler).images
    return t2i, edit


# ------------------------------------------------------------------------------------------------------ InternViT


def _original_internvit_layer(state, prefix, x, heads):
    """The original remote-code InternViT layer (fused qkv), written out from its math, on original keys."""
    def ln(t, name):
        return torch.nn.functional.layer_norm(t, t.shape[-1:], state[f"{prefix}{name}.weight"], state[f"{prefix}{name}.bias"], 1e-6)

    b, n, c = x.shape
    h = ln(x, "norm1")
    qkv = torch.nn.functional.linear(h, state[f"{prefix}attn.qkv.weight"], state[f"{prefix}attn.qkv.bias"])
    q, k, v = qkv.reshape(b, n, 3, heads, c // heads).permute(2, 0, 3, 1, 4).unbind(0)  # (B, H, N, d) each
    attn = ((q * (c // heads) ** -0.5) @ k.transpose(-2, -1)).softmax(-1)
    h = (attn @ v).transpose(1, 2).reshape(b, n, c)
    h = torch.nn.functional.linear(h, state[f"{prefix}attn.proj.weight"], state[f"{prefix}attn.proj.bias"])
    x = x + h * state[f"{prefix}ls1"]
    h = ln(x, "norm2")
    h = torch.nn.functional.linear(h, state[f"{prefix}mlp.fc1.weight"], state[f"{prefix}mlp.fc1.bias"])
    h = torch.nn.functional.linear(torch.nn.functional.gelu(h), state[f"{prefix}mlp.fc2.weight"], state[f"{prefix}mlp.fc2.bias"])
    return x + h * state[f"{prefix}ls2"]


def test_fused_qkv_attention_equals_the_split_transformers_layer():
    from transformers import InternVLVisionConfig, InternVLVisionModel

    from unilip.convert.internvit import original_to_hf_tower

    torch.manual_seed(0)
    config = InternVLVisionConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                                  image_size=32, patch_size=4, attention_bias=True, use_mean_pooling=True)
    c = config.hidden_size
    original = {"embeddings.class_embedding": torch.randn(1, 1, c), "embeddings.position_embedding": torch.randn(1, 65, c),
                "embeddings.patch_embedding.weight": torch.randn(c, 3, 4, 4), "embeddings.patch_embedding.bias": torch.randn(c)}
    for i in range(2):
        p = f"encoder.layers.{i}."
        original.update({p + "attn.qkv.weight": torch.randn(3 * c, c) / 6, p + "attn.qkv.bias": torch.randn(3 * c),
                         p + "attn.proj.weight": torch.randn(c, c) / 6, p + "attn.proj.bias": torch.randn(c),
                         p + "mlp.fc1.weight": torch.randn(64, c) / 6, p + "mlp.fc1.bias": torch.randn(64),
                         p + "mlp.fc2.weight": torch.randn(c, 64) / 8, p + "mlp.fc2.bias": torch.randn(c),
                         p + "norm1.weight": 1 + torch.randn(c) / 5, p + "norm1.bias": torch.randn(c) / 5,
                         p + "norm2.weight": 1 + torch.randn(c) / 5, p + "norm2.bias": torch.randn(c) / 5,
                         p + "ls1": torch.rand(c), p + "ls2": torch.rand(c)})
    model = InternVLVisionModel(config).eval()
    model.load_state_dict(original_to_hf_tower(original), strict=True)
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        ours = model(pixel_values=images).last_hidden_state
        x = torch.nn.functional.conv2d(images, original["embeddings.patch_embedding.weight"],
                                       original["embeddings.patch_embedding.bias"], stride=4).flatten(2).transpose(1, 2)
        x = torch.cat([original["embeddings.class_embedding"].expand(2, -1, -1), x], 1) + original["embeddings.position_embedding"]
        for i in range(2):
            x = _original_internvit_layer(original, f"encoder.layers.{i}.", x, heads=4)
    torch.testing.assert_close(ours, x, rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------------------------------- round trips


def test_tokenizer_round_trip_is_exact(pipe, tmp_path):
    from unilip.tokenizer import UniLIPTokenizer

    pipe.generator.tokenizer.save_pretrained(tmp_path / "ours")
    tok = UniLIPTokenizer.from_pretrained(tmp_path / "ours")  # the reference: the same weights, loaded the same way
    pth = export_official_tokenizer(tmp_path / "ours", tmp_path / "1b_unilip.pth")
    official = torch.load(pth, weights_only=True)
    assert "encoder.encoder.layers.0.attn.qkv.weight" in official and "mlp1.1.weight" in official
    assert "down_blocks.0.mlp.1.weight" in official and "down_mlp.3.weight" in official
    assert not any("q_proj" in k or "lambda" in k or "vision_tower" in k for k in official)
    back = UniLIPTokenizer.from_pretrained(convert_official_tokenizer(pth, tmp_path / "back", _tiny_cfg()))
    for key, value in tok.state_dict().items():
        assert torch.equal(value, back.state_dict()[key]), key
    images = torch.rand(2, 3, 32, 32)
    assert torch.equal(tok.reconstruct(images), back.reconstruct(images))
    assert torch.equal(tok.features(images), back.features(images))


def test_generator_round_trip_gives_identical_images(pipe, tmp_path):
    from unilip.pipeline import UniLIPPipeline

    src = export_official_generator(pipe, tmp_path / "UniLIP-tiny", {"mllm_path": "OpenGVLab/InternVL3-1B"})
    config = json.loads((src / "config.json").read_text())
    assert config["model_type"] == "unilip_internvl" and config["n_query"] == 3 and config["unilip_factor"] == 2.0
    from safetensors import safe_open

    with safe_open(str(src / "model.safetensors"), "pt") as f:
        keys = set(f.keys())
    assert {"model.latent_queries", "model.projector.weight", "model.llm_connector.layers.0.self_attn.q_proj.weight",
            "model.vision_tower.encoder.layers.0.attn.qkv.weight", "model.multi_modal_projector.3.weight",
            "model.vae_decoder.down_mlp.0.weight", "lm_head.weight"} <= keys
    assert any(k.startswith("model.dit.") for k in keys) and any(k.startswith("model.vae_decoder.decoder.") for k in keys)

    pipe.save_pretrained(tmp_path / "reference")
    expected = _images(UniLIPPipeline.from_pretrained(tmp_path / "reference"))
    converted = UniLIPPipeline.from_pretrained(convert_official_generator(src, tmp_path / "ours", _tiny_cfg()))
    for a, b in zip(expected, _images(converted)):
        assert torch.equal(a, b)
    assert (tmp_path / "ours" / "mllm" / "tokenizer.json").is_file()
    # the official conventions come with the weights: SANA's sampler (timesteps 999, 982, 963, ... at 20 steps) and
    # the source image squashed to the model's size
    from unilip.generation.flow import describe_scheduler

    assert describe_scheduler(converted.scheduler) == "dpm (flow_shift 3)"
    converted.scheduler.set_timesteps(20)
    assert converted.scheduler.timesteps[:5].tolist() == [999, 982, 963, 944, 922]
    assert converted.generator.cfg.generator.edit_source_resize == "squash"
    converted.save_pretrained(tmp_path / "resaved")
    resaved = UniLIPPipeline.from_pretrained(tmp_path / "resaved")
    assert resaved.scheduler.config == converted.scheduler.config
    assert resaved.generator.cfg.generator.edit_source_resize == "squash"
    assert not torch.equal(_images(converted, scheduler=None)[0], expected[0])  # the default sampler is not Euler


def test_model_flag_takes_an_official_directory_or_pth(pipe, tmp_path, monkeypatch, caplog):
    """--model DIR: an official directory is detected and converted on the fly (auto-detection needs 1b/2b widths,
    so the tiny architecture is named by patching the preset lookup the way --preset would)."""
    import unilip.convert.official as official
    from unilip.pipeline import UniLIPPipeline
    from unilip.pretrained import resolve_model
    from unilip.tokenizer import UniLIPTokenizer

    monkeypatch.setattr(official, "_preset_for_width", lambda dim, source: _tiny_cfg())
    src = export_official_generator(pipe, tmp_path / "UniLIP-tiny")
    with caplog.at_level("WARNING", logger="unilip.convert"):
        on_the_fly = UniLIPPipeline.from_pretrained(src)
    assert "unilip convert official-generator" in caplog.text
    pipe.save_pretrained(tmp_path / "reference")
    for a, b in zip(_images(UniLIPPipeline.from_pretrained(tmp_path / "reference")), _images(on_the_fly)):
        assert torch.equal(a, b)
    pipe.generator.tokenizer.save_pretrained(tmp_path / "tok")
    pth = export_official_tokenizer(tmp_path / "tok", tmp_path / "t.pth")
    tok = UniLIPTokenizer.from_pretrained(resolve_model(pth, "tokenizer"))
    assert torch.equal(tok.decoder.conv_in.weight, pipe.generator.tokenizer.decoder.conv_in.weight)
    assert resolve_model(src, "mllm").name == "mllm"
    with pytest.raises(UniLIPError, match="holds no mllm"):
        resolve_model(pth, "mllm")


def test_export_internvl_loads_in_plain_transformers(pipe, tmp_path):
    from transformers import InternVLForConditionalGeneration

    gen = pipe.generator
    gen.tokenizer.save_pretrained(tmp_path / "tok")
    gen.conditioner.mllm.save_pretrained(tmp_path / "mllm")
    export_internvl(tmp_path / "tok", tmp_path / "mllm", tmp_path / "internvl")
    model = InternVLForConditionalGeneration.from_pretrained(tmp_path / "internvl").eval()
    images = torch.rand(2, 3, 32, 32)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        features = model.model.get_image_features(pixel_values=(images - mean) / std)
        features = getattr(features, "pooler_output", features)
    torch.testing.assert_close(features.reshape(2, -1, features.shape[-1]), gen.tokenizer.features(images), rtol=0, atol=1e-6)
    assert torch.equal(model.model.language_model.embed_tokens.weight,
                       gen.conditioner.mllm.model.model.language_model.embed_tokens.weight)


# --------------------------------------------------------------------------------------- true sizes, on meta


@pytest.mark.parametrize(("name", "dim", "dit_layers"), [("1b", 896, 28), ("2b", 1536, 20)])
def test_official_names_and_shapes_at_full_size_on_meta(name, dim, dit_layers):
    from unilip.convert.official import _generator_shapes
    from unilip.mllm.model import internvl_config
    from unilip.mllm.chat import build_text_tokenizer

    cfg = get_preset(name)
    tok = {k: torch.empty(v, device="meta") for k, v in tokenizer_template(cfg).state_dict().items()
           for v in [v.shape]}
    official_tok = ours_to_official_tokenizer(tok)
    assert official_tok["encoder.encoder.layers.23.attn.qkv.weight"].shape == (3072, 1024)
    assert official_tok["encoder.embeddings.class_embedding"].shape == (1, 1, 1024)
    assert official_tok["encoder.embeddings.position_embedding"].shape == (1, 1025, 1024)
    assert official_tok["mlp1.1.weight"].shape == (dim, 4096) and official_tok["mlp1.0.weight"].shape == (4096,)
    assert official_tok["down_blocks.2.mlp.3.weight"].shape == (dim, dim) and official_tok["down_mlp.3.weight"].shape == (32, 32)
    assert "encoder.encoder.layers.24.attn.qkv.weight" not in official_tok
    back = official_tokenizer_to_ours(official_tok)
    check_state_dict({k: v.shape for k, v in tok.items()}, back, "round trip")

    internvl = internvl_config(cfg, build_text_tokenizer(image_seq_length=256))
    gen = {k: torch.empty(s, device="meta") for k, s in _generator_shapes(cfg, internvl).items()}
    mllm = {"model.language_model.embed_tokens.weight": torch.empty(100, dim, device="meta"),
            "lm_head.weight": torch.empty(100, dim, device="meta")}
    official = ours_to_official_generator(mllm, tok, gen)
    assert official["model.latent_queries"].shape == (1, 256, dim)
    assert official["model.projector.weight"].shape == (2304, dim)
    assert "model.llm_connector.layers.5.self_attn.q_proj.weight" in official
    assert "model.llm_connector.layers.6.self_attn.q_proj.weight" not in official
    assert "model.llm_connector.norm.weight" in official
    assert f"model.dit.transformer_blocks.{dit_layers - 1}.attn1.to_q.weight" in official
    assert official["model.vision_tower.encoder.layers.23.attn.qkv.weight"].shape == (3072, 1024)
    assert official["model.vae_decoder.down_mlp.3.weight"].shape == (32, 32)
    m, t, g = official_generator_to_ours(official)
    check_state_dict({k: v.shape for k, v in tok.items()}, t, "tokenizer round trip")
    check_state_dict({k: v.shape for k, v in gen.items()}, g, "generator round trip")
    assert m["model.vision_tower.encoder.layer.23.attention.q_proj.weight"].shape == (1024, 1024)


# ---------------------------------------------------------------------------------------------- bad checkpoints


class _Payload:
    def __reduce__(self):
        return (os.system, ("echo pwned > /tmp/unilip-pwned",))


@pytest.fixture
def official_pth(pipe, tmp_path):
    pipe.generator.tokenizer.save_pretrained(tmp_path / "tok")
    return export_official_tokenizer(tmp_path / "tok", tmp_path / "good.pth")


def test_a_pickle_with_code_is_refused_and_never_run(tmp_path):
    bad = tmp_path / "evil.pth"
    with open(bad, "wb") as f:
        pickle.dump({"encoder.x": _Payload()}, f)
    torch.save({"decoder.x": torch.zeros(1), "note": _Payload()}, tmp_path / "evil2.pth")
    for path in (bad, tmp_path / "evil2.pth"):
        with pytest.raises(UniLIPError, match="refused|cannot read"):
            convert_official_tokenizer(path, tmp_path / "out", _tiny_cfg())
    assert not os.path.exists("/tmp/unilip-pwned") and not (tmp_path / "out").exists()


def test_malformed_tokenizer_checkpoints_are_clear_errors_and_write_nothing(official_pth, tmp_path):
    state = torch.load(official_pth, weights_only=True)
    cases = {
        "missing": ({k: v for k, v in state.items() if k != "down_mlp.3.weight"}, "missing 1: projection.head.3.weight"),
        "shape": ({**state, "mlp1.1.weight": state["mlp1.1.weight"][:, :-1]}, "wrong shape 1: encoder.multi_modal"),
        "unknown": ({**state, "teacher.x": torch.zeros(1)}, "no known part.*teacher.x"),
        "not_dict": ([torch.zeros(1)], "not a flat"),
    }
    for name, (content, message) in cases.items():
        path = tmp_path / f"{name}.pth"
        torch.save(content, path)
        with pytest.raises(UniLIPError, match=message):
            convert_official_tokenizer(path, tmp_path / name, _tiny_cfg())
        assert not (tmp_path / name).exists()
    (tmp_path / "trunc.pth").write_bytes(official_pth.read_bytes()[:200])
    with pytest.raises(UniLIPError, match="cannot read"):
        convert_official_tokenizer(tmp_path / "trunc.pth", tmp_path / "trunc", _tiny_cfg())
    with pytest.raises(UniLIPError, match="neither UniLIP-1B's 896"):
        convert_official_tokenizer(official_pth, tmp_path / "auto")  # tiny widths: no preset fits
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("keep me")
    with pytest.raises(UniLIPError, match="not empty"):
        convert_official_tokenizer(official_pth, tmp_path / "full", _tiny_cfg())
    assert (tmp_path / "full" / "x").read_text() == "keep me"


def test_malformed_generator_directories_are_clear_errors(pipe, tmp_path):
    from safetensors.torch import load_file, save_file

    src = export_official_generator(pipe, tmp_path / "src")
    weights = load_file(str(src / "model.safetensors"))
    config = json.loads((src / "config.json").read_text())

    def variant(name, state=None, cfg=None):
        d = tmp_path / name
        d.mkdir()
        for f in src.iterdir():
            if f.name not in ("model.safetensors", "config.json"):
                (d / f.name).write_bytes(f.read_bytes())
        save_file(state if state is not None else weights, str(d / "model.safetensors"))
        (d / "config.json").write_text(json.dumps(cfg if cfg is not None else config))
        return d

    cases = [
        (variant("no_dit_block", {k: v for k, v in weights.items() if ".transformer_blocks.0.attn1.to_q" not in k}),
         "generator weights.*missing 1: dit.transformer_blocks.0.attn1.to_q.weight"),
        (variant("queries", {**weights, "model.latent_queries": weights["model.latent_queries"][:, :2]}),
         "wrong shape 1: conditioner.queries"),
        (variant("vae", cfg={**config, "model_type": "unilip_vae_internvl"}), "VAE-latent"),
        (variant("no_factor", cfg={k: v for k, v in config.items() if k != "unilip_factor"}), "no 'unilip_factor'"),
        (variant("llm", {k: v for k, v in weights.items() if k != "lm_head.weight"}), "MLLM weights.*missing 1: lm_head"),
    ]
    for path, message in cases:
        with pytest.raises(UniLIPError, match=message):
            convert_official_generator(path, tmp_path / f"out_{path.name}", _tiny_cfg())
        assert not (tmp_path / f"out_{path.name}" / "generator").exists()


def test_cli_convert_and_export(pipe, tmp_path, capsys):
    from unilip.cli import main

    pipe.generator.tokenizer.save_pretrained(tmp_path / "tok")
    pipe.generator.conditioner.mllm.save_pretrained(tmp_path / "mllm")
    assert main(["export", "official-tokenizer", "--tokenizer", str(tmp_path / "tok"), str(tmp_path / "t.pth")]) == 0
    assert main(["convert", "official-tokenizer", "--preset", "mini", str(tmp_path / "t.pth"), str(tmp_path / "back"), *UNILIP_OVERRIDES]) == 0
    # overrides anywhere, also after an option (SRC DST --preset P KEY=VALUE ...), in the order given
    assert main(["convert", "official-tokenizer", str(tmp_path / "t.pth"), str(tmp_path / "again"), UNILIP_OVERRIDES[0],
                 "--preset", "mini", *UNILIP_OVERRIDES[1:]]) == 0
    assert (tmp_path / "again" / "model.safetensors").read_bytes() == (tmp_path / "back" / "model.safetensors").read_bytes()
    with pytest.raises(SystemExit) as exc:  # what is neither an option nor KEY=VALUE is still refused
        main(["convert", "official-tokenizer", str(tmp_path / "t.pth"), str(tmp_path / "x"), "--preset", "mini", "stray"])
    assert exc.value.code == 2 and "unrecognized arguments: stray" in capsys.readouterr().err
    assert main(["export", "internvl", "--tokenizer", str(tmp_path / "back"), "--mllm", str(tmp_path / "mllm"),
                 str(tmp_path / "internvl")]) == 0
    assert (tmp_path / "internvl" / "config.json").is_file()
    assert main(["convert", "official-tokenizer", str(tmp_path / "t.pth"), str(tmp_path / "auto")]) == 2
    assert "--preset or --config" in capsys.readouterr().err


# ----------------------------------------------------------------------------------- read by the official stack


def _bpe_text_tokenizer():
    """A byte-level BPE tokenizer with the chat tokens, as Qwen2's (the mini one is word-level)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from unilip.data.miniworld.vocabulary import world_vocabulary
    from unilip.mllm.chat import IM_END, IM_START, IMG_CONTEXT, IMG_END, IMG_START, PAD, SPECIAL_TOKENS, UNK, chat_template

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    core.train_from_iterator([" ".join(world_vocabulary())] * 4, trainers.BpeTrainer(
        vocab_size=400, special_tokens=list(SPECIAL_TOKENS), initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok = PreTrainedTokenizerFast(tokenizer_object=core, unk_token=UNK, pad_token=PAD, eos_token=IM_END, padding_side="left",
                                  additional_special_tokens=[IM_START, IMG_START, IMG_END, IMG_CONTEXT])
    tok.chat_template = chat_template(4)
    return tok


def _read_like_transformers_4_52(directory):
    """What the official stack (transformers 4.52.1) takes from a checkpoint directory, written from that release's
    code: ``Qwen2Config(**text_config)`` reads ``rope_theta`` (1e4 when the key is absent); ``AutoTokenizer`` looks
    ``tokenizer_class`` up among the classes it has; ``extra_special_tokens`` must be a dict (``.keys()``); the slow
    ``Qwen2Tokenizer`` reads ``vocab.json`` + ``merges.txt`` and the added tokens' ids from ``added_tokens_decoder``."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    config = json.loads((directory / "config.json").read_text())
    tok_config = json.loads((directory / "tokenizer_config.json").read_text())
    if not isinstance(tok_config.get("extra_special_tokens", {}), dict):
        raise AttributeError("'list' object has no attribute 'keys'")
    if tok_config.get("tokenizer_class") not in ("PreTrainedTokenizerFast", "Qwen2Tokenizer", "Qwen2TokenizerFast"):
        raise ValueError(f"Tokenizer class {tok_config.get('tokenizer_class')} does not exist")
    slow = Tokenizer(models.BPE.from_file(str(directory / "vocab.json"), str(directory / "merges.txt")))
    slow.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    added = {int(i): t["content"] for i, t in tok_config.get("added_tokens_decoder", {}).items()}
    return config["text_config"].get("rope_theta", 10000.0), slow, added


def test_an_exported_generator_is_read_by_the_official_stack_as_we_wrote_it(tmp_path):
    from transformers import AutoTokenizer

    from unilip.generation.model import UniLIPGenerator
    from unilip.mllm.model import MLLM
    from unilip.pipeline import UniLIPPipeline
    from unilip.tokenizer import UniLIPTokenizer

    torch.manual_seed(0)
    cfg = _tiny_cfg()
    cfg.mllm.language.rope_theta = 1e6  # InternVL3's Qwen2.5: not the Qwen2Config default
    gen = UniLIPGenerator(cfg, MLLM.from_config(cfg, _bpe_text_tokenizer()), UniLIPTokenizer.from_config(cfg))
    src = export_official_generator(UniLIPPipeline(gen.eval()), tmp_path / "UniLIP-tiny")
    theta, slow, added = _read_like_transformers_4_52(src)
    assert theta == 1e6
    ours = AutoTokenizer.from_pretrained(src)  # transformers 5 still reads it, the same
    text = "a small red circle to the left of two blue squares"
    assert slow.encode(text).ids == ours(text).input_ids == gen.conditioner.mllm.tokenizer(text).input_ids
    assert added and all(ours.convert_tokens_to_ids(token) == i for i, token in added.items())
    back = convert_official_generator(src, tmp_path / "ours", _tiny_cfg())  # and our converter reads it back
    assert json.loads((back / "mllm" / "config.json").read_text())["text_config"]["rope_parameters"]["rope_theta"] == 1e6
