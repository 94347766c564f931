"""The diffusion transformer: diffusers' ``SanaTransformer2DModel``, generating (scaled) UniLIP latents.

At 1b/2b it is SANA 0.6B / 1.6B at 512 px, whose native latent (32 x 16 x 16, patch 1) is exactly the UniLIP latent
of a 448 px image; the connector feeds its cross-attention at ``caption_channels`` (2304). The mini preset builds the
same class small, from scratch.
"""

from __future__ import annotations

from contextlib import contextmanager

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


class _CachedCrossAttention:
    """SANA's cross-attention (diffusers ``SanaAttnProcessor2_0``, the same operations in the same order) that
    projects the conditions to keys and values at its first call and reuses them at every later one.

    Valid while every call gets the same conditions, which is what the sampler does: the conditions of a call are
    fixed across its steps, so recomputing ``to_k`` / ``to_v`` over hundreds of condition tokens at every step and
    layer is pure waste (about a seventh of SANA 0.6B's forward at 448 px).
    """

    def __init__(self):
        self.key_value_mask = None

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None):
        import torch.nn.functional as F

        batch_size, sequence_length, _ = encoder_hidden_states.shape
        if self.key_value_mask is None:
            if attention_mask is not None:
                attention_mask = attn.prepare_attention_mask(attention_mask, sequence_length, batch_size)
                attention_mask = attention_mask.view(batch_size, attn.heads, -1, attention_mask.shape[-1])
            key, value = attn.to_k(encoder_hidden_states), attn.to_v(encoder_hidden_states)
            if attn.norm_k is not None:
                key = attn.norm_k(key)
            head_dim = key.shape[-1] // attn.heads
            key = key.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
            value = value.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
            self.key_value_mask = key, value, attention_mask
        key, value, attention_mask = self.key_value_mask
        query = attn.to_q(hidden_states)
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        head_dim = key.shape[-1]
        query = query.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
        hidden_states = F.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask, dropout_p=0.0,
                                                       is_causal=False)
        hidden_states = hidden_states.transpose(1, 2).reshape(batch_size, -1, attn.heads * head_dim).to(query.dtype)
        hidden_states = attn.to_out[1](attn.to_out[0](hidden_states))  # linear, dropout
        return hidden_states / attn.rescale_output_factor


@contextmanager
def conditions_cached(dit):
    """Within this context, every cross-attention layer of the SANA ``dit`` computes the keys and values of its
    conditions once and reuses them: for a sampling loop, whose steps all see the same conditions. The layers'
    own processors are put back on exit, whatever happens."""
    layers = [block.attn2 for block in getattr(dit, "transformer_blocks", []) if getattr(block, "attn2", None) is not None]
    originals = [layer.processor for layer in layers]
    try:
        for layer in layers:
            layer.processor = _CachedCrossAttention()
        yield dit
    finally:
        for layer, processor in zip(layers, originals):
            layer.processor = processor
