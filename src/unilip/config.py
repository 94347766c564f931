"""unilip's configs: the dataclasses of every part and the presets ``mini``, ``1b``, ``2b``.

Load one with :func:`load_config` (YAML file + ``dotted.key=value`` overrides, strictly checked; see
:mod:`unilip.config_io`)::

    cfg = load_config(UniLIPConfig, "configs/1b.yaml", ["generator.cfg_scale=3.0"])
    save_config(cfg, "runs/x/config.yaml")

This module imports no torch: building a config is cheap.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from unilip.config_io import (
    _DEFAULT_PRESETS,
    deep_merge,
    from_dict,
    load_config,
    parse_overrides,
    read_yaml,
    save_config,
    to_dict,
    to_yaml,
    validate_config,
)
from unilip.checks import MAX_GUIDANCE, MAX_IMAGE_SIZE, MAX_STEPS
from unilip.data.miniworld.config import MiniWorldConfig
from unilip.errors import ConfigError

MAX_WIDTH = 65_536  # hidden and MLP widths (the 2b preset: 1536 and 8960)
MAX_LAYERS = 1024

__all__ = [
    "PRESETS",
    "GeneratorConfig",
    "LanguageModelConfig",
    "MLLMConfig",
    "MiniWorldConfig",
    "TokenizerConfig",
    "UniLIPConfig",
    "VisionEncoderConfig",
    "deep_merge",
    "from_dict",
    "get_preset",
    "load_config",
    "parse_overrides",
    "preset_yaml",
    "read_yaml",
    "save_config",
    "to_dict",
    "to_yaml",
    "validate_config",
]

#################################################################################
#                              UniLIP Configs                                   #
#################################################################################
# The defaults of every dataclass below are the `1b` preset, i.e. the paper's UniLIP-1B (arXiv 2507.23278). Sources:
# the upstream Hugging Face hub configs, named at each field (OpenGVLab/InternVL3-1B-hf,
# Efficient-Large-Model/Sana_600M_512px_diffusers, mit-han-lab/dc-ae-f32c32-sana-1.1-diffusers), and "official" =
# the official UniLIP code (github.com/nnnth/UniLIP at commit 299817d).


def _positive(**values: float) -> None:
    for key, value in values.items():
        if not value > 0:
            raise ConfigError(f"{key}: must be > 0 (got {value})")


def _at_most(limit: float, **values: float) -> None:
    """Upper bounds on sizes: an absurd image_size or layer count would exhaust memory building the model."""
    for key, value in values.items():
        if value > limit:
            raise ConfigError(f"{key}: at most {limit:g} (got {value:g})")


@dataclass
class VisionEncoderConfig:
    """The CLIP-like vision encoder: InternViT (transformers' native ``InternVLVisionConfig``)."""

    # InternViT-300M-448px-V2_5, same in InternVL3-1B and -2B (OpenGVLab/InternVL3-1B-hf config.json, vision_config).
    hidden_size: int = 1024
    num_layers: int = 24
    num_heads: int = 16  # head dim 64
    intermediate_size: int = 4096
    image_size: int = 448  # the resolution of the position embeddings (other sizes interpolate them)
    patch_size: int = 14  # 448 / 14 = 32x32 patches
    attention_bias: bool = True  # upstream `qkv_bias: true`
    layer_scale_init: float = 0.1  # `layer_scale_init_value`, transformers default; checkpoints overwrite it
    norm_type: Literal["layer_norm", "rms_norm"] = "layer_norm"
    layer_norm_eps: float = 1e-6
    use_qk_norm: bool = False  # upstream `qk_normalization: false`

    def validate(self) -> None:
        _positive(hidden_size=self.hidden_size, num_layers=self.num_layers, num_heads=self.num_heads,
                  intermediate_size=self.intermediate_size, image_size=self.image_size, patch_size=self.patch_size,
                  layer_norm_eps=self.layer_norm_eps)
        _at_most(MAX_IMAGE_SIZE, image_size=self.image_size)
        _at_most(MAX_WIDTH, hidden_size=self.hidden_size, intermediate_size=self.intermediate_size)
        _at_most(MAX_LAYERS, num_layers=self.num_layers)
        if self.hidden_size % self.num_heads:
            raise ConfigError(f"hidden_size: {self.hidden_size} is not divisible by num_heads {self.num_heads}")
        if self.image_size % self.patch_size:
            raise ConfigError(f"image_size: {self.image_size} is not divisible by patch_size {self.patch_size}")


@dataclass
class LanguageModelConfig:
    """The MLLM's language model: Qwen2 (transformers' ``Qwen2Config``). Its width is D, the feature width."""

    # Qwen2.5-0.5B inside InternVL3-1B-hf (OpenGVLab/InternVL3-1B-hf config.json, text_config).
    hidden_size: int = 896
    num_layers: int = 24
    num_heads: int = 14  # head dim 64
    num_kv_heads: int = 2  # grouped-query attention
    intermediate_size: int = 4864
    vocab_size: int = 151674  # InternVL3's, not stock Qwen2.5's 151936
    max_position_embeddings: int = 32768
    rope_theta: float = 1000000.0
    rms_norm_eps: float = 1e-6
    # InternVL3-1B/2B have an untied lm_head (the remote-code OpenGVLab/InternVL3-1B config.json says
    # `tie_word_embeddings: false`). transformers 5.x gives InternVLConfig a top-level `tie_word_embeddings=True`
    # default (transformers' `models/internvl/configuration_internvl.py`), so a config that does not pass False at the
    # top level (as well as in text_config) silently ties lm_head to embed_tokens.
    tie_word_embeddings: bool = False

    def validate(self) -> None:
        _positive(hidden_size=self.hidden_size, num_layers=self.num_layers, num_heads=self.num_heads,
                  num_kv_heads=self.num_kv_heads, intermediate_size=self.intermediate_size,
                  vocab_size=self.vocab_size, max_position_embeddings=self.max_position_embeddings,
                  rope_theta=self.rope_theta, rms_norm_eps=self.rms_norm_eps)
        _at_most(MAX_WIDTH, hidden_size=self.hidden_size, intermediate_size=self.intermediate_size)
        _at_most(MAX_LAYERS, num_layers=self.num_layers)
        _at_most(1 << 20, vocab_size=self.vocab_size, max_position_embeddings=self.max_position_embeddings)
        if self.hidden_size % self.num_heads:
            raise ConfigError(f"hidden_size: {self.hidden_size} is not divisible by num_heads {self.num_heads}")
        if self.num_heads % self.num_kv_heads:
            raise ConfigError(f"num_heads: {self.num_heads} is not divisible by num_kv_heads {self.num_kv_heads}")


@dataclass
class MLLMConfig:
    """The frozen MLLM (InternVL3): vision encoder -> pixel shuffle -> projector (mlp1) -> language model."""

    # A local directory or a Hugging Face repo id (read from the local cache; offline works). None: random init.
    pretrained: str | None = "OpenGVLab/InternVL3-1B-hf"
    vision: VisionEncoderConfig = field(default_factory=VisionEncoderConfig)
    language: LanguageModelConfig = field(default_factory=LanguageModelConfig)
    downsample_ratio: float = 0.5  # pixel shuffle: 2x2 patches -> 1 token (OpenGVLab/InternVL3-1B-hf config.json)

    def validate(self) -> None:
        if not 0 < self.downsample_ratio <= 1 or (1 / self.downsample_ratio) % 1:
            raise ConfigError(f"downsample_ratio: must be 1/k for a whole k, e.g. 0.5 (got {self.downsample_ratio})")
        grid = self.vision.image_size // self.vision.patch_size
        if (grid * self.downsample_ratio) % 1:
            raise ConfigError(
                f"vision.image_size: the {grid}x{grid} patch grid does not pixel-shuffle by {self.downsample_ratio} "
                f"(need a multiple of {round(1 / self.downsample_ratio)} patches per side)"
            )


@dataclass
class TokenizerConfig:
    """The UniLIP autoencoder: MLLM features F -> h_phi -> latent z (B, 32, h, w) -> DC-AE decoder -> pixels."""

    image_size: int = 448  # the resolution the tokenizer encodes (official stage 3 and generation use 448)
    latent_channels: int = 32  # hard-coded in the official h_phi (D -> 32 -> 32); DC-AE f32c32's latent width
    projection_blocks: int = 3  # h_phi's residual MLP blocks at width D (official `down_blocks`)
    # A local directory or repo id of a transformers SigLIP / CLIP vision model to use instead of the MLLM's InternViT,
    # with a fresh projector to D (the recipe beyond InternViT). None: the MLLM's InternViT + mlp1, as the paper.
    encoder_backbone: str | None = None
    # The pixel decoder: `AutoencoderDC(...).decoder` of DC-AE f32c32 SANA 1.1, fine-tuned (official code,
    # `tokenizer/modeling/dc_ae_vit*.py`). Layout from mit-han-lab/dc-ae-f32c32-sana-1.1-diffusers config.json
    # (diffusers `AutoencoderDC` decoder_* keys). None: random init.
    decoder_pretrained: str | None = "mit-han-lab/dc-ae-f32c32-sana-1.1-diffusers"
    decoder_block_out_channels: tuple[int, ...] = (128, 256, 512, 512, 1024, 1024)
    decoder_layers_per_block: tuple[int, ...] = (3, 3, 3, 3, 3, 3)
    decoder_block_types: tuple[Literal["ResBlock", "EfficientViTBlock"], ...] = (
        "ResBlock", "ResBlock", "ResBlock", "EfficientViTBlock", "EfficientViTBlock", "EfficientViTBlock",
    )
    decoder_qkv_multiscales: tuple[tuple[int, ...], ...] = ((), (), (), (5,), (5,), (5,))
    decoder_upsample_block_type: Literal["interpolate", "pixel_shuffle"] = "interpolate"
    decoder_attention_head_dim: int = 32

    def validate(self) -> None:
        _positive(image_size=self.image_size, latent_channels=self.latent_channels,
                  decoder_attention_head_dim=self.decoder_attention_head_dim)
        _at_most(MAX_IMAGE_SIZE, image_size=self.image_size)
        if self.projection_blocks < 0:
            raise ConfigError(f"projection_blocks: must be >= 0 (got {self.projection_blocks})")
        n = len(self.decoder_block_out_channels)
        if n == 0:
            raise ConfigError("decoder_block_out_channels: needs at least one stage")
        for key in ("decoder_layers_per_block", "decoder_block_types", "decoder_qkv_multiscales"):
            if len(getattr(self, key)) != n:
                raise ConfigError(
                    f"{key}: has {len(getattr(self, key))} entries, but decoder_block_out_channels has {n} stages"
                )
        if self.decoder_block_out_channels[-1] % self.latent_channels:
            raise ConfigError(
                f"decoder_block_out_channels: the deepest stage ({self.decoder_block_out_channels[-1]}) must be a multiple "
                f"of latent_channels {self.latent_channels} (DC-AE's input shortcut repeats the latent channels)"
            )
        for i, (ch, layers) in enumerate(zip(self.decoder_block_out_channels, self.decoder_layers_per_block)):
            _positive(**{f"decoder_block_out_channels[{i}]": ch})
            if layers < 0:
                raise ConfigError(f"decoder_layers_per_block[{i}]: must be >= 0 (got {layers})")
        for i, (ch, kind) in enumerate(zip(self.decoder_block_out_channels, self.decoder_block_types)):
            if kind == "EfficientViTBlock" and ch % self.decoder_attention_head_dim:
                raise ConfigError(
                    f"decoder_block_out_channels[{i}]: {ch} channels of an EfficientViTBlock are not divisible by "
                    f"decoder_attention_head_dim {self.decoder_attention_head_dim}"
                )

    def upsample_factor(self) -> int:
        """Pixels per latent cell: the decoder doubles the resolution between stages (32 for DC-AE f32)."""
        return 2 ** (len(self.decoder_block_out_channels) - 1)


@dataclass
class GeneratorConfig:
    """Generation: learnable queries through the frozen MLLM, the connector, and a SANA DiT in the UniLIP latent."""

    num_queries: int = 256  # official `n_query`
    connector_layers: int = 6  # official `connect_layer`: a copy of the MLLM's top 6 layers, bidirectional
    # SANA 0.6B 512px (Efficient-Large-Model/Sana_600M_512px_diffusers transformer/config.json,
    # `SanaTransformer2DModel`). None: random init.
    dit_pretrained: str | None = "Efficient-Large-Model/Sana_600M_512px_diffusers"
    dit_num_layers: int = 28
    dit_num_heads: int = 36  # x dit_head_dim 32 = inner dim 1152
    dit_head_dim: int = 32  # SANA's linear attention is fixed at head dim 32
    dit_cross_heads: int = 16
    dit_cross_head_dim: int = 72
    caption_channels: int = 2304  # SANA's text width (Gemma-2-2B); the connector's Linear(D -> 2304) feeds it
    mlp_ratio: float = 2.5  # GLUMBConv
    # sincos position embeddings: diffusers >= 0.33 turns them off when the key is absent (as in SANA's hub configs),
    # UniLIP trained under diffusers 0.32.2 where it meant 1 (diffusers `models/transformers/sana_transformer.py`;
    # the change is huggingface/diffusers#10431, in no 0.32.x release)
    dit_interpolation_scale: int = 1
    # The latent is multiplied by this before diffusion and divided after: official `unilip_factor`, 10.6 for 1B and
    # 9.5 for 2B (the official launchers, `scripts/run_unilip_{1b,2b}_stage*.sh`; the ModelArguments default 5.85 in
    # `unilip/train/train_stage*.py` is not used by the released runs).
    latent_scale: float = 10.6
    cfg_scale: float = 4.5  # official pipelines' default (GenEval, WISE, ImgEdit-1B)
    num_inference_steps: int = 20  # official `generate_image` hard-codes 20 DPM-Solver steps
    # How an edit's source image becomes the model's S x S input: "crop" (shorter side to S, centre crop: the aspect
    # kept, the ends of a long image cut) or "squash" (both sides to S with PIL's bicubic, the aspect lost: the official
    # edit pipeline's `resize((448, 448))`, which the converter sets for official checkpoints).
    edit_source_resize: Literal["crop", "squash"] = "crop"

    def validate(self) -> None:
        _positive(num_queries=self.num_queries, connector_layers=self.connector_layers,
                  dit_num_layers=self.dit_num_layers, dit_num_heads=self.dit_num_heads,
                  dit_head_dim=self.dit_head_dim, dit_cross_heads=self.dit_cross_heads,
                  dit_cross_head_dim=self.dit_cross_head_dim, caption_channels=self.caption_channels,
                  mlp_ratio=self.mlp_ratio, dit_interpolation_scale=self.dit_interpolation_scale,
                  latent_scale=self.latent_scale, cfg_scale=self.cfg_scale,
                  num_inference_steps=self.num_inference_steps)
        _at_most(MAX_STEPS, num_inference_steps=self.num_inference_steps)
        _at_most(MAX_GUIDANCE, cfg_scale=self.cfg_scale)
        _at_most(MAX_LAYERS, connector_layers=self.connector_layers, dit_num_layers=self.dit_num_layers)
        _at_most(4096, num_queries=self.num_queries)

    def dit_inner_dim(self) -> int:
        """The DiT width, e.g. 36 x 32 = 1152 for SANA 0.6B."""
        return self.dit_num_heads * self.dit_head_dim


@dataclass
class UniLIPConfig:
    """Everything UniLIP: the MLLM, the tokenizer (autoencoder), the generator, and the mini world."""

    preset: str = "1b"  # the preset this config started from; a YAML file's `preset:` key means the same
    mllm: MLLMConfig = field(default_factory=MLLMConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    miniworld: MiniWorldConfig = field(default_factory=MiniWorldConfig)

    def validate(self) -> None:
        """Checks across sections (each section's own ``validate()`` runs first)."""
        if self.preset not in PRESETS:
            raise ConfigError(f"preset: unknown preset {self.preset!r}; known presets: {', '.join(PRESETS)}")
        vision = self.mllm.vision
        if self.tokenizer.image_size % vision.patch_size:
            raise ConfigError(
                f"tokenizer.image_size: {self.tokenizer.image_size} is not divisible by mllm.vision.patch_size "
                f"{vision.patch_size}"
            )
        grid = self.tokenizer.image_size // vision.patch_size
        if (grid * self.mllm.downsample_ratio) % 1:
            raise ConfigError(
                f"tokenizer.image_size: its {grid}x{grid} patch grid does not pixel-shuffle by "
                f"mllm.downsample_ratio {self.mllm.downsample_ratio}"
            )
        if self.generator.connector_layers > self.mllm.language.num_layers:
            raise ConfigError(
                f"generator.connector_layers: {self.generator.connector_layers} is more than the "
                f"{self.mllm.language.num_layers} layers of mllm.language it is copied from"
            )

    def latent_grid(self, image_size: int | None = None) -> int:
        """Latent cells per side: (image_size / patch_size) * downsample_ratio, e.g. 448 / 14 * 0.5 = 16."""
        image_size = self.tokenizer.image_size if image_size is None else image_size
        return round(image_size // self.mllm.vision.patch_size * self.mllm.downsample_ratio)

    def latent_shape(self, image_size: int | None = None) -> tuple[int, int, int]:
        """The UniLIP latent of one image, (C, h, w): (32, 16, 16) at 448 px, (32, 4, 4) for mini."""
        grid = self.latent_grid(image_size)
        return (self.tokenizer.latent_channels, grid, grid)

    def decoder_image_size(self, image_size: int | None = None) -> int:
        """The decoder's output side: 512 for a 448 px input at 1b/2b (resized back to 448), 64 for mini."""
        return self.latent_grid(image_size) * self.tokenizer.upsample_factor()


#################################################################################
#                                 Presets                                       #
#################################################################################


def unilip_1b() -> UniLIPConfig:
    """UniLIP-1B: InternVL3-1B-hf + SANA 0.6B 512px + DC-AE f32c32 decoder. The dataclass defaults are this preset."""
    return UniLIPConfig(preset="1b")


def unilip_2b() -> UniLIPConfig:
    """UniLIP-3B in the paper: InternVL3-2B-hf (same InternViT, Qwen2.5-1.5B) + SANA 1.6B 512px.

    Hub configs: OpenGVLab/InternVL3-2B-hf config.json (text_config) and
    Efficient-Large-Model/Sana_1600M_512px_diffusers transformer/config.json.
    """
    return UniLIPConfig(
        preset="2b",
        mllm=MLLMConfig(
            pretrained="OpenGVLab/InternVL3-2B-hf",
            language=LanguageModelConfig(hidden_size=1536, num_layers=28, num_heads=12, num_kv_heads=2,
                                         intermediate_size=8960),
        ),
        generator=GeneratorConfig(
            dit_pretrained="Efficient-Large-Model/Sana_1600M_512px_diffusers",
            dit_num_layers=20,
            dit_num_heads=70,  # x 32 = inner dim 2240
            dit_cross_heads=20,
            dit_cross_head_dim=112,
            latent_scale=9.5,  # official `unilip_factor` for 2B
        ),
    )


def unilip_mini() -> UniLIPConfig:
    """The whole method at toy scale, trained from scratch on the mini world on a CPU.

    The sizes are set so that each model trains in minutes on 2 CPU cores, after a tiny InternVL and a tiny SANA whose
    learning curves we measured on such a machine: 64 px, patch 8 -> 8x8 patches -> pixel shuffle -> 4x4 = 16 tokens,
    latent 32x4x4. The bundled mini models' learning curves are in README.md ("The mini MLLM and the embedded default").
    """
    return UniLIPConfig(
        preset="mini",
        mllm=MLLMConfig(
            pretrained=None,
            vision=VisionEncoderConfig(
                hidden_size=128, num_layers=4, num_heads=4, intermediate_size=512, image_size=64, patch_size=8,
                layer_scale_init=1.0,  # from scratch, as the measured tiny InternViT
            ),
            language=LanguageModelConfig(
                hidden_size=128, num_layers=4, num_heads=4, num_kv_heads=2, intermediate_size=352,
                vocab_size=512,  # word-level mini-world tokenizer
                max_position_embeddings=512,
                rope_theta=10000.0,  # short sequences; Qwen2's default base
            ),
        ),
        tokenizer=TokenizerConfig(
            image_size=64,
            decoder_pretrained=None,
            # 5 stages = f16: 4x4 latent -> 64 px.
            decoder_block_out_channels=(16, 32, 64, 64, 128),  # thin at high resolution: 2x faster to train than 32-64-64-128-128
            decoder_layers_per_block=(1, 1, 1, 1, 1),
            decoder_block_types=("ResBlock", "ResBlock", "ResBlock", "EfficientViTBlock", "EfficientViTBlock"),
            decoder_qkv_multiscales=((), (), (), (5,), (5,)),
            decoder_upsample_block_type="pixel_shuffle",
            decoder_attention_head_dim=16,
        ),
        generator=GeneratorConfig(
            num_queries=16,  # one query per latent cell, as 256 queries for 16x16 at 1b/2b
            connector_layers=2,
            dit_pretrained=None,
            dit_num_layers=6,  # 4 x 32 heads, 6 layers: the measured 1.8 M-parameter tiny SANA
            dit_num_heads=4,
            dit_head_dim=32,
            dit_cross_heads=4,
            dit_cross_head_dim=32,
            caption_channels=128,
            latent_scale=1.0,  # placeholder: to be computed from the trained tokenizer's latents
            cfg_scale=2.0,  # CFG 1.5-3 was best for the measured tiny SANA (5 was worse)
        ),
    )


PRESETS: dict[str, Callable[[], UniLIPConfig]] = {"mini": unilip_mini, "1b": unilip_1b, "2b": unilip_2b}
_DEFAULT_PRESETS[UniLIPConfig] = PRESETS

_PRESET_SOURCES = {
    "mini": "sized so that each model trains in minutes on 2 CPU cores (learning curves in README.md)",
    "1b": "the hub configs of OpenGVLab/InternVL3-1B-hf, Efficient-Large-Model/Sana_600M_512px_diffusers and\n"
          "mit-han-lab/dc-ae-f32c32-sana-1.1-diffusers, and the official UniLIP-1B recipe (nnnth/UniLIP)",
    "2b": "the hub configs of OpenGVLab/InternVL3-2B-hf, Efficient-Large-Model/Sana_1600M_512px_diffusers and\n"
          "mit-han-lab/dc-ae-f32c32-sana-1.1-diffusers, and the official UniLIP-3B recipe (nnnth/UniLIP)",
}


def get_preset(name: str) -> UniLIPConfig:
    """A fresh, validated copy of the preset ``name`` (one of ``PRESETS``)."""
    if name not in PRESETS:
        raise ConfigError(f"preset: unknown preset {name!r}; known presets: {', '.join(PRESETS)}")
    cfg = PRESETS[name]()
    validate_config(cfg)
    return cfg


def preset_yaml(name: str) -> str:
    """The YAML text of a preset with its header comment, as in ``configs/NAME.yaml``."""
    cfg = get_preset(name)
    header = (
        f"The `{name}` preset, written by `unilip config show --preset {name}`.\n"
        f"Numbers: {_PRESET_SOURCES.get(name, 'src/unilip/config.py')};\n"
        "the source of each is commented in src/unilip/config.py."
    )
    return to_yaml(cfg, header)
