"""Configs: presets, YAML round trips, overrides, and clear errors for every kind of mistake."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from unilip.config import (
    PRESETS,
    UniLIPConfig,
    deep_merge,
    from_dict,
    get_preset,
    load_config,
    parse_overrides,
    preset_yaml,
    save_config,
    to_dict,
    to_yaml,
    validate_config,
)
from unilip.errors import ConfigError

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


# ----------------------------------------------------------------------------- presets


@pytest.mark.parametrize("name", list(PRESETS))
def test_preset_builds_and_validates(name):
    cfg = get_preset(name)
    validate_config(cfg)
    assert cfg.preset == name


@pytest.mark.parametrize(("name", "shape"), [("mini", (32, 4, 4)), ("1b", (32, 16, 16)), ("2b", (32, 16, 16))])
def test_latent_shape(name, shape):
    cfg = get_preset(name)
    assert cfg.latent_shape() == shape
    # The decoder's output side: 4 * 16 = 64 for mini; 16 * 32 = 512 for 1b/2b (resized back to 448).
    assert cfg.decoder_image_size() == (64 if name == "mini" else 512)


def test_official_latent_at_224():
    assert get_preset("1b").latent_shape(224) == (32, 8, 8)  # official tokenizer stages 1-2 (224 px)


def test_dataclass_defaults_are_the_1b_preset():
    assert UniLIPConfig() == get_preset("1b")


def test_upstream_numbers():
    c1, c2 = get_preset("1b"), get_preset("2b")
    assert (c1.mllm.language.hidden_size, c2.mllm.language.hidden_size) == (896, 1536)
    assert c1.mllm.vision == c2.mllm.vision
    assert (c1.generator.dit_inner_dim(), c2.generator.dit_inner_dim()) == (1152, 2240)
    assert (c1.generator.latent_scale, c2.generator.latent_scale) == (10.6, 9.5)
    assert c1.mllm.language.tie_word_embeddings is False


@pytest.mark.parametrize("name", list(PRESETS))
def test_yaml_round_trip(name, tmp_path):
    cfg = get_preset(name)
    path = tmp_path / "sub" / "config.yaml"
    save_config(cfg, path)
    assert load_config(UniLIPConfig, path) == cfg
    assert from_dict(UniLIPConfig, to_dict(cfg)) == cfg
    assert [p.name for p in path.parent.iterdir()] == ["config.yaml"]  # no temp file left behind


@pytest.mark.parametrize("name", list(PRESETS))
def test_configs_dir_yaml_is_the_preset(name):
    path = CONFIGS / f"{name}.yaml"
    assert path.read_text().startswith(f"# The `{name}` preset")
    assert load_config(UniLIPConfig, path) == get_preset(name)
    assert path.read_text() == preset_yaml(name), f"configs/{name}.yaml is stale; regenerate it from the preset"


def test_unknown_preset():
    with pytest.raises(ConfigError, match=r"unknown preset 'huge'.*mini, 1b, 2b"):
        get_preset("huge")
    with pytest.raises(ConfigError, match=r"unknown preset 'huge'.*mini, 1b, 2b"):
        load_config(UniLIPConfig, preset="huge")


# ----------------------------------------------------------------------------- overrides and files


def test_nested_overrides():
    cfg = load_config(
        UniLIPConfig,
        preset="mini",
        overrides=[
            "mllm.vision.num_layers=2",
            "miniworld.sizes={small: 0.15, large: 0.25}",
            "miniworld.shapes=[circle, square]",
            "miniworld.heldout_pairs=[red circle]",
            "generator.cfg_scale=3",  # an int is fine for a float
            "mllm.pretrained=null",
            "mllm.language.rms_norm_eps=1e-5",  # YAML 1.2 float, not the string "1e-5"
        ],
    )
    assert cfg.mllm.vision.num_layers == 2
    assert cfg.miniworld.sizes == {"small": 0.15, "large": 0.25}
    assert cfg.miniworld.shapes == ("circle", "square")
    assert cfg.generator.cfg_scale == 3.0 and isinstance(cfg.generator.cfg_scale, float)
    assert cfg.mllm.language.rms_norm_eps == 1e-5
    assert cfg.mllm.vision.hidden_size == 128  # the rest of the preset is kept


def test_parse_overrides_and_deep_merge():
    assert parse_overrides(["a.b.c=3", "a.b.d=[x, y]", "a.e=true", "a.b.c=4"]) == {
        "a": {"b": {"c": 4, "d": ["x", "y"]}, "e": True}
    }
    assert parse_overrides(["name=no"]) == {"name": "no"}  # YAML 1.2: only true/false are booleans
    base = {"x": {"y": 1, "z": 2}, "l": [1, 2]}
    assert deep_merge(base, {"x": {"y": 5}, "l": [3]}) == {"x": {"y": 5, "z": 2}, "l": [3]}
    assert base == {"x": {"y": 1, "z": 2}, "l": [1, 2]}  # inputs untouched


@pytest.mark.parametrize("item", ["novalue", "=3", "a..b=3", ".a=1", "a.b="])
def test_malformed_override(item):
    with pytest.raises(ConfigError, match=r"override .*(dotted\.key=value|empty)"):
        parse_overrides([item])


def test_override_invalid_yaml_value():
    with pytest.raises(ConfigError, match=r"override 'a=\[1, 2'.*not valid YAML"):
        parse_overrides(["a=[1, 2"])


def test_file_with_preset_key(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("preset: 1b\ngenerator:\n  cfg_scale: 3.0\n")
    cfg = load_config(UniLIPConfig, path, overrides=["generator.num_inference_steps=30"])
    expected = get_preset("1b")
    expected.generator.cfg_scale = 3.0
    expected.generator.num_inference_steps = 30
    assert cfg == expected


def test_conflicting_presets(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("preset: 1b\n")
    with pytest.raises(ConfigError, match=r"conflicting presets.*'mini'.*'1b'"):
        load_config(UniLIPConfig, path, preset="mini")


def test_missing_file(tmp_path):
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match=r"nope\.yaml: config file not found"):
        load_config(UniLIPConfig, path)


def test_invalid_yaml(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("mllm:\n  vision: [1, 2\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: invalid YAML at line \d+, column \d+"):
        load_config(UniLIPConfig, path)


def test_non_mapping_yaml(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match=r"list\.yaml: the top level must be a mapping"):
        load_config(UniLIPConfig, path)


# ----------------------------------------------------------------------------- strict keys and types


def test_unknown_key():
    with pytest.raises(ConfigError) as err:
        load_config(UniLIPConfig, overrides=["mllm.vison.num_layers=2"])
    msg = str(err.value)
    assert msg.startswith("mllm.vison: unknown key")
    assert "did you mean 'vision'" in msg
    assert "pretrained, vision, language, downsample_ratio" in msg


def test_wrong_type():
    with pytest.raises(ConfigError) as err:
        load_config(UniLIPConfig, overrides=["mllm.vision.num_layers=two"])
    assert str(err.value) == "mllm.vision.num_layers: expected int, got 'two' (str)"
    with pytest.raises(ConfigError, match=r"tokenizer\.decoder_block_out_channels\[1\]: expected int, got 2\.5"):
        load_config(UniLIPConfig, overrides=["tokenizer.decoder_block_out_channels=[1, 2.5]"])
    with pytest.raises(ConfigError, match=r"mllm\.pretrained: expected str, got 3 \(int\)"):
        load_config(UniLIPConfig, overrides=["mllm.pretrained=3"])


def test_bad_literal():
    with pytest.raises(ConfigError) as err:
        load_config(UniLIPConfig, overrides=["tokenizer.decoder_upsample_block_type=nearest"])
    assert "tokenizer.decoder_upsample_block_type: 'nearest' is not allowed" in str(err.value)
    assert "['interpolate', 'pixel_shuffle']" in str(err.value)
    with pytest.raises(ConfigError, match=r"decoder_block_types\[0\]: 'Res' is not allowed"):
        load_config(UniLIPConfig, overrides=["tokenizer.decoder_block_types=[Res]"])


@pytest.mark.parametrize("value", ["yes", 1])
def test_bool_must_be_a_real_bool(value):
    data = {"mllm": {"vision": {"attention_bias": value}}}
    with pytest.raises(ConfigError, match=rf"mllm\.vision\.attention_bias: expected bool, got {value!r}"):
        from_dict(UniLIPConfig, data)


def test_override_yes_is_not_a_bool():
    with pytest.raises(ConfigError, match=r"use_qk_norm: expected bool, got 'yes'"):
        load_config(UniLIPConfig, overrides=["mllm.vision.use_qk_norm=yes"])


@dataclass
class _Inner:
    ids: tuple[tuple[int, ...], ...] = ((1,), ())
    mode: Literal["a", "b"] = "a"
    opt: float | None = None


@dataclass
class _Outer:
    inner: _Inner = field(default_factory=_Inner)
    table: dict[str, list[int]] = field(default_factory=dict)
    pair: tuple[int, str] = (0, "x")


def test_generic_types():
    obj = from_dict(_Outer, {"inner": {"ids": [[2, 3], []], "opt": 1}, "table": {"k": [1]}, "pair": [4, "y"]})
    assert obj == _Outer(_Inner(ids=((2, 3), ()), opt=1.0), {"k": [1]}, (4, "y"))
    assert to_dict(obj) == {"inner": {"ids": [[2, 3], []], "mode": "a", "opt": 1.0}, "table": {"k": [1]},
                            "pair": [4, "y"]}
    assert from_dict(_Outer, {}) == _Outer()
    with pytest.raises(ConfigError, match=r"inner\.opt: expected float, got 'x'"):
        from_dict(_Outer, {"inner": {"opt": "x"}})
    with pytest.raises(ConfigError, match=r"pair: expected list of 2"):
        from_dict(_Outer, {"pair": [1]})
    with pytest.raises(ConfigError, match=r"table\.k\[0\]: expected int"):
        from_dict(_Outer, {"table": {"k": ["a"]}})
    with pytest.raises(ConfigError, match=r"allowed keys in the top level: inner, table, pair"):
        from_dict(_Outer, {"extra": 1})
    assert "ids: [[1], []]" in to_yaml(_Outer())


# ----------------------------------------------------------------------------- validate()


def test_validate_error_has_dotted_prefix():
    with pytest.raises(ConfigError) as err:
        load_config(UniLIPConfig, preset="mini", overrides=["miniworld.max_objects=9"])
    assert str(err.value).startswith("miniworld.")
    assert "max_objects" in str(err.value)


def test_miniworld_shapes_must_cover_heldout_pairs():
    with pytest.raises(ConfigError, match=r"^miniworld\.heldout_pairs: 'red triangle'"):
        load_config(UniLIPConfig, preset="mini", overrides=["miniworld.shapes=[circle, square]"])


def test_vision_hidden_not_divisible_by_heads():
    with pytest.raises(ConfigError, match=r"^mllm\.vision\.hidden_size: 1000 is not divisible by num_heads 16"):
        load_config(UniLIPConfig, overrides=["mllm.vision.hidden_size=1000"])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("mllm.vision.image_size=450", r"^mllm\.vision\.image_size: 450 is not divisible by patch_size 14"),
        ("mllm.vision.image_size=434", r"^mllm\.vision\.image_size: the 31x31 patch grid does not pixel-shuffle"),
        ("mllm.language.num_kv_heads=4", r"^mllm\.language\.num_heads: 14 is not divisible by num_kv_heads 4"),
        ("generator.connector_layers=30", r"^generator\.connector_layers: 30 is more than the 24 layers"),
        ("generator.dit_head_dim=0", r"^generator\.dit_head_dim: must be > 0"),
        ("tokenizer.image_size=434", r"^tokenizer\.image_size: its 31x31 patch grid"),
        ("tokenizer.decoder_layers_per_block=[3]", r"^tokenizer\.decoder_layers_per_block: has 1 entries"),
    ],
)
def test_semantic_checks(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(UniLIPConfig, overrides=[override])


# ----------------------------------------------------------------------------- import cost


def test_import_does_not_load_torch():
    code = "import sys, unilip.config; assert 'torch' not in sys.modules, 'unilip.config imported torch'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_dict_fields_are_replaced_not_merged(tmp_path):
    cfg = load_config(UniLIPConfig, None, ["miniworld.sizes={medium: 0.25}"], preset="mini")
    assert cfg.miniworld.sizes == {"medium": 0.25}
    path = tmp_path / "c.yaml"
    path.write_text("preset: mini\nminiworld:\n  sizes: {tiny: 0.1, huge: 0.4}\n")
    assert load_config(UniLIPConfig, path).miniworld.sizes == {"tiny": 0.1, "huge": 0.4}


# ------------------------------------------------------------------------------------------- hostile config input


def test_yaml_alias_bombs_recursion_and_deep_nesting_are_refused_before_expansion(tmp_path):
    levels = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi"):
        levels.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("\n".join(levels))
    with pytest.raises(ConfigError, match=r"bomb\.yaml: the YAML expands to more than 100000 values"):
        load_config(UniLIPConfig, bomb)
    (tmp_path / "r.yaml").write_text("a: &x [*x]\n")
    with pytest.raises(ConfigError, match="refers to itself"):
        load_config(UniLIPConfig, tmp_path / "r.yaml")
    (tmp_path / "d.yaml").write_text("[" * 50_000 + "]" * 50_000)
    with pytest.raises(ConfigError, match="nested too deeply"):
        load_config(UniLIPConfig, tmp_path / "d.yaml")
    (tmp_path / "ok.yaml").write_text("mllm:\n  vision: &v {num_layers: 2}\n  language: {num_layers: 2}\n")
    assert load_config(UniLIPConfig, tmp_path / "ok.yaml", preset="mini").mllm.vision.num_layers == 2  # aliases are fine


def test_config_files_that_are_not_small_regular_utf8_files_are_refused_unread(tmp_path):
    import os

    os.mkfifo(tmp_path / "fifo.yaml")  # opening it would block forever
    with pytest.raises(ConfigError, match="not a regular file"):
        load_config(UniLIPConfig, tmp_path / "fifo.yaml")
    with pytest.raises(ConfigError, match="not a regular file"):
        load_config(UniLIPConfig, "/dev/zero")
    (tmp_path / "big.yaml").write_text("#" * (2 << 20))
    with pytest.raises(ConfigError, match="a config file is at most 1048576 bytes"):
        load_config(UniLIPConfig, tmp_path / "big.yaml")
    (tmp_path / "latin1.yaml").write_bytes("preset: caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(UniLIPConfig, tmp_path / "latin1.yaml")


def test_error_messages_never_echo_unbounded_values():
    with pytest.raises(ConfigError) as err:
        load_config(UniLIPConfig, None, ["generator.cfg_scale=" + "x" * 100_000])
    assert len(str(err.value)) < 400 and "(100002 characters)" in str(err.value)
    with pytest.raises(ConfigError, match="cannot be read") as err:
        load_config(UniLIPConfig, None, ["generator.cfg_scale=" + "9" * 100_000])  # past Python's int digits limit
    assert len(str(err.value)) < 400
    with pytest.raises(ConfigError) as err:
        load_config(UniLIPConfig, None, ["k" * 10_000 + "=1"])
    assert len(str(err.value)) < 1000


def test_non_finite_and_out_of_range_numbers_name_their_key():
    for override, message in (("generator.cfg_scale=.nan", r"generator\.cfg_scale: must be a finite number"),
                              ("generator.cfg_scale=.inf", "must be a finite number"),
                              ("miniworld.image_size=99999999999999999999", r"out of range \(\|value\| < 2\^63\)"),
                              ("tokenizer.image_size=100000000", r"tokenizer\.image_size: at most 4096"),
                              ("generator.num_inference_steps=5000", "at most 1000")):
        with pytest.raises(ConfigError, match=message):
            load_config(UniLIPConfig, None, [override], preset="mini")
    from unilip.train.loop import LoopConfig, OptimConfig

    for cls, data, message in ((LoopConfig, {"ema_decay": 1.0}, r"ema_decay: must be in \[0, 1\)"),
                               (LoopConfig, {"output_dir": " "}, "output_dir: is empty"),
                               (LoopConfig, {"max_steps": 10**12}, r"max_steps: must be in \[1, 1000000000\]"),
                               (OptimConfig, {"betas": [1.5, 0.9]}, r"betas\[0\]: must be in \[0, 1\)"),
                               (OptimConfig, {"lr": 5.0}, r"lr: must be in \(0, 1\]")):
        with pytest.raises(ConfigError, match=message):
            from_dict(cls, data)


def test_a_section_of_the_wrong_type_is_an_error_even_under_an_override(tmp_path):
    (tmp_path / "c.yaml").write_text("generator: 5\n")
    with pytest.raises(ConfigError, match=r"generator: expected mapping \(GeneratorConfig\), got 5"):
        load_config(UniLIPConfig, tmp_path / "c.yaml", ["generator.cfg_scale=2"])
    with pytest.raises(ConfigError, match="was set to a value by an earlier override"):
        load_config(UniLIPConfig, None, ["generator=5", "generator.cfg_scale=2"])
    with pytest.raises(ConfigError, match="is a section"):
        load_config(UniLIPConfig, None, ["generator.cfg_scale=2", "generator=5"])
    with pytest.raises(ConfigError, match="expected a preset name"):
        load_config(UniLIPConfig, None, {"preset": {"a": 1}})
