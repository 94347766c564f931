"""h_phi: the small trainable map from the MLLM's features F (B, N, D) to the UniLIP latent z (B, 32, h, w).

UniLIP keeps the MLLM's features for understanding and adds only this projection (plus the pixel decoder) for
reconstruction and generation; z is what the DiT generates. The layout copies the official code
(nnnth/UniLIP: `DCAE_Decoder.down_blocks` / `down_mlp` in `unilip/model/vae_modules.py`,
`tokenizer/modeling/dc_ae_vit*.py`), module for module, so an official checkpoint converts by renaming prefixes only:
``down_blocks.i.mlp.{0,1,3}`` -> ``blocks.i.mlp.{0,1,3}`` and ``down_mlp.{0,1,3}`` -> ``head.{0,1,3}``.
"""

from __future__ import annotations

import math

from torch import Tensor, nn

from unilip.errors import UniLIPError

__all__ = ["LatentProjection", "ResidualMLPBlock"]


class ResidualMLPBlock(nn.Module):
    """One residual block of h_phi at width D: x + Linear(GELU(Linear(LN(x)))) (official `ResBlock`)."""

    def __init__(self, dim: int, norm_eps: float = 1e-6):
        super().__init__()
        # Indices 0/1/3 as in the official nn.Sequential (LN, Linear, GELU, Linear); eps 1e-6 as there.
        self.mlp = nn.Sequential(nn.LayerNorm(dim, eps=norm_eps), nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, dim))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.mlp(x)  # (B, N, D) -> (B, N, D)


class LatentProjection(nn.Module):
    """h_phi in the paper: residual MLP blocks at width D, then LN -> D -> C -> C, reshaped to a latent image.

    Args:
        dim: D, the feature width (the MLLM's hidden size: 896 for 1b, 1536 for 2b).
        latent_channels: C, the latent width (32, hard-coded in the official code; DC-AE f32c32's latent width).
        num_blocks: residual blocks (official: 3).
        block_norm_eps: LayerNorm eps inside the blocks (official: 1e-6).
        head_norm_eps: LayerNorm eps of the head. The official code writes a bare ``nn.LayerNorm(llm_hidden_size)``
            (no eps given), i.e. PyTorch's default 1e-5, which we keep so that converted
            official checkpoints compute the same function.
    """

    def __init__(
        self,
        dim: int = 896,
        latent_channels: int = 32,
        num_blocks: int = 3,
        block_norm_eps: float = 1e-6,
        head_norm_eps: float = 1e-5,
    ):
        super().__init__()
        if dim <= 0 or latent_channels <= 0 or num_blocks < 0:
            raise UniLIPError(
                f"LatentProjection: need dim > 0, latent_channels > 0, num_blocks >= 0 "
                f"(got {dim}, {latent_channels}, {num_blocks})"
            )
        self.dim = dim
        self.latent_channels = latent_channels
        self.num_blocks = num_blocks
        self.block_norm_eps = block_norm_eps
        self.head_norm_eps = head_norm_eps
        self.blocks = nn.ModuleList(ResidualMLPBlock(dim, block_norm_eps) for _ in range(num_blocks))
        self.head = nn.Sequential(
            nn.LayerNorm(dim, eps=head_norm_eps),
            nn.Linear(dim, latent_channels),
            nn.GELU(),
            nn.Linear(latent_channels, latent_channels),
        )
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        """All of h_phi's init, as the official ``_init_weights`` (TiTok's): it is trained from scratch."""
        if isinstance(module, nn.Linear):
            # Truncated normal, std 0.02, at torch's default bounds (+-2, i.e. +-100 std: effectively a plain normal),
            # exactly the official `nn.init.trunc_normal_(w, mean=0.0, std=0.02)`; zero biases.
            nn.init.trunc_normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            # The identity affine map: the norm starts as pure standardisation.
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def config_dict(self) -> dict:
        """The constructor arguments, JSON-serialisable (stored in the tokenizer's config.json)."""
        return {
            "dim": self.dim,
            "latent_channels": self.latent_channels,
            "num_blocks": self.num_blocks,
            "block_norm_eps": self.block_norm_eps,
            "head_norm_eps": self.head_norm_eps,
        }

    def forward(self, features: Tensor) -> Tensor:
        """Map features F (B, N, D) on a square g x g token grid to the latent z (B, C, g, g)."""
        if features.ndim != 3 or features.shape[-1] != self.dim:
            raise UniLIPError(f"LatentProjection: expected features (B, N, {self.dim}), got {tuple(features.shape)}")
        batch, tokens, _ = features.shape
        grid = math.isqrt(tokens)
        if grid * grid != tokens:
            raise UniLIPError(f"LatentProjection: {tokens} tokens do not form a square grid")
        x = features
        for block in self.blocks:
            x = block(x)  # (B, N, D) -> (B, N, D)
        x = self.head(x)  # (B, N, D) -> (B, N, C)
        x = x.transpose(1, 2)  # (B, N, C) -> (B, C, N)
        return x.reshape(batch, self.latent_channels, grid, grid)  # (B, C, N) -> (B, C, g, g)
