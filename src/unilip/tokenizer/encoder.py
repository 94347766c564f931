"""The vision encoder: images -> the MLLM's image features F (B, N, D), the "semantic features" UniLIP keeps.

UniLIP's point is that the MLLM's own encoder (InternViT + pixel shuffle + projector `mlp1`) is fine-tuned to also
reconstruct pixels while its features stay what the LLM expects. :class:`InternViTEncoder` is therefore exactly the
image path of transformers' native ``InternVLModel.get_image_features``, with the same submodule names
(``vision_tower``, ``multi_modal_projector``) so the trained encoder loads straight back into an InternVL3 checkpoint.
:class:`HFVisionEncoder` runs the same recipe on a SigLIP or CLIP backbone with a fresh projector.

Images enter every encoder as float tensors (B, 3, H, W) in [0, 1]; each encoder normalises with its own mean/std.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from transformers import (
    AutoConfig,
    CLIPVisionConfig,
    CLIPVisionModel,
    InternVLConfig,
    InternVLVisionConfig,
    InternVLVisionModel,
    PreTrainedConfig,
    SiglipVisionConfig,
    SiglipVisionModel,
)
from transformers.models.internvl.modeling_internvl import InternVLMultiModalProjector

from unilip.config import UniLIPConfig, VisionEncoderConfig
from unilip.errors import UniLIPError
from unilip.hub import (
    load_safetensors_subset,
    load_state_dict_strict,
    resolve_pretrained,
)

__all__ = ["HFVisionEncoder", "InternViTEncoder", "VisionEncoder", "build_encoder", "pixel_shuffle"]

# InternViT's input normalisation (the official tokenizer code, nnnth/UniLIP `tokenizer/`)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
CLIP_MEAN, CLIP_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
SIGLIP_MEAN = SIGLIP_STD = (0.5, 0.5, 0.5)
_WEIGHTS = ["config.json", "*.safetensors", "*.safetensors.index.json", "preprocessor_config.json"]


def pixel_shuffle(x: Tensor, scale: float = 0.5) -> Tensor:
    """InternVL's token merge: (B, W, H, C) -> (B, W*s, H*s, C/s²); with s = 0.5, 2 x 2 tokens become one.

    The math of transformers' ``InternVLModel.pixel_shuffle`` (and the official InternVL ``pixel_shuffle``), kept
    bit-for-bit, including its naming quirk: dim 1 is called "width" and dim 2 "height", although callers pass a
    row-major (B, rows, cols, C) grid. Only the order of channels inside a merged token depends on it, and the
    pretrained projector expects exactly this order.
    """
    batch, width, height, channels = x.shape
    if (width * scale) % 1 or (height * scale) % 1 or (channels / scale**2) % 1:
        raise UniLIPError(f"pixel_shuffle: a {width}x{height} token grid does not merge by {scale}")
    x = x.reshape(batch, width, int(height * scale), int(channels / scale))  # (B, W, H, C) -> (B, W, H*s, C/s)
    x = x.permute(0, 2, 1, 3).contiguous()  # (B, W, H*s, C/s) -> (B, H*s, W, C/s)
    x = x.view(batch, int(height * scale), int(width * scale), int(channels / scale**2))  # -> (B, H*s, W*s, C/s²)
    return x.permute(0, 2, 1, 3).contiguous()  # (B, H*s, W*s, C/s²) -> (B, W*s, H*s, C/s²)


def _projector(vision_dim: int, dim: int, downsample_ratio: float, act: str = "gelu") -> InternVLMultiModalProjector:
    """InternVL's `mlp1` for a C-wide ViT: LayerNorm(C/s²) -> Linear(C/s², D) -> GELU -> Linear(D, D), built by
    transformers' own class (it multiplies C by 1/s² itself)."""
    config = InternVLConfig(
        vision_config={"hidden_size": vision_dim, "num_attention_heads": 1},
        text_config={"model_type": "qwen2", "hidden_size": dim, "num_attention_heads": 1, "num_key_value_heads": 1},
        downsample_ratio=downsample_ratio, projector_hidden_act=act,
    )
    return InternVLMultiModalProjector(config)


class VisionEncoder(nn.Module):
    """The encoder interface: ``forward(images (B, 3, H, W) in [0, 1]) -> F (B, g*g, D)``.

    Subclasses hold a ``vision_tower`` and a ``multi_modal_projector`` and implement :meth:`_patch_tokens`; the grid
    reshape, pixel shuffle and projector are shared here so every backbone runs the identical InternVL path.
    The mean/std buffers are not persistent (not in the state dict, so it stays exactly InternVL's): they are
    constants of the encoder kind, rebuilt by the constructor; after a meta-device build + ``to_empty()``, rebuild
    the encoder (or refill ``pixel_mean`` / ``pixel_std``) before use.
    """

    kind: ClassVar[str] = ""  # the name of the class in config.json
    _registry: ClassVar[dict[str, type[VisionEncoder]]] = {}
    vision_tower: nn.Module
    multi_modal_projector: nn.Module

    def __init_subclass__(cls, **kwargs: Any):
        super().__init_subclass__(**kwargs)
        VisionEncoder._registry[cls.kind] = cls  # so from_config_dict() finds the class by its "kind"

    def __init__(self, dim: int, patch_size: int, downsample_ratio: float, mean: tuple, std: tuple):
        super().__init__()
        if not 0 < downsample_ratio <= 1 or (1 / downsample_ratio) % 1:
            raise UniLIPError(f"downsample_ratio must be 1/k for a whole k, e.g. 0.5 (got {downsample_ratio})")
        self._dim, self.patch_size, self.downsample_ratio = dim, patch_size, downsample_ratio
        self.mean, self.std = tuple(float(v) for v in mean), tuple(float(v) for v in std)
        self.register_buffer("pixel_mean", torch.tensor(self.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(self.std).view(1, 3, 1, 1), persistent=False)

    @property
    def dim(self) -> int:
        """D, the feature width (the LLM's hidden size)."""
        return self._dim

    @property
    def token_stride(self) -> int:
        """Input pixels per feature token per side: patch / downsample_ratio (14 / 0.5 = 28 for InternViT)."""
        return round(self.patch_size / self.downsample_ratio)

    def grid(self, image_size: int) -> int:
        """Feature tokens per side for a square image of ``image_size`` px (448 -> 16 for InternViT)."""
        if image_size <= 0 or image_size % self.token_stride:
            raise UniLIPError(
                f"image side {image_size} px is not a multiple of the encoder's token stride {self.token_stride} px "
                f"(patch {self.patch_size} / downsample ratio {self.downsample_ratio}); resize or pad the image"
            )
        return image_size // self.token_stride

    def check_images(self, images: Tensor) -> int:
        """Validate a batch (B, 3, S, S) and return its feature grid side g."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise UniLIPError(f"expected images of shape (B, 3, H, W) in [0, 1], got {tuple(images.shape)}")
        if not images.is_floating_point():
            raise UniLIPError(f"expected float images in [0, 1], got dtype {images.dtype}")
        if images.shape[-1] != images.shape[-2]:
            raise UniLIPError(f"expected square images (the feature grid is square), got {tuple(images.shape[-2:])}")
        return self.grid(images.shape[-1])

    def _patch_tokens(self, pixel_values: Tensor) -> Tensor:
        """Normalised pixels (B, 3, S, S) -> the backbone's last-layer patch tokens (B, P, C), CLS dropped."""
        raise NotImplementedError  # subclasses; likewise config_dict() and the classmethod _from_config_dict()

    def forward(self, images: Tensor) -> Tensor:
        """Images (B, 3, S, S) in [0, 1] -> features F (B, g*g, D), g = S / token_stride."""
        self.check_images(images)
        # (B, 3, S, S), normalised in float32, then in the weights' precision (a bf16 model takes fp32 images)
        pixel_values = ((images.float() - self.pixel_mean.float()) / self.pixel_std.float()).to(self.pixel_mean.dtype)
        tokens = self._patch_tokens(pixel_values)  # (B, 3, S, S) -> (B, P, C), P = (S / patch)²
        batch, side = tokens.shape[0], int(tokens.shape[1] ** 0.5)
        tokens = tokens.reshape(batch, side, side, -1)  # (B, P, C) -> (B, p, p, C)
        tokens = pixel_shuffle(tokens, self.downsample_ratio)  # (B, p, p, C) -> (B, g, g, C/s²)
        tokens = tokens.reshape(batch, -1, tokens.shape[-1])  # (B, g, g, C/s²) -> (B, N, C/s²)
        return self.multi_modal_projector(tokens)  # (B, N, C/s²) -> (B, N, D)

    def config_dict(self) -> dict[str, Any]:  # everything needed to rebuild it, JSON; "kind" names the class
        raise NotImplementedError

    @classmethod
    def from_config_dict(cls, config: dict[str, Any]) -> VisionEncoder:
        """Rebuild (random init) an encoder from :meth:`config_dict`'s output; dispatches on ``config["kind"]``."""
        kind = config.get("kind")
        if kind not in VisionEncoder._registry:
            raise UniLIPError(f"unknown encoder kind {kind!r}; known: {', '.join(sorted(VisionEncoder._registry))}")
        return VisionEncoder._registry[kind]._from_config_dict(config)

    def _init_projector(self, std: float = 0.02) -> None:
        """Fresh projector init, transformers-style (normal std 0.02, zero bias, identity LayerNorm)."""
        for module in self.multi_modal_projector.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=std)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)


def _json(config: PreTrainedConfig) -> dict[str, Any]:  # every field, JSON types (lists, not tuples)
    return json.loads(config.to_json_string(use_diff=False))


class InternViTEncoder(VisionEncoder):
    """InternViT + pixel shuffle + mlp1: the image path of ``InternVLModel.get_image_features``.

    Last layer, CLS dropped, grid, pixel shuffle, projector. With ``use_mean_pooling=True`` (InternVL3's config) the
    tower's final ``layernorm`` is an Identity, so ``last_hidden_state`` is the raw last layer, as in the official
    tokenizer (no final norm); a checkpoint with ``use_mean_pooling=False`` keeps its norm, as transformers would.
    Position embeddings are interpolated (bicubic, by transformers) for sizes other than the config's image_size.
    """

    kind = "internvit"

    def __init__(self, vision_config: InternVLVisionConfig, dim: int, downsample_ratio: float = 0.5,
                 projector_hidden_act: str = "gelu"):
        patch = vision_config.patch_size
        super().__init__(dim, patch[0] if isinstance(patch, (list, tuple)) else patch, downsample_ratio,
                         IMAGENET_MEAN, IMAGENET_STD)
        self.projector_hidden_act = projector_hidden_act
        self.vision_tower = InternVLVisionModel(vision_config)
        self.multi_modal_projector = _projector(vision_config.hidden_size, dim, downsample_ratio, projector_hidden_act)
        self._init_projector(vision_config.initializer_range)

    @classmethod
    def from_config(cls, vision: VisionEncoderConfig, dim: int, downsample_ratio: float = 0.5) -> InternViTEncoder:
        """Random init from our ``VisionEncoderConfig`` (the mini preset, or 1b/2b on the meta device)."""
        config = InternVLVisionConfig(
            hidden_size=vision.hidden_size, num_hidden_layers=vision.num_layers, num_attention_heads=vision.num_heads,
            intermediate_size=vision.intermediate_size, image_size=vision.image_size, patch_size=vision.patch_size,
            attention_bias=vision.attention_bias, layer_scale_init_value=vision.layer_scale_init,
            norm_type=vision.norm_type, layer_norm_eps=vision.layer_norm_eps, use_qk_norm=vision.use_qk_norm,
            # 0.02, not InternVL3's hub value 1e-10 (OpenGVLab/InternVL3-1B-hf config.json, vision_config), which
            # would start every Linear at ~0.
            initializer_range=0.02,
            use_mean_pooling=True,  # final `layernorm` = Identity: the raw last layer (official `encode()`)
        )
        return cls(config, dim, downsample_ratio)

    @classmethod
    def from_internvl(cls, path_or_repo: str | Path) -> InternViTEncoder:
        """The ViT + projector of an InternVL3-*-hf checkpoint (a directory, or a cached repo id), loaded strictly.

        Reads ``config.json`` (``InternVLConfig``) and only the ``model.vision_tower.*`` and
        ``model.multi_modal_projector.*`` tensors (legacy ``vision_tower.*`` / ``multi_modal_projector.*`` too).
        """
        directory = resolve_pretrained(str(path_or_repo), f"the InternVL checkpoint {path_or_repo}", _WEIGHTS)
        try:
            config = InternVLConfig.from_pretrained(str(directory))
        except Exception as err:
            raise UniLIPError(f"cannot read an InternVLConfig from {directory / 'config.json'}: {err}") from err
        if config.vision_feature_layer != -1 or config.vision_feature_select_strategy != "default":
            raise UniLIPError(
                f"{directory}: UniLIP uses the last ViT layer without CLS (vision_feature_layer -1, strategy "
                f"'default'), but the checkpoint says {config.vision_feature_layer}, "
                f"{config.vision_feature_select_strategy!r}"
            )
        encoder = cls(config.vision_config, config.text_config.hidden_size, config.downsample_ratio,
                      config.projector_hidden_act)
        parts = ("vision_tower.", "multi_modal_projector.")
        tensors = load_safetensors_subset(directory, tuple(p + s for p in ("model.", "") for s in parts))
        state = {key.removeprefix("model."): value for key, value in tensors.items()}
        load_state_dict_strict(encoder, state, f"the InternVL vision tower + projector weights in {directory}")
        return encoder

    def _patch_tokens(self, pixel_values: Tensor) -> Tensor:
        pixel_values = pixel_values.to(self.vision_tower.dtype)  # as get_image_features (bf16/fp16 towers)
        hidden = self.vision_tower(pixel_values=pixel_values).last_hidden_state  # (B, 3, S, S) -> (B, 1+P, C)
        return hidden[:, 1:, :]  # drop CLS: (B, 1+P, C) -> (B, P, C)

    def config_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "vision_config": _json(self.vision_tower.config), "dim": self.dim,
                "downsample_ratio": self.downsample_ratio, "projector_hidden_act": self.projector_hidden_act}

    @classmethod
    def _from_config_dict(cls, config: dict[str, Any]) -> InternViTEncoder:
        return cls(InternVLVisionConfig.from_dict(config["vision_config"]), config["dim"],
                   config["downsample_ratio"], config.get("projector_hidden_act", "gelu"))


# model_type -> (config class, model class, has a CLS token, default mean/std)
_HF_BACKBONES: dict[str, tuple[type, type, bool, tuple, tuple]] = {
    "siglip_vision_model": (SiglipVisionConfig, SiglipVisionModel, False, SIGLIP_MEAN, SIGLIP_STD),
    "clip_vision_model": (CLIPVisionConfig, CLIPVisionModel, True, CLIP_MEAN, CLIP_STD),
}
_FULL_TO_VISION = {"siglip": "siglip_vision_model", "clip": "clip_vision_model"}


class HFVisionEncoder(VisionEncoder):
    """A transformers SigLIP or CLIP vision backbone + pixel shuffle + a fresh InternVL-style projector.

    Features are the backbone's raw last layer: the post-layernorm (SigLIP applies it to every token, CLIP only to
    the pooled CLS) and SigLIP's pooling head are removed, as InternViT has no final norm in UniLIP; this also leaves
    no parameter without a gradient (DDP). CLIP's CLS token is dropped; SigLIP has none. Other input sizes
    interpolate the position embeddings (transformers' ``interpolate_pos_encoding``).
    """

    kind = "hf"

    def __init__(self, backbone_config: PreTrainedConfig, dim: int, downsample_ratio: float = 0.5,
                 mean: tuple | None = None, std: tuple | None = None):
        if backbone_config.model_type not in _HF_BACKBONES:
            raise UniLIPError(f"unsupported backbone {backbone_config.model_type!r}; use a SigLIP or CLIP vision model")
        _, model_cls, has_cls, default_mean, default_std = _HF_BACKBONES[backbone_config.model_type]
        super().__init__(dim, backbone_config.patch_size, downsample_ratio, mean or default_mean, std or default_std)
        self.has_cls = has_cls
        backbone_config = copy.deepcopy(backbone_config)  # the caller's config stays as it was
        if hasattr(backbone_config, "vision_use_head"):
            backbone_config.vision_use_head = False  # SigLIP's attention-pooling head: unused
        self.vision_tower = model_cls(backbone_config)
        self.vision_tower.post_layernorm = nn.Identity()  # raw last layer (see the class docstring)
        self.multi_modal_projector = _projector(backbone_config.hidden_size, dim, downsample_ratio)
        self._init_projector()

    @classmethod
    def from_config(cls, config: PreTrainedConfig, dim: int, downsample_ratio: float = 0.5) -> HFVisionEncoder:
        """Random init from a ``SiglipVisionConfig`` or ``CLIPVisionConfig``."""
        return cls(config, dim, downsample_ratio)

    @classmethod
    def from_pretrained(cls, path_or_repo: str | Path, dim: int, downsample_ratio: float = 0.5) -> HFVisionEncoder:
        """A pretrained SigLIP / CLIP vision backbone (full or vision-only checkpoint) with a fresh projector to D."""
        directory = resolve_pretrained(str(path_or_repo), f"the vision backbone {path_or_repo}", _WEIGHTS)
        try:
            model_type = AutoConfig.from_pretrained(str(directory)).model_type
        except Exception as err:
            raise UniLIPError(f"cannot read the backbone config in {directory}: {err}") from err
        model_type = _FULL_TO_VISION.get(model_type, model_type)
        if model_type not in _HF_BACKBONES:
            raise UniLIPError(f"{directory} holds a {model_type!r} model, not a SigLIP or CLIP vision model")
        config_cls, model_cls, _, mean, std = _HF_BACKBONES[model_type]
        config = config_cls.from_pretrained(str(directory))  # a full SigLIP/CLIP config gives its vision_config
        processor = directory / "preprocessor_config.json"
        if processor.is_file():  # the checkpoint's own normalisation wins over the family default
            saved = json.loads(processor.read_text())
            mean, std = saved.get("image_mean", mean), saved.get("image_std", std)
        encoder = cls(config, dim, downsample_ratio, mean, std)
        pretrained, info = model_cls.from_pretrained(str(directory), config=encoder.vision_tower.config,
                                                     output_loading_info=True)
        if info["missing_keys"] or info["mismatched_keys"]:
            raise UniLIPError(f"{directory}: backbone weights missing {sorted(info['missing_keys'])} or of the wrong "
                              f"shape {sorted(str(k) for k in info['mismatched_keys'])}")
        pretrained.post_layernorm = nn.Identity()
        load_state_dict_strict(encoder.vision_tower, pretrained.state_dict(), f"the backbone weights in {directory}")
        return encoder

    def _patch_tokens(self, pixel_values: Tensor) -> Tensor:
        pixel_values = pixel_values.to(self.vision_tower.dtype)
        hidden = self.vision_tower(pixel_values=pixel_values, interpolate_pos_encoding=True).last_hidden_state
        return hidden[:, 1:, :] if self.has_cls else hidden  # (B, [1+]P, C) -> (B, P, C)

    def config_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "backbone_config": _json(self.vision_tower.config), "dim": self.dim,
                "downsample_ratio": self.downsample_ratio, "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def _from_config_dict(cls, config: dict[str, Any]) -> HFVisionEncoder:
        backbone = dict(config["backbone_config"])
        model_type = backbone.get("model_type")
        if model_type not in _HF_BACKBONES:
            raise UniLIPError(f"unsupported backbone {model_type!r} in the encoder config")
        backbone_config = _HF_BACKBONES[model_type][0].from_dict(backbone)
        return cls(backbone_config, config["dim"], config["downsample_ratio"], config.get("mean"), config.get("std"))


def build_encoder(cfg: UniLIPConfig) -> VisionEncoder:
    """The encoder a config describes: the MLLM's InternViT + mlp1 (random, or from ``mllm.pretrained``), or the
    SigLIP/CLIP backbone of ``tokenizer.encoder_backbone`` with a fresh projector; D is the LLM width either way."""
    dim, ratio = cfg.mllm.language.hidden_size, cfg.mllm.downsample_ratio
    if cfg.tokenizer.encoder_backbone:
        what = f"the vision backbone tokenizer.encoder_backbone of the {cfg.preset} preset"
        return HFVisionEncoder.from_pretrained(resolve_pretrained(cfg.tokenizer.encoder_backbone, what, _WEIGHTS),
                                               dim, ratio)
    if cfg.mllm.pretrained is None:
        return InternViTEncoder.from_config(cfg.mllm.vision, dim, ratio)
    what = f"the InternVL3 checkpoint (mllm.pretrained) for the {cfg.preset} preset"
    encoder = InternViTEncoder.from_internvl(resolve_pretrained(cfg.mllm.pretrained, what, _WEIGHTS))
    vision, tower = cfg.mllm.vision, encoder.vision_tower.config
    mismatched = [
        f"{name}: config {ours}, checkpoint {theirs}" for name, ours, theirs in (
            ("mllm.language.hidden_size", dim, encoder.dim), ("mllm.downsample_ratio", ratio, encoder.downsample_ratio),
            ("mllm.vision.hidden_size", vision.hidden_size, tower.hidden_size),
            ("mllm.vision.num_layers", vision.num_layers, tower.num_hidden_layers),
            ("mllm.vision.patch_size", vision.patch_size, encoder.patch_size),
        ) if ours != theirs
    ]
    if mismatched:
        raise UniLIPError(f"{cfg.mllm.pretrained} does not match the config: {'; '.join(mismatched)}")
    return encoder
