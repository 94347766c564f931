"""UniLIPTokenizer: shapes, the official 256 px pad mode, strict save/load, 1b/2b on the meta device, and the hub."""

from __future__ import annotations

import json
import time

import huggingface_hub.constants
import pytest
import torch
import torch.nn.functional as F
from diffusers import AutoencoderDC
from safetensors.torch import load_file, save_file
from torch import Tensor
from transformers import SiglipVisionConfig, SiglipVisionModel

from unilip.config import get_preset
from unilip.errors import UniLIPError
from unilip.hub import load_state_dict_strict, resolve_pretrained
from unilip.tokenizer import HFVisionEncoder, InternViTEncoder, TokenizerOutput, UniLIPTokenizer


@pytest.fixture(scope="module")
def mini() -> UniLIPTokenizer:
    torch.manual_seed(0)
    return UniLIPTokenizer.from_config(get_preset("mini")).eval()


def test_mini_shapes(mini):
    images = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        z = mini.encode(images)
        assert z.shape == (2, 32, 4, 4)
        assert mini.features(images).shape == (2, 16, 128)
        assert mini.decode(z).shape == (2, 3, 64, 64)  # default size: g * token_stride = 4 * 16
        assert mini.decode(z[..., :3, :3]).shape == (2, 3, 48, 48)
        clamped = mini.decode(z, clamp=True)
        assert clamped.min() >= 0 and clamped.max() <= 1
    reconstruction = mini.reconstruct(images)
    assert reconstruction.shape == (2, 3, 64, 64) and reconstruction.min() >= 0 and reconstruction.max() <= 1


def test_forward_output_and_gradients(mini):
    images = torch.rand(2, 3, 64, 64)
    out = mini(images)
    assert isinstance(out, TokenizerOutput)
    assert out.reconstruction.shape == (2, 3, 64, 64)
    assert (out.features.shape, out.latent.shape) == ((2, 16, 128), (2, 32, 4, 4))
    with torch.no_grad():
        assert torch.equal(out.reconstruction, mini.decode(mini.encode(images)))
    out.reconstruction.square().mean().backward()
    assert mini.encoder.vision_tower.embeddings.patch_embeddings.projection.weight.grad is not None
    assert mini.projection.head[3].weight.grad is not None
    mini.zero_grad(set_to_none=True)


@pytest.fixture(scope="module")
def stride14() -> UniLIPTokenizer:
    """The official geometry in small: a token stride of 14 (patch 7, pixel shuffle 2) under a decoder that upsamples
    16x, so the decoder's native output (4 x 4 -> 64 px) is resized to the image size (56 px), as 32 / 28 at 448."""
    cfg = get_preset("mini")
    cfg.mllm.vision.patch_size, cfg.mllm.vision.image_size, cfg.tokenizer.image_size = 7, 56, 56
    torch.manual_seed(0)
    return UniLIPTokenizer.from_config(cfg).eval()


def _official_rescale(native: Tensor, size: int, align_corners: bool) -> Tensor:
    """The official resize of the decoder's output, written from the spec: bilinear on the [-1, 1] scale."""
    out = F.interpolate(native * 2 - 1, size=(size, size), mode="bilinear", align_corners=align_corners)
    return (out + 1) / 2


def test_pad_mode_matches_the_official_recipe(stride14):
    images = torch.rand(1, 3, 50, 50)
    out = stride14.reconstruct(images, pad_to_multiple=True)
    assert out.shape == (1, 3, 50, 50)
    # 50 -> 56: reflect-pad 3 px on each side, as the official DC_AE_ViT_Stage2_Pad; the decoder's 64 px are scaled by
    # 56 / 64 with align_corners=True (the official 320 -> 280), clamped, and the centre is cropped back.
    padded = F.pad(images, (3, 3, 3, 3), mode="reflect")
    with torch.no_grad():
        native = stride14.decoder(stride14.encode(padded))
        assert native.shape[-1] == 64
        expected = _official_rescale(native, 56, align_corners=True).clamp(0, 1)[..., 3:53, 3:53]
        other = _official_rescale(native, 56, align_corners=False).clamp(0, 1)[..., 3:53, 3:53]
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=0)
    assert (out - other).abs().max() > 1e-3  # the corner convention is visible: the test tells the two apart


def test_clamp_first_is_the_official_generation_order(stride14):
    with torch.no_grad():
        z = stride14.encode(torch.rand(2, 3, 56, 56)) * 40  # far out: the decoder's output saturates
        native = stride14.decoder(z)  # (2, 3, 64, 64), unclamped
        official = _official_rescale(native.clamp(0, 1), 56, align_corners=False)  # 64 px, clamp, then 56
        ours = stride14.decode(z, clamp_first=True)
        after = stride14.decode(z, clamp=True)  # resize, then clamp: the tokenizer evaluation's order
    assert (native < 0).any() and (native > 1).any()
    torch.testing.assert_close(ours, official, atol=1e-6, rtol=0)
    assert ours.min() >= 0 and ours.max() <= 1
    assert (ours - after).abs().max() > 1e-3


def test_reconstruct_returns_the_input_size_through_the_working_size(mini):
    images = torch.rand(2, 3, 50, 90)  # not square, not a multiple of the token stride
    out = mini.reconstruct(images)  # default working size: the model's 64
    assert out.shape == (2, 3, 50, 90) and out.min() >= 0 and out.max() <= 1
    inner = torch.nn.functional.interpolate(images, size=(64, 64), mode="bicubic", antialias=True).clamp(0, 1)
    expected = torch.nn.functional.interpolate(mini.reconstruct(inner), size=(50, 90), mode="bicubic", antialias=True)
    assert torch.equal(out, expected.clamp(0, 1))
    square = torch.rand(1, 3, 64, 64)
    assert torch.equal(mini.reconstruct(square, size=64), mini.reconstruct(square))  # no resize at the working size
    assert mini.reconstruct(square, size=128).shape == (1, 3, 64, 64)
    with pytest.raises(UniLIPError, match="works at 1 to 256 px"):
        mini.reconstruct(square, size=4096)


def test_input_errors(mini):
    with pytest.raises(UniLIPError, match="not a multiple of the encoder's token stride 16"):
        mini.reconstruct(torch.rand(1, 3, 60, 60))
    with pytest.raises(UniLIPError, match="not a multiple"):
        mini(torch.rand(1, 3, 60, 60))
    with pytest.raises(UniLIPError, match=r"\(B, 3, H, W\)"):
        mini.reconstruct(torch.rand(3, 64, 64))
    with pytest.raises(UniLIPError, match="too small"):
        mini.reconstruct(torch.rand(1, 3, 5, 5), pad_to_multiple=True)


def test_save_load_round_trip(mini, tmp_path):
    mini.save_pretrained(tmp_path / "tok")
    assert sorted(p.name for p in (tmp_path / "tok").iterdir()) == ["config.json", "model.safetensors"]
    config = json.loads((tmp_path / "tok" / "config.json").read_text())
    assert config["_class_name"] == "UniLIPTokenizer" and config["image_size"] == 64
    assert config["encoder"]["kind"] == "internvit" and config["projection"]["latent_channels"] == 32
    loaded = UniLIPTokenizer.from_pretrained(tmp_path / "tok").eval()
    assert isinstance(loaded.encoder, InternViTEncoder)
    assert list(loaded.state_dict()) == list(mini.state_dict())
    images = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        a, b = mini(images), loaded(images)
    assert torch.equal(a.reconstruction, b.reconstruction) and torch.equal(a.latent, b.latent)
    mini.save_pretrained(tmp_path / "tok")  # overwriting is fine
    assert UniLIPTokenizer.from_pretrained(tmp_path / "tok").image_size == 64


def test_save_load_round_trip_with_a_siglip_encoder(tmp_path):
    backbone = SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                                  image_size=64, patch_size=8)
    SiglipVisionModel(backbone).save_pretrained(tmp_path / "b")
    cfg = get_preset("mini")
    cfg.tokenizer.encoder_backbone = str(tmp_path / "b")
    model = UniLIPTokenizer.from_config(cfg).eval()
    assert isinstance(model.encoder, HFVisionEncoder)
    model.save_pretrained(tmp_path / "tok")
    loaded = UniLIPTokenizer.from_pretrained(tmp_path / "tok").eval()
    images = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(images).reconstruction, loaded(images).reconstruction)


def test_broken_checkpoints_raise_and_load_nothing(mini, tmp_path):
    mini.save_pretrained(tmp_path)
    weights = tmp_path / "model.safetensors"
    state = load_file(weights)
    save_file({k: v for k, v in state.items() if k != "projection.head.3.bias"}, weights)
    with pytest.raises(UniLIPError, match=r"missing 1: projection\.head\.3\.bias"):
        UniLIPTokenizer.from_pretrained(tmp_path)

    weights.write_bytes(b"not a safetensors file")
    with pytest.raises(UniLIPError, match="cannot read weights"):
        UniLIPTokenizer.from_pretrained(tmp_path)

    (tmp_path / "config.json").write_text("{")
    with pytest.raises(UniLIPError, match="config.json is not valid JSON"):
        UniLIPTokenizer.from_pretrained(tmp_path)

    for text, problem in (("[1, 2]", "holds a list"), ("null", "holds null")):
        (tmp_path / "config.json").write_text(text)
        with pytest.raises(UniLIPError, match=problem):
            UniLIPTokenizer.from_pretrained(tmp_path)

    # Strict loading into an existing model changes nothing when any key is wrong.
    before = {k: v.clone() for k, v in mini.state_dict().items()}
    bad = {k: torch.zeros_like(v) for k, v in before.items()}
    bad["projection.head.3.weight"] = torch.zeros(3, 3)
    bad["extra.weight"] = torch.zeros(1)
    with pytest.raises(UniLIPError, match=r"unexpected 1: extra\.weight; wrong shape 1: projection\.head\.3\.weight"):
        load_state_dict_strict(mini, bad, "a broken state dict")
    assert all(torch.equal(v, before[k]) for k, v in mini.state_dict().items())


def h_phi_params(d: int) -> int:
    return 3 * (2 * d + 2 * (d * d + d)) + 2 * d + 32 * d + 32 + 32 * 32 + 32


@pytest.mark.parametrize(("name", "dim", "projector"), [("1b", 896, 4_482_816), ("2b", 1536, 8_662_016)])
def test_full_presets_on_meta(name, dim, projector):
    cfg = get_preset(name)
    cfg.mllm.pretrained = None
    cfg.tokenizer.decoder_pretrained = None
    with torch.device("meta"):
        model = UniLIPTokenizer.from_config(cfg)
        assert model.encode(torch.empty(1, 3, 448, 448)).shape == (1, 32, 16, 16)
        assert model.encode(torch.empty(1, 3, 224, 224)).shape == (1, 32, 8, 8)
        assert model.decode(torch.empty(1, 32, 16, 16)).shape == (1, 3, 448, 448)

    def count(module: torch.nn.Module) -> int:
        return sum(p.numel() for p in module.parameters())

    assert count(model.encoder.vision_tower) == 304_012_288  # InternViT-300M (OpenGVLab/InternVL3-1B)
    assert count(model.encoder.multi_modal_projector) == projector
    assert count(model.decoder) == 159_223_171  # DC-AE f32c32 decoder
    assert count(model.projection) == h_phi_params(dim)  # 4,859,200 (1b) / 14,227,520 (2b)
    assert (model.encoder.token_stride, model.decoder.upsample_factor, model.image_size) == (28, 32, 448)
    with pytest.raises(UniLIPError, match="meta device"):
        model.save_pretrained("/nonexistent/never-written")


def test_decoder_pretrained_is_loaded_and_checked(tmp_path):
    mini_tok = get_preset("mini").tokenizer
    kwargs = dict(latent_channels=32, attention_head_dim=16, decoder_block_types=mini_tok.decoder_block_types,
                  decoder_block_out_channels=mini_tok.decoder_block_out_channels,
                  decoder_layers_per_block=mini_tok.decoder_layers_per_block,
                  decoder_qkv_multiscales=mini_tok.decoder_qkv_multiscales,
                  upsample_block_type=mini_tok.decoder_upsample_block_type, encoder_block_out_channels=(8, 8, 8, 8, 8),
                  encoder_block_types="ResBlock", encoder_layers_per_block=(1, 1, 1, 1, 1),
                  encoder_qkv_multiscales=((),) * 5, downsample_block_type="pixel_unshuffle")
    ae = AutoencoderDC(**kwargs).eval()
    ae.save_pretrained(tmp_path)
    cfg = get_preset("mini")
    cfg.tokenizer.decoder_pretrained = str(tmp_path)
    model = UniLIPTokenizer.from_config(cfg)
    z = torch.randn(1, 32, 4, 4)
    with torch.no_grad():
        assert torch.equal(model.decode(z), (ae.decoder(z) + 1) / 2)
    cfg.tokenizer.decoder_attention_head_dim = 32
    with pytest.raises(UniLIPError, match="attention_head_dim: config 32, checkpoint 16"):
        UniLIPTokenizer.from_config(cfg)


def test_resolve_pretrained_offline_fails_fast(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    start = time.monotonic()
    with pytest.raises(UniLIPError) as info:
        resolve_pretrained("unilip-tests/not-cached", "the InternVL3 checkpoint for the 1b preset")
    assert time.monotonic() - start < 5
    message = str(info.value)
    assert "the InternVL3 checkpoint for the 1b preset" in message
    assert "huggingface-cli download unilip-tests/not-cached" in message and "HF_HUB_OFFLINE" in message


def test_resolve_pretrained_local_paths(tmp_path):
    assert resolve_pretrained(str(tmp_path), "a directory") == tmp_path
    with pytest.raises(UniLIPError, match="not a directory"):
        resolve_pretrained(str(tmp_path / "missing" / "dir"), "a directory")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(UniLIPError, match="not a directory"):
        resolve_pretrained(str(tmp_path / "file.txt"), "a directory")
