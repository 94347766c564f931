"""The conditioner: the frozen MLLM reads the prompt (and, to edit, the source image), then learnable queries.

UniLIP's "dual condition" (official code, nnnth/UniLIP: ``preprocess_internvl`` in ``unilip/train/train_stage*.py``,
``unilip/model/unilip_internvl.py`` and ``unilip/model/language_model/unilip_internvl.py``): the chat turn
``Generate an image: {caption}`` or ``Edit the image: {instruction}\\n<image>`` is followed by ``<img>`` and N
learnable query embeddings; the frozen language model runs causally over all of it and its last hidden layer (after
the final norm) is kept at *every* position. For editing, the hidden states at the source image's positions are
overwritten with the encoder features F themselves, so the reference details reach the DiT unprocessed.

Prompts are left-padded and positions count valid tokens only, so a prompt's conditions do not depend on what else
is in its batch. The MLLM's weights are frozen, but gradients flow through it to the queries.

Under causal attention nothing before the queries depends on them, so the pass is split in two: :meth:`Conditioner.prefix`
runs the frozen LM over the prompt (and source image) once, keeping its hidden states and key/value cache
(:class:`Prefix`), and :meth:`Conditioner.extend` runs only the query positions on top of that cache. Inference does
both in a row; training can compute prefixes once for a pool of items (:mod:`unilip.train.frozen_pool`) and run only
the queries each step.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from unilip.errors import UniLIPError
from unilip.generation.connector import positions_from_mask
from unilip.mllm.chat import IMG_CONTEXT, IMG_START, chat_prompt

GENERATE = "Generate an image: {}"
EDIT = "Edit the image: {}"
UNCONDITIONAL_GENERATE = "Generate an image."  # classifier-free guidance's empty prompts (official, 10% dropout)
UNCONDITIONAL_EDIT = "Edit the image."  # editing keeps the source image in the unconditional branch


@dataclass
class Prefix:
    """The frozen LM's pass over the positions before the queries, for a batch (left-padded to one length L).

    ``hidden`` (B, L, D): the last hidden layer after the final norm (an edit's image positions carry F itself);
    ``mask`` (B, L): 1 = real token; ``keys`` / ``values``: per LM layer, (B, kv_heads, L, head_dim).
    """

    hidden: Tensor
    mask: Tensor
    keys: tuple[Tensor, ...]
    values: tuple[Tensor, ...]

    def __len__(self) -> int:
        return self.hidden.shape[0]

    def split(self) -> list[Prefix]:
        """One unpadded prefix per item (copies: an item kept alone does not hold on to its whole batch)."""
        out = []
        for i in range(len(self)):
            n = int(self.mask[i].sum())
            cut = slice(self.hidden.shape[1] - n, None)  # left padding: the real tokens are the last n
            out.append(Prefix(self.hidden[i : i + 1, cut].clone(), self.mask[i : i + 1, cut].clone(),
                              tuple(k[i : i + 1, :, cut].clone() for k in self.keys),
                              tuple(v[i : i + 1, :, cut].clone() for v in self.values)))
        return out

    @staticmethod
    def stack(items: list[Prefix]) -> Prefix:
        """Left-pad prefixes to the longest and concatenate them into one batch (padding: zeros, mask 0)."""
        length = max(p.hidden.shape[1] for p in items)

        def cat(tensors: list[Tensor], dim: int) -> Tensor:
            pads = [[0, 0] * (t.ndim - 1 - dim) + [length - t.shape[dim], 0] for t in tensors]
            return torch.cat([F.pad(t, pad) for t, pad in zip(tensors, pads)])

        layers = range(len(items[0].keys))
        return Prefix(cat([p.hidden for p in items], 1), cat([p.mask for p in items], 1),
                      tuple(cat([p.keys[j] for p in items], 2) for j in layers),
                      tuple(cat([p.values[j] for p in items], 2) for j in layers))

    def narrow(self, start: int, length: int) -> Prefix:
        """Items ``start .. start + length - 1``, their left padding trimmed to the longest of them (views, no copy)."""
        mask = self.mask[start : start + length]
        cut = slice(self.hidden.shape[1] - int(mask.sum(1).max()), None)
        return Prefix(self.hidden[start : start + length, cut], mask[:, cut],
                      tuple(k[start : start + length, :, cut] for k in self.keys),
                      tuple(v[start : start + length, :, cut] for v in self.values))

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.hidden, self.mask, *self.keys, *self.values))

    def to(self, device: torch.device | str) -> Prefix:
        return Prefix(self.hidden.to(device), self.mask.to(device), tuple(k.to(device) for k in self.keys),
                      tuple(v.to(device) for v in self.values))


class Conditioner(nn.Module):
    """``(instructions, source features F or None) -> hidden states H (B, L, D), mask (B, L)``.

    Args:
        mllm: a :class:`unilip.mllm.model.MLLM` (frozen here).
        num_queries: N, the learnable queries appended after ``<img>`` (official 256).
    """

    def __init__(self, mllm, num_queries: int):
        super().__init__()
        self.mllm = mllm.requires_grad_(False).eval()
        embed = self.language_model.get_input_embeddings().weight
        # official: randn; scaled here to the embedding table's spread, so queries look like tokens to the frozen LM
        spread = 1.0 if embed.is_meta else float(embed.detach().float().std())
        self.queries = nn.Parameter(torch.randn(1, num_queries, embed.shape[1], device=embed.device) * spread)

    @property
    def language_model(self) -> nn.Module:
        return self.mllm.model.model.language_model

    def train(self, mode: bool = True) -> Conditioner:
        super().train(mode)
        self.mllm.eval()  # frozen: no dropout, whatever the trainer asks
        return self

    def prompts(self, instructions: list[str], edit: bool) -> list[str]:
        """The chat text of each prompt, ending in ``<img>`` where the queries follow."""
        template = EDIT if edit else GENERATE
        n = self.mllm.image_seq_length if edit else None
        return [chat_prompt(text if text in (UNCONDITIONAL_GENERATE, UNCONDITIONAL_EDIT) else template.format(text), n)
                + IMG_START for text in instructions]

    def forward(self, instructions: list[str], source_features: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self.extend(self.prefix(instructions, source_features))

    @torch.no_grad()  # nothing before the queries depends on a trained weight
    def prefix(self, instructions: list[str], source_features: Tensor | None = None) -> Prefix:
        """The frozen LM over the chat prompts (and, to edit, the source features F at the image positions)."""
        edit = source_features is not None
        tok = self.mllm.tokenizer
        device = self.queries.device
        enc = tok(self.prompts(instructions, edit), return_tensors="pt", padding=True)  # left padding
        ids, mask = enc["input_ids"].to(device), enc["attention_mask"].to(device)
        embeds = self.language_model.get_input_embeddings()(ids)
        image_positions = ids == tok.convert_tokens_to_ids(IMG_CONTEXT)
        if edit:
            b, n = len(instructions), self.mllm.image_seq_length
            if source_features.shape[:2] != (b, n) or source_features.shape[2] != embeds.shape[2]:
                raise UniLIPError(f"source features: expected ({b}, {n}, {embeds.shape[2]}) for {b} prompts, "
                                  f"got {tuple(source_features.shape)}")
            features = source_features.to(embeds.dtype)
            embeds = embeds.masked_scatter(image_positions[..., None], features)
        out = self.language_model(inputs_embeds=embeds, attention_mask=mask, position_ids=positions_from_mask(mask),
                                  use_cache=True)
        hidden = out.last_hidden_state
        if edit:  # official "llm processed -> vit processed": the source image's positions carry F itself
            hidden = hidden.masked_scatter(image_positions[..., None], features)
        cache = out.cache
        return Prefix(hidden, mask, tuple(layer.keys for layer in cache.layers),
                      tuple(layer.values for layer in cache.layers))

    def extend(self, prefix: Prefix) -> tuple[Tensor, Tensor]:
        """Hidden states (B, L + N, D) and mask of the prefix followed by the N queries, run on its key/value cache."""
        from transformers import DynamicCache

        b, n = len(prefix), self.queries.shape[1]
        cache = DynamicCache(ddp_cache_data=list(zip(prefix.keys, prefix.values)))
        queries = self.queries.to(prefix.hidden.dtype).expand(b, -1, -1)
        mask = torch.cat([prefix.mask, prefix.mask.new_ones(b, n)], 1)
        positions = prefix.mask.long().sum(1, keepdim=True) + torch.arange(n, device=mask.device)
        out = self.language_model(inputs_embeds=queries, attention_mask=mask, position_ids=positions,
                                  cache=cache, use_cache=True)
        return torch.cat([prefix.hidden, out.last_hidden_state], 1), mask
