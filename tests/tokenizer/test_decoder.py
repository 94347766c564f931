"""The pixel decoder: DC-AE's decoder, [-1, 1] -> [0, 1], resizing, and strict loading from an AutoencoderDC."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from diffusers import AutoencoderDC
from diffusers.models.autoencoders.autoencoder_dc import Decoder
from safetensors.torch import load_file, save_file

from unilip.config import get_preset
from unilip.errors import UniLIPError
from unilip.tokenizer import PixelDecoder

MINI = get_preset("mini").tokenizer


def tiny_dcae(**overrides) -> AutoencoderDC:
    """An AutoencoderDC whose decoder is the mini preset's (f16, 32 latent channels)."""
    kwargs = dict(
        in_channels=3, latent_channels=32, attention_head_dim=16,
        encoder_block_types=("ResBlock",) * 3 + ("EfficientViTBlock",) * 2,
        decoder_block_types=MINI.decoder_block_types, encoder_block_out_channels=(8, 16, 16, 32, 32),
        decoder_block_out_channels=MINI.decoder_block_out_channels, encoder_layers_per_block=(1, 1, 1, 1, 1),
        decoder_layers_per_block=MINI.decoder_layers_per_block, encoder_qkv_multiscales=((), (), (), (5,), (5,)),
        decoder_qkv_multiscales=MINI.decoder_qkv_multiscales, upsample_block_type=MINI.decoder_upsample_block_type,
        downsample_block_type="pixel_unshuffle",
    )
    kwargs.update(overrides)
    torch.manual_seed(0)
    return AutoencoderDC(**kwargs).eval()


def test_shape_and_range_mapping():
    decoder = PixelDecoder.from_config(MINI).eval()
    assert decoder.upsample_factor == MINI.upsample_factor() == 16
    z = torch.randn(2, 32, 4, 4)
    with torch.no_grad():
        images = decoder(z)
        assert images.shape == (2, 3, 64, 64)
        assert torch.equal(images, (Decoder.forward(decoder, z) + 1) / 2)  # [-1, 1] -> [0, 1], no clamp


def test_resize_to_requested_size():
    decoder = PixelDecoder.from_config(MINI).eval()
    z = torch.randn(1, 32, 4, 4)
    with torch.no_grad():
        native = Decoder.forward(decoder, z)
        resized = decoder(z, size=56)
        assert resized.shape == (1, 3, 56, 56)
        expected = (F.interpolate(native, size=(56, 56), mode="bilinear", align_corners=False) + 1) / 2
        assert torch.equal(resized, expected)
        assert torch.equal(decoder(z, size=64), decoder(z))  # the native size is not resized


def test_full_size_layout_upsamples_by_32():
    with torch.device("meta"):
        decoder = PixelDecoder()
    assert decoder.upsample_factor == 32
    assert sum(p.numel() for p in decoder.parameters()) == 159_223_171  # DC-AE f32c32 decoder (mit-han-lab/dc-ae-f32c32-sana-1.1-diffusers)


def test_config_dict_rebuilds_the_same_module():
    decoder = PixelDecoder.from_config(MINI)
    rebuilt = PixelDecoder(**decoder.config_dict())
    def shapes(module):
        return {k: v.shape for k, v in module.state_dict().items()}

    assert shapes(rebuilt) == shapes(decoder)


def test_from_dcae_directory(tmp_path):
    ae = tiny_dcae()
    ae.save_pretrained(tmp_path / "vae")  # a pipeline-style directory: the autoencoder in vae/
    decoder = PixelDecoder.from_dcae(tmp_path).eval()
    z = torch.randn(1, 32, 4, 4)
    with torch.no_grad():
        assert torch.equal(decoder(z), (ae.decoder(z) + 1) / 2)
        assert torch.equal(decoder(z), (ae.decode(z).sample + 1) / 2)


def test_from_dcae_missing_key(tmp_path):
    tiny_dcae().save_pretrained(tmp_path)
    file = tmp_path / "diffusion_pytorch_model.safetensors"
    state = {k: v for k, v in load_file(file).items() if k != "decoder.conv_out.weight"}
    save_file(state, file)
    with pytest.raises(UniLIPError, match=r"missing 1: conv_out\.weight"):
        PixelDecoder.from_dcae(tmp_path)


def test_errors():
    decoder = PixelDecoder.from_config(MINI)
    with pytest.raises(UniLIPError, match=r"\(B, 32, h, w\)"):
        decoder(torch.randn(1, 16, 4, 4))
    with pytest.raises(UniLIPError, match="invalid DC-AE decoder layout"):
        PixelDecoder(block_out_channels=(32, 64), layers_per_block=(1,))
