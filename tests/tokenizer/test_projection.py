"""h_phi: shapes, the official init and layout, and the residual structure."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from unilip.errors import UniLIPError
from unilip.tokenizer import LatentProjection


def test_shapes_and_layout():
    projection = LatentProjection(dim=24, latent_channels=8, num_blocks=2)
    z = projection(torch.randn(2, 16, 24))
    assert z.shape == (2, 8, 4, 4)
    # The official module layout, so official checkpoints convert by prefix renames only.
    names = {k for k, _ in projection.named_parameters()}
    assert {"blocks.1.mlp.0.weight", "blocks.1.mlp.1.weight", "blocks.1.mlp.3.bias", "head.0.weight",
            "head.1.weight", "head.3.bias"} <= names
    assert projection.head[1].weight.shape == (8, 24) and projection.head[3].weight.shape == (8, 8)
    assert [block.mlp[0].eps for block in projection.blocks] == [1e-6, 1e-6]
    assert projection.head[0].eps == 1e-5  # bare nn.LayerNorm(D) in the official code


def test_latent_is_the_token_grid_transposed():
    projection = LatentProjection(dim=16, latent_channels=4, num_blocks=0)
    features = torch.randn(1, 9, 16)
    z = projection(features)
    tokens = projection.head(features)  # (1, 9, 4)
    for i in range(3):
        for j in range(3):
            assert torch.equal(z[0, :, i, j], tokens[0, i * 3 + j])


def test_init_statistics():
    torch.manual_seed(0)
    projection = LatentProjection(dim=512, latent_channels=32, num_blocks=1)
    for linear in (projection.blocks[0].mlp[1], projection.blocks[0].mlp[3], projection.head[1]):
        assert linear.weight.std().item() == pytest.approx(0.02, rel=0.05)
        assert abs(linear.weight.mean().item()) < 1e-3
        assert torch.count_nonzero(linear.bias) == 0
    for norm in (projection.blocks[0].mlp[0], projection.head[0]):
        assert torch.equal(norm.weight, torch.ones(512)) and torch.count_nonzero(norm.bias) == 0


def test_blocks_are_residual():
    torch.manual_seed(0)
    projection = LatentProjection(dim=16, latent_channels=4, num_blocks=3)
    with torch.no_grad():
        for block in projection.blocks:
            for linear in (block.mlp[1], block.mlp[3]):
                nn.init.zeros_(linear.weight)
                nn.init.zeros_(linear.bias)
    head_only = LatentProjection(dim=16, latent_channels=4, num_blocks=0)
    head_only.head.load_state_dict(projection.head.state_dict())
    features = torch.randn(2, 4, 16)
    for block in projection.blocks:
        assert torch.equal(block(features), features)
    assert torch.equal(projection(features), head_only(features))


def test_errors():
    projection = LatentProjection(dim=16, latent_channels=4, num_blocks=1)
    with pytest.raises(UniLIPError, match="square grid"):
        projection(torch.randn(1, 10, 16))
    with pytest.raises(UniLIPError, match=r"\(B, N, 16\)"):
        projection(torch.randn(1, 9, 8))
    with pytest.raises(UniLIPError, match="dim > 0"):
        LatentProjection(dim=0)
