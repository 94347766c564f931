"""The conditioner: the frozen MLLM reads the prompt (and, to edit, the source image), then learnable queries.

UniLIP's "dual condition" (official §3.3-3.4): the chat turn ``Generate an image: {caption}`` or
``Edit the image: {instruction}\\n<image>`` is followed by ``<img>`` and N learnable query embeddings; the frozen
language model runs causally over all of it and its last hidden layer (after the final norm) is kept at *every*
position. For editing, the hidden states at the source image's positions are overwritten with the encoder features
F themselves, so the reference details reach the DiT unprocessed.

Prompts are left-padded and positions count valid tokens only, so a prompt's conditions do not depend on what else
is in its batch. The MLLM's weights are frozen, but gradients flow through it to the queries.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from unilip.errors import UniLIPError
from unilip.generation.connector import positions_from_mask
from unilip.mllm.vocab import IMG_CONTEXT, IMG_START, chat_prompt

GENERATE = "Generate an image: {}"
EDIT = "Edit the image: {}"
UNCONDITIONAL_GENERATE = "Generate an image."  # classifier-free guidance's empty prompts (official, 10% dropout)
UNCONDITIONAL_EDIT = "Edit the image."  # editing keeps the source image in the unconditional branch


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
        edit = source_features is not None
        tok = self.mllm.tokenizer
        device = self.queries.device
        enc = tok(self.prompts(instructions, edit), return_tensors="pt", padding=True)  # left padding
        ids, text_mask = enc["input_ids"].to(device), enc["attention_mask"].to(device)
        embeds = self.language_model.get_input_embeddings()(ids)
        image_positions = ids == tok.convert_tokens_to_ids(IMG_CONTEXT)
        if edit:
            b, n = len(instructions), self.mllm.image_seq_length
            if source_features.shape[:2] != (b, n) or source_features.shape[2] != embeds.shape[2]:
                raise UniLIPError(f"source features: expected ({b}, {n}, {embeds.shape[2]}) for {b} prompts, "
                                  f"got {tuple(source_features.shape)}")
            features = source_features.to(embeds.dtype)
            embeds = embeds.masked_scatter(image_positions[..., None], features)
        queries = self.queries.to(embeds.dtype).expand(len(instructions), -1, -1)
        embeds = torch.cat([embeds, queries], 1)
        mask = torch.cat([text_mask, text_mask.new_ones(queries.shape[:2])], 1)
        position_ids = positions_from_mask(mask)
        hidden = self.language_model(inputs_embeds=embeds, attention_mask=mask, position_ids=position_ids).last_hidden_state
        if edit:  # official "llm processed -> vit processed": the source image's positions carry F itself
            full_positions = torch.cat([image_positions, image_positions.new_zeros(queries.shape[:2])], 1)
            hidden = hidden.masked_scatter(full_positions[..., None], features)
        return hidden, mask
