"""The UniLIP tokenizer (the paper's autoencoder): encoder -> F -> h_phi -> z -> DC-AE decoder -> pixels.

One module holds the three parts so that training, evaluation, generation and the converters share one definition and
one checkpoint format (``config.json`` + ``model.safetensors``). It is only math: stages, freezing, EMA and losses live
in ``unilip.train``; the losses use :meth:`UniLIPTokenizer.forward`'s features (self-distillation) and reconstruction.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from unilip.config import UniLIPConfig, validate_config
from unilip.errors import UniLIPError
from unilip.hub import (
    check_component_config,
    component_header,
    load_safetensors_subset,
    load_state_dict_strict,
    read_config_json,
    resolve_pretrained,
    save_weights_and_config,
)
from unilip.tokenizer.decoder import PixelDecoder
from unilip.tokenizer.encoder import VisionEncoder, build_encoder
from unilip.tokenizer.projection import LatentProjection

__all__ = ["TokenizerOutput", "UniLIPTokenizer"]

CONFIG_NAME, WEIGHTS_NAME = "config.json", "model.safetensors"
_DECODER_FIELDS = ("latent_channels", "attention_head_dim", "block_types", "block_out_channels", "layers_per_block",
                   "qkv_multiscales", "upsample_block_type")


@dataclass
class TokenizerOutput:
    """What one training step needs from the tokenizer."""

    reconstruction: Tensor  # (B, 3, H, W), [0, 1] scale, not clamped (the loss needs the gradient everywhere)
    features: Tensor  # F (B, N, D): the MLLM-facing features, for self-distillation
    latent: Tensor  # z (B, C, g, g)


def _comparable(key: str, value: Any, n: int) -> Any:
    """A decoder option in one spelling: JSON lists, and per-stage block types as a list of n (diffusers also
    accepts one string for all stages)."""
    if key == "block_types" and isinstance(value, str):
        value = [value] * n
    return json.loads(json.dumps(value))


class UniLIPTokenizer(nn.Module):
    """The UniLIP autoencoder: ``encoder`` (F), ``projection`` (h_phi, z) and ``decoder`` (pixels).

    Args:
        encoder: a :class:`VisionEncoder` (InternViT + mlp1, or a SigLIP/CLIP backbone with a fresh projector).
        projection: :class:`LatentProjection` from the encoder's width D to the latent width C.
        decoder: :class:`PixelDecoder` from C to pixels.
        image_size: the resolution the tokenizer is trained and used at (448 for 1b/2b, 64 for mini).
    """

    # FSDP wrap units (the blocks of each part), read off the class as diffusers / transformers do.
    _no_split_modules: ClassVar[list[str]] = [
        "InternVLVisionLayer", "SiglipEncoderLayer", "CLIPEncoderLayer", "ResidualMLPBlock", "ResBlock", "EfficientViTBlock",
    ]

    #: The largest working size of :meth:`reconstruct`, in multiples of ``image_size``.
    MAX_SIZE_FACTOR = 4

    def __init__(self, encoder: VisionEncoder, projection: LatentProjection, decoder: PixelDecoder, image_size: int):
        super().__init__()
        if projection.dim != encoder.dim:
            raise UniLIPError(f"projection width {projection.dim} != encoder width D {encoder.dim}")
        if decoder.latent_channels != projection.latent_channels:
            raise UniLIPError(f"decoder takes {decoder.latent_channels} latent channels, h_phi gives "
                              f"{projection.latent_channels}")
        encoder.grid(image_size)  # raises unless image_size is a multiple of the token stride
        self.encoder, self.projection, self.decoder = encoder, projection, decoder
        self.image_size = image_size

    # ------------------------------------------------------------------------------------------------ building

    @classmethod
    def from_config(cls, cfg: UniLIPConfig) -> UniLIPTokenizer:
        """Build from a config: encoder via :func:`build_encoder`, fresh h_phi, decoder random or from
        ``tokenizer.decoder_pretrained``. Works under ``with torch.device("meta"):`` when nothing is pretrained."""
        validate_config(cfg)
        tok = cfg.tokenizer
        encoder = build_encoder(cfg)
        projection = LatentProjection(encoder.dim, tok.latent_channels, tok.projection_blocks)
        if tok.decoder_pretrained is None:
            decoder = PixelDecoder.from_config(tok)
        else:
            what = f"the DC-AE decoder (tokenizer.decoder_pretrained) for the {cfg.preset} preset"
            decoder = PixelDecoder.from_dcae(resolve_pretrained(tok.decoder_pretrained, what,
                                                                ["config.json", "*.safetensors*"]))
            ours, theirs = PixelDecoder.config_from_tokenizer(tok), decoder.config_dict()
            n = len(ours["block_out_channels"])
            differ = [f"{key}: config {ours[key]}, checkpoint {theirs[key]}" for key in _DECODER_FIELDS
                      if _comparable(key, ours[key], n) != _comparable(key, theirs[key], n)]
            if differ:
                raise UniLIPError(f"{tok.decoder_pretrained} does not match tokenizer.decoder_*: {'; '.join(differ)}")
        return cls(encoder, projection, decoder, tok.image_size)

    def config_dict(self) -> dict[str, Any]:
        """Everything needed to rebuild this tokenizer (the content of config.json)."""
        return {
            **component_header(type(self).__name__), "image_size": self.image_size,
            "encoder": self.encoder.config_dict(), "projection": self.projection.config_dict(),
            "decoder": self.decoder.config_dict(),
        }

    @classmethod
    def from_config_dict(cls, config: dict[str, Any]) -> UniLIPTokenizer:
        """A randomly initialised tokenizer from :meth:`config_dict`'s output."""
        check_component_config(config, cls.__name__, "the config")
        try:
            encoder = VisionEncoder.from_config_dict(config["encoder"])
            projection = LatentProjection(**config["projection"])
            decoder = PixelDecoder(**config["decoder"])
            return cls(encoder, projection, decoder, config["image_size"])
        except (KeyError, TypeError, ValueError) as err:
            raise UniLIPError(f"invalid {cls.__name__} config: {type(err).__name__}: {err}") from err

    def save_pretrained(self, directory: str | Path) -> None:
        """Write ``config.json`` + ``model.safetensors`` into ``directory`` (created if needed).

        Each file is written under a temporary name in the same directory and then renamed over the old one, so a
        crash never leaves a truncated file; weights go first, so a new config never describes old weights.
        """
        if any(value.is_meta for value in self.state_dict().values()):
            raise UniLIPError("cannot save a tokenizer on the meta device: it has no weights yet")
        save_weights_and_config(directory, self.state_dict(), self.config_dict(), WEIGHTS_NAME, CONFIG_NAME)

    @classmethod
    def from_pretrained(cls, directory_or_repo: str | Path) -> UniLIPTokenizer:
        """Load a tokenizer written by :meth:`save_pretrained` (a directory or a cached repo id), strictly.

        Raises:
            UniLIPError: unreadable config, or weights with missing / unexpected / misshapen keys (nothing loaded).
        """
        directory = resolve_pretrained(str(directory_or_repo), f"the UniLIP tokenizer {directory_or_repo}",
                                       [CONFIG_NAME, WEIGHTS_NAME])
        config = read_config_json(directory / CONFIG_NAME, f"the UniLIP tokenizer in {directory}")
        model = cls.from_config_dict(config)
        state = load_safetensors_subset(directory, ("",))
        load_state_dict_strict(model, state, f"the tokenizer weights in {directory}")
        return model

    # ------------------------------------------------------------------------------------------------ math

    def features(self, images: Tensor) -> Tensor:
        """Images (B, 3, S, S) in [0, 1] -> F (B, N, D): what the LLM reads, N = (S / token_stride)²."""
        return self.encoder(images)

    def encode(self, images: Tensor) -> Tensor:
        """Images (B, 3, S, S) in [0, 1] -> the UniLIP latent z (B, C, g, g), g = S / token_stride."""
        return self.projection(self.encoder(images))  # (B, 3, S, S) -> (B, N, D) -> (B, C, g, g)

    def decode(self, z: Tensor, size: int | None = None, clamp: bool = False, clamp_first: bool = False) -> Tensor:
        """Latent z (B, C, g, g) -> images (B, 3, size, size) on the [0, 1] scale.

        ``size`` defaults to the input size the latent came from, g * token_stride (16 x 16 -> 448 for 1b/2b);
        ``clamp`` clips to [0, 1] for display and metrics (never in training), after the decoder's resize to
        ``size``; ``clamp_first`` clips before it, the official generation pipeline's order (512 px, clamp, 448).
        """
        size = z.shape[-1] * self.encoder.token_stride if size is None else size
        images = self.decoder(z, size, clamp=clamp_first)  # (B, C, g, g) -> (B, 3, size, size)
        return images.clamp(0, 1) if clamp or clamp_first else images

    def enable_gradient_checkpointing(self) -> None:
        """Recompute the ViT layers and the decoder's up-blocks in the backward pass: less memory at 448 px."""
        self.encoder.vision_tower.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        self.decoder.gradient_checkpointing = True

    def forward(self, images: Tensor) -> TokenizerOutput:
        """One training pass: images (B, 3, S, S) -> reconstruction (same size, unclamped), features F, latent z."""
        features = self.encoder(images)  # (B, 3, S, S) -> (B, N, D)
        latent = self.projection(features)  # (B, N, D) -> (B, C, g, g)
        reconstruction = self.decoder(latent, images.shape[-1])  # (B, C, g, g) -> (B, 3, S, S)
        return TokenizerOutput(reconstruction=reconstruction, features=features, latent=latent)

    @torch.no_grad()
    def reconstruct(self, images: Tensor, pad_to_multiple: bool = False, size: int | None = None) -> Tensor:
        """Encode and decode for inference: images (B, 3, H, W) in [0, 1] -> clamped reconstructions (B, 3, H, W), the
        input's size, as an autoencoder user expects.

        Args:
            pad_to_multiple: the official 256 px evaluation mode (`DC_AE_ViT_Stage2_Pad`): reflect-pad the image up to
                a multiple of the token stride (256 -> 280), split evenly between top/bottom and left/right as the
                official code does, encode, decode at the padded size (10 x 10 -> 320 -> 280) and crop back.
                Without it, a side that is not a multiple of the token stride raises :class:`UniLIPError`.
            size: the resolution the model works at (the feature grid is square): the images are resized to
                ``size`` x ``size`` (bicubic, antialiased), reconstructed there and resized back to H x W. Default:
                the input's own size when it is square, else the model's ``image_size``; at most
                ``MAX_SIZE_FACTOR`` x ``image_size`` (the encoder's attention grows with the fourth power of the side,
                and far from the trained size its interpolated position embeddings say little).
        """
        if images.ndim != 4:
            raise UniLIPError(f"expected images of shape (B, 3, H, W) in [0, 1], got {tuple(images.shape)}")
        height, width = images.shape[-2:]
        if size is None:
            size = height if height == width else self.image_size
        if not 1 <= size <= self.MAX_SIZE_FACTOR * self.image_size:
            raise UniLIPError(f"size {size}: this tokenizer works at 1 to {self.MAX_SIZE_FACTOR * self.image_size} px "
                              f"({self.MAX_SIZE_FACTOR} x its image size {self.image_size}); pass a smaller size")
        if (height, width) != (size, size):
            inner = F.interpolate(images, size=(size, size), mode="bicubic", antialias=True, align_corners=False)
            out = self.reconstruct(inner.clamp(0, 1), pad_to_multiple=pad_to_multiple)  # (B, 3, size, size)
            out = F.interpolate(out, size=(height, width), mode="bicubic", antialias=True, align_corners=False)
            return out.clamp(0, 1)
        if not pad_to_multiple:
            self.encoder.check_images(images)
            return self.decode(self.encode(images), size=width, clamp=True).to(images.dtype)
        stride = self.encoder.token_stride
        pad_h, pad_w = -height % stride, -width % stride
        top, left = pad_h // 2, pad_w // 2
        bottom, right = pad_h - top, pad_w - left
        if max(top, bottom) >= height or max(left, right) >= width:
            raise UniLIPError(f"image {height}x{width} is too small to reflect-pad to a multiple of {stride} px")
        padded = F.pad(images, (left, right, top, bottom), mode="reflect")  # (B, 3, H, W) -> (B, 3, H', W')
        # decoded at 32 / 28 of the padded side (320 px) and rescaled with align_corners=True, as the official Pad model
        out = self.decoder(self.encode(padded), padded.shape[-1], align_corners=True).clamp(0, 1)  # (B, 3, H', W')
        return out[..., top:top + height, left:left + width].to(images.dtype)  # (B, 3, H', W') -> (B, 3, H, W)
