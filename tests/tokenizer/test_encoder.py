"""The vision encoder: InternViT features equal transformers' InternVL image path exactly; loading is strict."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import (
    CLIPConfig,
    CLIPModel,
    CLIPVisionConfig,
    InternVLConfig,
    InternVLForConditionalGeneration,
    InternVLModel,
    InternVLVisionConfig,
    Qwen2Config,
    SiglipVisionConfig,
    SiglipVisionModel,
)

from unilip.config import VisionEncoderConfig, get_preset
from unilip.errors import UniLIPError
from unilip.tokenizer import HFVisionEncoder, InternViTEncoder, VisionEncoder, build_encoder
from unilip.tokenizer.encoder import IMAGENET_MEAN, IMAGENET_STD, pixel_shuffle

D = 64  # the tiny LLM width


def tiny_internvl(use_mean_pooling: bool = True, seed: int = 0) -> InternVLForConditionalGeneration:
    """A tiny InternVL (224 px, patch 14 -> 16 x 16 patches -> 8 x 8 tokens)."""
    torch.manual_seed(seed)
    vision = InternVLVisionConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                                  image_size=224, patch_size=14, attention_bias=True, use_mean_pooling=use_mean_pooling)
    text = Qwen2Config(vocab_size=100, hidden_size=D, num_hidden_layers=1, num_attention_heads=4,
                       num_key_value_heads=2, intermediate_size=128, max_position_embeddings=128)
    config = InternVLConfig(vision_config=vision, text_config=text, image_token_id=99, image_seq_length=64,
                            downsample_ratio=0.5, vision_feature_layer=-1, vision_feature_select_strategy="default",
                            tie_word_embeddings=False)
    model = InternVLForConditionalGeneration(config).eval()
    with torch.no_grad():  # transformers zero-inits these; random values make the comparison meaningful
        model.model.vision_tower.embeddings.position_embeddings.normal_()
        model.model.vision_tower.embeddings.cls_token.normal_()
    return model


def normalized(images: torch.Tensor) -> torch.Tensor:
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (images - mean) / std


def reference_features(model: InternVLForConditionalGeneration, images: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.model.get_image_features(pixel_values=normalized(images), return_dict=True).pooler_output


@pytest.mark.parametrize("use_mean_pooling", [True, False])
def test_internvit_equals_transformers_image_features(use_mean_pooling):
    model = tiny_internvl(use_mean_pooling)
    encoder = InternViTEncoder(model.config.vision_config, D, 0.5).eval()
    state = {k.removeprefix("model."): v for k, v in model.state_dict().items()
             if k.startswith(("model.vision_tower.", "model.multi_modal_projector."))}
    encoder.load_state_dict(state, strict=True)  # the names match InternVLModel's: it loads straight back
    images = torch.rand(2, 3, 224, 224)
    with torch.no_grad():
        features = encoder(images)
    assert features.shape == (2, 64, D)
    assert torch.equal(features, reference_features(model, images))
    assert isinstance(encoder.vision_tower.layernorm, nn.Identity) == use_mean_pooling
    assert (encoder.dim, encoder.token_stride, encoder.grid(448)) == (D, 28, 16)


def test_from_internvl_directory(tmp_path):
    model = tiny_internvl(seed=1)
    model.save_pretrained(tmp_path)
    encoder = InternViTEncoder.from_internvl(tmp_path).eval()
    images = torch.rand(1, 3, 224, 224)
    with torch.no_grad():
        assert torch.equal(encoder(images), reference_features(model, images))


def test_from_internvl_native_prefixes(tmp_path):
    """transformers 5.24 saves the legacy layout (`vision_tower.*`, as the hub files); `model.vision_tower.*` too."""
    model = tiny_internvl(seed=2)
    model.save_pretrained(tmp_path)
    state = load_file(tmp_path / "model.safetensors")
    assert "vision_tower.embeddings.cls_token" in state
    native = {("model." + k if k.startswith(("vision_tower.", "multi_modal_projector.")) else k): v.contiguous()
              for k, v in state.items()}
    save_file(native, tmp_path / "model.safetensors", metadata={"format": "pt"})
    encoder = InternViTEncoder.from_internvl(tmp_path).eval()
    images = torch.rand(1, 3, 224, 224)
    with torch.no_grad():
        assert torch.equal(encoder(images), reference_features(model, images))


def test_from_internvl_missing_projector_keys(tmp_path):
    tiny_internvl().save_pretrained(tmp_path)
    state = load_file(tmp_path / "model.safetensors")
    kept = {k: v for k, v in state.items() if "multi_modal_projector.linear_1" not in k}
    save_file(kept, tmp_path / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(UniLIPError, match=r"missing 2: multi_modal_projector\.linear_1\.bias, "
                                          r"multi_modal_projector\.linear_1\.weight"):
        InternViTEncoder.from_internvl(tmp_path)


def test_from_internvl_not_a_directory(tmp_path):
    with pytest.raises(UniLIPError, match="not a directory"):
        InternViTEncoder.from_internvl(tmp_path / "nowhere")


@pytest.mark.parametrize("shape", [(2, 6, 6, 8), (1, 8, 4, 12), (3, 16, 16, 4)])
def test_pixel_shuffle_equals_transformers(shape):
    x = torch.randn(shape)
    expected = InternVLModel.pixel_shuffle(None, x, scale_factor=0.5)  # the method uses no state
    assert torch.equal(pixel_shuffle(x, 0.5), expected)


def test_pixel_shuffle_rejects_odd_grid():
    with pytest.raises(UniLIPError, match="does not merge"):
        pixel_shuffle(torch.randn(1, 5, 5, 4), 0.5)


def test_position_embeddings_are_interpolated_bicubic():
    """A 56 px-native tower at 112 px equals a 112 px-native tower holding bicubic-resized position embeddings."""
    torch.manual_seed(0)
    vision = VisionEncoderConfig(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64, image_size=56,
                                 patch_size=14)
    small = InternViTEncoder.from_config(vision, 16).eval()
    with torch.no_grad():
        small.vision_tower.embeddings.position_embeddings.normal_()
    vision.image_size = 112
    large = InternViTEncoder.from_config(vision, 16).eval()
    state = small.state_dict()
    pos = state.pop("vision_tower.embeddings.position_embeddings")  # (1, 1 + 4*4, C)
    grid = pos[:, 1:].reshape(1, 4, 4, -1).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=(8, 8), mode="bicubic", align_corners=False).permute(0, 2, 3, 1).reshape(1, 64, -1)
    state["vision_tower.embeddings.position_embeddings"] = torch.cat([pos[:, :1], grid], dim=1)
    large.load_state_dict(state)
    images = torch.rand(2, 3, 112, 112)
    with torch.no_grad():
        out = small(images)
        assert out.shape == (2, 16, 16)
        torch.testing.assert_close(out, large(images), rtol=1e-5, atol=1e-5)
        assert small(torch.rand(1, 3, 28, 28)).shape == (1, 1, 16)  # smaller than native works too


def test_encoder_input_errors():
    encoder = InternViTEncoder.from_config(VisionEncoderConfig(hidden_size=32, num_layers=1, num_heads=2,
                                                               intermediate_size=64, image_size=56, patch_size=14), 16)
    for bad, message in [(torch.rand(3, 56, 56), "shape"), (torch.rand(1, 3, 56, 84), "square"),
                         (torch.rand(1, 3, 60, 60), "multiple of the encoder's token stride 28"),
                         (torch.zeros(1, 3, 56, 56, dtype=torch.uint8), "float")]:
        with pytest.raises(UniLIPError, match=message):
            encoder(bad)


def tiny_siglip() -> SiglipVisionConfig:
    return SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                              image_size=32, patch_size=4)


def tiny_clip() -> CLIPVisionConfig:
    return CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                            image_size=32, patch_size=4)


@pytest.mark.parametrize("make", [tiny_siglip, tiny_clip])
def test_hf_encoder_shapes_and_rebuild(make):
    encoder = HFVisionEncoder.from_config(make(), dim=24, downsample_ratio=0.5).eval()
    assert encoder.token_stride == 8
    assert isinstance(encoder.vision_tower.post_layernorm, nn.Identity)
    images = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert encoder(images).shape == (2, 16, 24)
        assert encoder(torch.rand(2, 3, 48, 48)).shape == (2, 36, 24)  # position embeddings interpolated
        rebuilt = VisionEncoder.from_config_dict(encoder.config_dict()).eval()
        rebuilt.load_state_dict(encoder.state_dict())
        assert torch.equal(rebuilt(images), encoder(images))


def test_hf_encoder_features_are_the_raw_last_layer():
    encoder = HFVisionEncoder.from_config(tiny_siglip(), dim=24).eval()
    reference = SiglipVisionModel(encoder.vision_tower.config).eval()
    reference.load_state_dict(encoder.vision_tower.state_dict(), strict=False)  # + its unused post_layernorm
    images = torch.rand(1, 3, 32, 32)
    pixels = (images - 0.5) / 0.5
    with torch.no_grad():
        hidden = reference(pixel_values=pixels, output_hidden_states=True).hidden_states[-1]  # before post-norm
        assert torch.equal(encoder._patch_tokens(pixels), hidden)
    assert not hasattr(encoder.vision_tower, "head")


def test_hf_encoder_from_pretrained_full_clip(tmp_path):
    text = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, vocab_size=100,
                bos_token_id=0, eos_token_id=1, pad_token_id=1)
    full = CLIPModel(CLIPConfig(vision_config=tiny_clip().to_dict(), text_config=text))
    full.save_pretrained(tmp_path)
    encoder = HFVisionEncoder.from_pretrained(tmp_path, dim=24)
    assert torch.equal(encoder.vision_tower.embeddings.patch_embedding.weight,
                       full.vision_model.embeddings.patch_embedding.weight)
    assert encoder.mean == pytest.approx((0.48145466, 0.4578275, 0.40821073))


def test_build_encoder_variants(tmp_path):
    cfg = get_preset("mini")
    encoder = build_encoder(cfg)
    assert isinstance(encoder, InternViTEncoder) and (encoder.dim, encoder.token_stride) == (128, 16)

    SiglipVisionModel(SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                         num_attention_heads=2, image_size=64, patch_size=8)).save_pretrained(tmp_path)
    cfg.tokenizer.encoder_backbone = str(tmp_path)
    encoder = build_encoder(cfg)
    assert isinstance(encoder, HFVisionEncoder) and (encoder.dim, encoder.token_stride) == (128, 16)


def test_build_encoder_from_pretrained_internvl(tmp_path):
    model = tiny_internvl(seed=3)
    model.save_pretrained(tmp_path)
    cfg = get_preset("mini")
    cfg.mllm.pretrained = str(tmp_path)
    cfg.mllm.vision = VisionEncoderConfig(hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64,
                                          image_size=224, patch_size=14)
    cfg.mllm.language.hidden_size = D
    cfg.tokenizer.image_size = 224
    encoder = build_encoder(cfg).eval()
    images = torch.rand(1, 3, 224, 224)
    with torch.no_grad():
        assert torch.equal(encoder(images), reference_features(model, images))
    cfg.mllm.vision.num_layers = 3
    with pytest.raises(UniLIPError, match="mllm.vision.num_layers: config 3, checkpoint 2"):
        build_encoder(cfg)
