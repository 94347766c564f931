"""InternViT weights in the original (remote-code) naming <-> transformers' native InternVL naming.

The official UniLIP checkpoints store the vision tower as OpenGVLab's remote code names it (``attn.qkv`` fused,
``ls1``, ``norm1``, ``mlp1.0``); we build the tower with transformers' ``InternVLVisionModel`` (``attention.q_proj`` /
``k_proj`` / ``v_proj``, ``lambda_1``, ``layernorm_before``, ``multi_modal_projector.layer_norm``). The rename table is
transformers' own conversion map (``models/internvl/convert_internvl_weights_to_hf.py``); the fused ``qkv`` [3C, C]
is split by rows into q, k, v (and concatenated back on export), bias included when the checkpoint has one.
"""

from __future__ import annotations

import re

import torch
from torch import Tensor

from unilip.errors import UniLIPError

__all__ = ["hf_to_original_tower", "original_to_hf_tower", "hf_to_original_projector", "original_to_hf_projector"]

# (original, transformers) pieces of a key, applied in order; both directions use the same table.
_TOWER_RENAMES = [
    ("embeddings.class_embedding", "embeddings.cls_token"),
    ("embeddings.position_embedding", "embeddings.position_embeddings"),
    ("embeddings.patch_embedding", "embeddings.patch_embeddings.projection"),
    ("encoder.layers.", "encoder.layer."),
    (".attn.proj.", ".attention.projection_layer."),
    (".attn.", ".attention."),
    (".norm1.", ".layernorm_before."),
    (".norm2.", ".layernorm_after."),
]
_LAYER_SCALE = re.compile(r"\.ls(\d)$")  # ls1 / ls2 (a bare parameter) <-> lambda_1 / lambda_2
_PROJECTOR = {"0": "layer_norm", "1": "linear_1", "3": "linear_2"}  # mlp1 = Sequential(LN, Linear, GELU, Linear)


def _rename(key: str, forward: bool) -> str:
    for original, hf in _TOWER_RENAMES:
        src, dst = (original, hf) if forward else (hf, original)
        key = key.replace(src, dst)
    if forward:
        return _LAYER_SCALE.sub(lambda m: f".lambda_{m.group(1)}", key)
    return re.sub(r"\.lambda_(\d)$", lambda m: f".ls{m.group(1)}", key)


def original_to_hf_tower(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Original InternViT keys (``embeddings.*``, ``encoder.layers.N.*``, no prefix) -> ``InternVLVisionModel`` keys.

    Raises:
        UniLIPError: a fused ``qkv`` whose rows do not split in three equal parts.
    """
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        if ".attn.qkv." in key:
            if value.shape[0] % 3:
                raise UniLIPError(f"{key}: a fused qkv of {value.shape[0]} rows does not split into q, k, v")
            head = _rename(key.replace(".attn.qkv.", ".attn."), forward=True)  # ...attention.weight / .bias
            stem, leaf = head.rsplit(".", 1)
            for name, part in zip(("q_proj", "k_proj", "v_proj"), value.chunk(3, dim=0)):
                out[f"{stem}.{name}.{leaf}"] = part.clone()
        else:
            out[_rename(key, forward=True)] = value
    return out


def hf_to_original_tower(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """``InternVLVisionModel`` keys -> the original InternViT keys, q/k/v fused back into ``attn.qkv`` (row order
    q, k, v). The inverse of :func:`original_to_hf_tower`, exactly."""
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        match = re.search(r"\.attention\.([qkv])_proj\.(weight|bias)$", key)
        if match is None:
            out[_rename(key, forward=False)] = value
        elif match.group(1) == "q":
            stem = key[: match.start()]
            parts = [state.get(f"{stem}.attention.{p}_proj.{match.group(2)}") for p in "qkv"]
            if any(p is None for p in parts):
                raise UniLIPError(f"{stem}: q_proj, k_proj and v_proj must all be present to fuse them into qkv")
            out[_rename(stem, forward=False) + f".attn.qkv.{match.group(2)}"] = torch.cat(parts, dim=0)
    return out


def original_to_hf_projector(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """``{0,1,3}.{weight,bias}`` (the original ``mlp1``) -> ``{layer_norm,linear_1,linear_2}.*`` (no prefixes)."""
    out = {}
    for key, value in state.items():
        index, leaf = key.split(".", 1)
        if index not in _PROJECTOR:
            raise UniLIPError(f"mlp1.{key}: the projector has only layers 0 (LayerNorm), 1 and 3 (Linear)")
        out[f"{_PROJECTOR[index]}.{leaf}"] = value
    return out


def hf_to_original_projector(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """The inverse of :func:`original_to_hf_projector`."""
    back = {v: k for k, v in _PROJECTOR.items()}
    return {f"{back[key.split('.', 1)[0]]}.{key.split('.', 1)[1]}": value for key, value in state.items()}
