"""The diffusion transformer: diffusers' ``SanaTransformer2DModel``, generating (scaled) UniLIP latents.

At 1b/2b it is SANA 0.6B / 1.6B at 512 px, whose native latent (32 x 16 x 16, patch 1) is exactly the UniLIP latent
of a 448 px image; the connector feeds its cross-attention at ``caption_channels`` (2304). The mini preset builds the
same class small, from scratch.
"""

from __future__ import annotations

from unilip.config import GeneratorConfig


def build_dit(cfg: GeneratorConfig, latent_channels: int, latent_size: int):
    """A ``SanaTransformer2DModel`` for ``cfg``: from ``cfg.dit_pretrained`` (a local diffusers SANA directory or hub
    id, subfolder ``transformer``) or randomly initialised; position embeddings per ``cfg.dit_interpolation_scale``."""
    from diffusers import SanaTransformer2DModel

    if cfg.dit_pretrained:
        from unilip.hub import resolve_pretrained

        path = resolve_pretrained(cfg.dit_pretrained, "the SANA transformer (generator.dit_pretrained)",
                                  allow_patterns=["transformer/*"])
        return SanaTransformer2DModel.from_pretrained(path, subfolder="transformer",
                                                      interpolation_scale=cfg.dit_interpolation_scale)
    inner = cfg.dit_inner_dim()
    return SanaTransformer2DModel(
        in_channels=latent_channels, out_channels=latent_channels, num_attention_heads=cfg.dit_num_heads,
        attention_head_dim=cfg.dit_head_dim, num_layers=cfg.dit_num_layers, num_cross_attention_heads=cfg.dit_cross_heads,
        cross_attention_head_dim=cfg.dit_cross_head_dim, cross_attention_dim=inner, caption_channels=cfg.caption_channels,
        mlp_ratio=cfg.mlp_ratio, sample_size=latent_size, patch_size=1, interpolation_scale=cfg.dit_interpolation_scale,
    )
