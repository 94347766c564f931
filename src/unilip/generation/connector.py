"""The connector: the MLLM's top decoder layers, run bidirectionally, turning hidden states into DiT conditions.

UniLIP (official code, nnnth/UniLIP ``unilip/model/unilip_internvl.py``) deep-copies the Qwen2 language model, keeps
only its last ``connect_layer = 6`` decoder layers and its final norm, runs them over the *whole* sequence (prompt
text, source-image tokens, learnable queries) with a bidirectional mask that hides only padding, and projects every
position to SANA's caption width with one Linear. Here the layers are transformers' own ``Qwen2DecoderLayer`` objects,
initialised from the MLLM's top layers.

Positions are ``cumsum(mask) - 1`` over valid tokens, so left and right padding give the same conditions; padded
positions come out as zeros. The mask uses a large *finite* negative, so fully padded rows never produce NaN in fp16.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from unilip.errors import UniLIPError


def positions_from_mask(mask: torch.Tensor) -> torch.Tensor:
    """Position ids that count valid tokens only (padding repeats 0), so the side padding is on changes nothing."""
    return (mask.long().cumsum(-1) - 1).clamp(min=0)


class Connector(nn.Module):
    """``hidden (B, L, D), mask (B, L) -> conditions (B, L, out_channels)``; padded positions are zero."""

    def __init__(self, text_config, num_layers: int, out_channels: int):
        from transformers.models.qwen2.modeling_qwen2 import (
            Qwen2DecoderLayer,
            Qwen2RMSNorm,
            Qwen2RotaryEmbedding,
        )

        super().__init__()
        total = text_config.num_hidden_layers
        if not 1 <= num_layers <= total:
            raise UniLIPError(f"generator.connector_layers: {num_layers} must be between 1 and the MLLM's {total} layers")
        config = copy.deepcopy(text_config)
        # keep the top layers' own indices: per-layer settings (layer_types, sliding windows) stay theirs
        self.layers = nn.ModuleList(Qwen2DecoderLayer(config, total - num_layers + i) for i in range(num_layers))
        for layer in self.layers:
            layer.self_attn.is_causal = False
        self.norm = Qwen2RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.rotary_emb = Qwen2RotaryEmbedding(config=config)
        self.proj = nn.Linear(config.hidden_size, out_channels)

    @classmethod
    def from_language_model(cls, language_model: nn.Module, num_layers: int, out_channels: int) -> Connector:
        """Initialise from a Qwen2 model's top ``num_layers`` layers and final norm (the projection starts fresh)."""
        connector = cls(language_model.config, num_layers, out_channels)
        for mine, theirs in zip(connector.layers, language_model.layers[-num_layers:]):
            mine.load_state_dict(theirs.state_dict())
        connector.norm.load_state_dict(language_model.norm.state_dict())
        param = next(language_model.parameters())
        return connector.to(device=param.device, dtype=param.dtype)

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if hidden.ndim != 3 or mask.shape != hidden.shape[:2]:
            raise UniLIPError(f"connector: expected hidden (B, L, D) and mask (B, L), got {tuple(hidden.shape)} and {tuple(mask.shape)}")
        valid = mask.bool()
        position_ids = positions_from_mask(valid)
        position_embeddings = self.rotary_emb(hidden, position_ids)
        pair = valid[:, None, :, None] & valid[:, None, None, :]  # (B, 1, L, L): both tokens real
        additive = torch.zeros(pair.shape, dtype=hidden.dtype, device=hidden.device)
        additive = additive.masked_fill(~pair, torch.finfo(hidden.dtype).min / 2)
        h = hidden
        for layer in self.layers:
            h = layer(h, attention_mask=additive, position_ids=position_ids, position_embeddings=position_embeddings)
        return self.proj(self.norm(h)) * valid[..., None].to(h.dtype)
