"""The pixel decoder: the UniLIP latent z (B, 32, h, w) back to an image, with DC-AE's decoder.

UniLIP takes only the decoder of DC-AE f32c32 (SANA 1.1) and fine-tunes it (official code, nnnth/UniLIP
``tokenizer/modeling/dc_ae_vit*.py``); the DC-AE encoder is never used, because the encoder is the MLLM's ViT.
:class:`PixelDecoder` *is* diffusers' ``Decoder`` (a subclass), so its state dict is exactly the ``decoder.*`` tensors
of an ``AutoencoderDC`` checkpoint with the prefix removed, and converting either way is a rename. It adds the two
things the official code does around the decoder: mapping [-1, 1] to [0, 1] and resizing the f32 output (512 px for a
16 x 16 latent) back to the input size (448 px).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from diffusers.models.autoencoders.autoencoder_dc import DCUpBlock2d, Decoder
from torch import Tensor

from unilip.config import TokenizerConfig
from unilip.errors import UniLIPError
from unilip.hub import (
    load_safetensors_subset,
    load_state_dict_strict,
    resolve_pretrained,
)

__all__ = ["PixelDecoder"]

# AutoencoderDC's config.json key -> our constructor argument, with AutoencoderDC's default for keys older files lack.
_DCAE_KEYS: dict[str, tuple[str, Any]] = {
    "in_channels": ("out_channels", 3),
    "latent_channels": ("latent_channels", 32),
    "attention_head_dim": ("attention_head_dim", 32),
    "decoder_block_types": ("block_types", "ResBlock"),
    "decoder_block_out_channels": ("block_out_channels", (128, 256, 512, 512, 1024, 1024)),
    "decoder_layers_per_block": ("layers_per_block", (3, 3, 3, 3, 3, 3)),
    "decoder_qkv_multiscales": ("qkv_multiscales", ((), (), (), (5,), (5,), (5,))),
    "upsample_block_type": ("upsample_block_type", "pixel_shuffle"),
    "decoder_norm_types": ("norm_types", "rms_norm"),
    "decoder_act_fns": ("act_fns", "silu"),
    "decoder_in_shortcut": ("in_shortcut", True),
    "decoder_conv_act_fn": ("conv_act_fn", "relu"),
}


def _tuples(value: Any) -> Any:
    """JSON lists -> tuples, recursively, so configs compare equal however they were read."""
    return tuple(_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


class PixelDecoder(Decoder):
    """The DC-AE decoder (diffusers ``Decoder``), returning images in [0, 1] at any requested size.

    Args:
        latent_channels: C of the latent z (32).
        out_channels: image channels (3).
        attention_head_dim, block_types, block_out_channels, layers_per_block, qkv_multiscales, norm_types, act_fns,
        upsample_block_type, in_shortcut, conv_act_fn: diffusers ``Decoder`` arguments (``AutoencoderDC``'s
            ``decoder_*`` keys); the defaults are DC-AE f32c32
            (mit-han-lab/dc-ae-f32c32-sana-1.1-diffusers config.json).
        resize_antialias: antialias the bilinear resize to the requested size. The official code resizes with plain
            bilinear interpolation (``align_corners=False``, no antialias; `DC_AE_ViT_Stage2_448*.decode`), which the
            default reproduces.
    """

    def __init__(
        self,
        latent_channels: int = 32,
        out_channels: int = 3,
        attention_head_dim: int = 32,
        block_types: str | tuple[str, ...] = ("ResBlock",) * 3 + ("EfficientViTBlock",) * 3,
        block_out_channels: tuple[int, ...] = (128, 256, 512, 512, 1024, 1024),
        layers_per_block: tuple[int, ...] = (3, 3, 3, 3, 3, 3),
        qkv_multiscales: tuple[tuple[int, ...], ...] = ((), (), (), (5,), (5,), (5,)),
        norm_types: str | tuple[str, ...] = "rms_norm",
        act_fns: str | tuple[str, ...] = "silu",
        upsample_block_type: str = "interpolate",
        in_shortcut: bool = True,
        conv_act_fn: str = "relu",
        resize_antialias: bool = False,
    ):
        config = {
            "latent_channels": latent_channels, "out_channels": out_channels, "attention_head_dim": attention_head_dim,
            "block_types": block_types, "block_out_channels": block_out_channels, "layers_per_block": layers_per_block,
            "qkv_multiscales": qkv_multiscales, "norm_types": norm_types, "act_fns": act_fns,
            "upsample_block_type": upsample_block_type, "in_shortcut": in_shortcut, "conv_act_fn": conv_act_fn,
            "resize_antialias": resize_antialias,
        }
        config = {key: _tuples(value) for key, value in config.items()}
        stages = len(config["block_out_channels"])
        uneven = [key for key in ("block_types", "layers_per_block", "qkv_multiscales", "norm_types", "act_fns")
                  if not isinstance(config[key], str) and len(config[key]) != stages]
        if stages == 0 or uneven:  # diffusers would silently zip the lists to the shortest
            raise UniLIPError(f"PixelDecoder: invalid DC-AE decoder layout: {', '.join(uneven) or 'no stages'} must "
                              f"have one entry per stage of block_out_channels ({stages})")
        try:
            super().__init__(
                in_channels=out_channels, latent_channels=latent_channels, attention_head_dim=attention_head_dim,
                block_type=config["block_types"], block_out_channels=config["block_out_channels"],
                layers_per_block=config["layers_per_block"], qkv_multiscales=config["qkv_multiscales"],
                norm_type=config["norm_types"], act_fn=config["act_fns"], upsample_block_type=upsample_block_type,
                in_shortcut=in_shortcut, conv_act_fn=conv_act_fn,
            )
        except (ValueError, KeyError, IndexError, TypeError, ZeroDivisionError) as err:
            raise UniLIPError(f"PixelDecoder: invalid DC-AE decoder layout {config}: {err}") from err
        self._config = config
        self.latent_channels = latent_channels
        self.resize_antialias = resize_antialias
        # Pixels per latent cell: each DCUpBlock2d doubles the resolution (5 of them in DC-AE f32 -> 32).
        self.gradient_checkpointing = False  # trade compute for memory at 448 px (set by enable_gradient_checkpointing)
        self.upsample_factor = 2 ** sum(isinstance(module, DCUpBlock2d) for module in self.modules())

    @classmethod
    def from_config(cls, tokenizer: TokenizerConfig) -> PixelDecoder:
        """A randomly initialised decoder from a ``TokenizerConfig``'s ``latent_channels`` and ``decoder_*`` fields."""
        return cls(**cls.config_from_tokenizer(tokenizer))

    @staticmethod
    def config_from_tokenizer(tokenizer: TokenizerConfig) -> dict[str, Any]:
        """The constructor arguments a ``TokenizerConfig`` describes (norms and activations: DC-AE's)."""
        return {
            "latent_channels": tokenizer.latent_channels,
            "attention_head_dim": tokenizer.decoder_attention_head_dim,
            "block_types": _tuples(tokenizer.decoder_block_types),
            "block_out_channels": _tuples(tokenizer.decoder_block_out_channels),
            "layers_per_block": _tuples(tokenizer.decoder_layers_per_block),
            "qkv_multiscales": _tuples(tokenizer.decoder_qkv_multiscales),
            "upsample_block_type": tokenizer.decoder_upsample_block_type,
        }

    @classmethod
    def from_dcae(cls, path_or_repo: str | Path, resize_antialias: bool = False) -> PixelDecoder:
        """The decoder of a diffusers ``AutoencoderDC`` checkpoint (a directory or a cached repo id).

        Builds from its ``config.json`` and loads only its ``decoder.*`` tensors, strictly (the ``encoder.*`` tensors
        are the expected leftovers). A pipeline directory with the autoencoder in ``vae/`` works too.
        """
        directory = resolve_pretrained(
            str(path_or_repo), f"the DC-AE checkpoint {path_or_repo}", ["config.json", "*.safetensors*"]
        )
        if not (directory / "config.json").is_file() and (directory / "vae" / "config.json").is_file():
            directory = directory / "vae"
        try:
            config = json.loads((directory / "config.json").read_text())
        except (OSError, ValueError) as err:
            raise UniLIPError(f"cannot read the DC-AE config {directory / 'config.json'}: {err}") from err
        if config.get("_class_name", "AutoencoderDC") != "AutoencoderDC":
            raise UniLIPError(f"{directory} holds a {config['_class_name']}, not a diffusers AutoencoderDC")
        kwargs = {ours: _tuples(config.get(key, default)) for key, (ours, default) in _DCAE_KEYS.items()}
        decoder = cls(**kwargs, resize_antialias=resize_antialias)
        tensors = load_safetensors_subset(directory, ("decoder.",))
        state = {key.removeprefix("decoder."): value for key, value in tensors.items()}
        load_state_dict_strict(decoder, state, f"the DC-AE decoder weights in {directory}")
        return decoder

    def config_dict(self) -> dict[str, Any]:
        """The constructor arguments, JSON-serialisable (stored in the tokenizer's config.json)."""
        return json.loads(json.dumps(self._config))

    def _decode(self, z: Tensor) -> Tensor:
        """diffusers' ``Decoder.forward``, with optional gradient checkpointing of each up-block (diffusers' DC-AE
        decoder has none; the official 448 px stage re-implements this forward for the same reason)."""
        if not (self.gradient_checkpointing and torch.is_grad_enabled()):
            return super().forward(z)
        from torch.utils.checkpoint import checkpoint

        x = self.conv_in(z)
        if self.in_shortcut:
            x = x + z.repeat_interleave(self.in_shortcut_repeats, dim=1)
        for up_block in reversed(self.up_blocks):
            x = checkpoint(up_block, x, use_reentrant=False)
        x = self.norm_out(x.movedim(1, -1)).movedim(-1, 1)
        return self.conv_out(self.conv_act(x))

    def forward(self, z: Tensor, size: int | None = None, clamp: bool = False, align_corners: bool = False) -> Tensor:
        """Decode latents z (B, C, h, w) to images (B, 3, size, size) on the [0, 1] scale.

        ``size`` None keeps the decoder's native h * upsample_factor; another size is a bilinear resize, as the
        official 448 px path (16 x 16 -> 512 -> 448).

        Args:
            clamp: clip the decoder's output to the image range *before* the resize, the official generation
                pipeline's order (512 px, clamp, bilinear to 448); the result stays in [0, 1], since bilinear weights
                are positive. Off by default: training needs the gradient everywhere.
            align_corners: the resize's corner convention; the official 256 px pad mode rescales 320 -> 280 with
                ``align_corners=True``, the 448 px path with ``False``.
        """
        if z.ndim != 4 or z.shape[1] != self.latent_channels:
            raise UniLIPError(f"PixelDecoder: expected latents (B, {self.latent_channels}, h, w), got {tuple(z.shape)}")
        x = self._decode(z)  # (B, C, h, w) -> (B, 3, h*f, w*f), in [-1, 1]
        if clamp:
            x = x.clamp(-1, 1)
        if size is not None and tuple(x.shape[-2:]) != (size, size):
            x = F.interpolate(  # (B, 3, h*f, w*f) -> (B, 3, size, size)
                x, size=(size, size), mode="bilinear", align_corners=align_corners, antialias=self.resize_antialias
            )
        return (x + 1) / 2  # [-1, 1] -> [0, 1]
