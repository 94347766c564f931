"""The generator's frozen work done once: a fixed pool of rendered items with their target latents and MLLM prefixes.

The tokenizer and the MLLM are frozen, and under causal attention the prompt's (and source image's) positions precede
the learnable queries, so for a given item the target latent and the MLLM's pass over its prompt (hidden states and
key/value cache, :class:`~unilip.generation.conditioner.Prefix`) never change during training. The pool renders the
first ``size`` items of the training stream once, computes both, and then serves the stream as a seeded permutation of
the pool per epoch: each step runs only the queries through the LM, the connector and the DiT.

Captions are deduplicated by their text (many scenes share a prompt, and so its prefix); an edit's prefix depends on
its source image and is kept per item. Everything is a pure function of the data config and ``size``, so a resumed or
a second process builds the same pool.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from unilip.generation.conditioner import Prefix
from unilip.train.generator_data import GenerationData

logger = logging.getLogger("unilip.train")


class FrozenPool:
    """``item(p)`` -> {latent, prefix} of stream position ``p``; ``collate`` -> {latents, prefix} (one stacked prefix).

    Args:
        model: the :class:`~unilip.generation.model.UniLIPGenerator` whose frozen tokenizer and MLLM compute the pool.
        data: the training stream; its positions ``0 .. size - 1`` are the pool.
        size: how many items.
        chunk: items rendered and encoded per frozen forward pass.
        seed: the per-epoch permutation's seed.
    """

    def __init__(self, model, data: GenerationData, size: int, chunk: int = 256, seed: int = 0, progress: bool = True):
        self.size, self.seed = size, seed
        self.latents: Tensor | None = None
        self.prefixes: list[Prefix] = []
        captions: dict[str, Prefix] = {}
        for start in tqdm(range(0, size, chunk), desc="frozen pool", unit="chunk", disable=not progress):
            items = [data.make(p) for p in range(start, min(size, start + chunk))]
            latents = model.latents(torch.stack([it["image"] for it in items]).to(model.device))
            self.latents = latents if self.latents is None else torch.cat([self.latents, latents])
            new = sorted({it["prompt"] for it in items if it["source"] is None} - captions.keys())
            if new:
                captions.update(zip(new, model.conditioner.prefix(new).split()))
            edits = [it for it in items if it["source"] is not None]
            edit_prefixes = iter(model.prefix([it["prompt"] for it in edits],
                                              torch.stack([it["source"] for it in edits]).to(model.device)).split()
                                 if edits else [])
            self.prefixes += [captions[it["prompt"]] if it["source"] is None else next(edit_prefixes) for it in items]
        self._order: tuple[int, np.ndarray] | None = None
        shared = {id(p): p for p in self.prefixes}.values()
        self.nbytes = self.latents.numel() * self.latents.element_size() + sum(p.nbytes() for p in shared)
        logger.info("frozen pool: %d items (%d distinct prefixes), %.0f MB", size, len(shared), self.nbytes / 2**20)

    def index(self, position: int) -> int:
        """The pool index of stream position ``position``: a seeded permutation of the pool per epoch."""
        epoch = position // self.size
        if self._order is None or self._order[0] != epoch:
            self._order = (epoch, np.random.default_rng([self.seed, epoch]).permutation(self.size))
        return int(self._order[1][position % self.size])

    def item(self, position: int) -> dict[str, Any]:
        i = self.index(position)
        return {"latent": self.latents[i], "prefix": self.prefixes[i]}

    @staticmethod
    def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
        """Sorted by prefix length (the loss is a mean over items), so the model's condition chunks pad little."""
        items = sorted(items, key=lambda it: it["prefix"].hidden.shape[1])
        return {"latents": torch.stack([it["latent"] for it in items]),
                "prefix": Prefix.stack([it["prefix"] for it in items])}
