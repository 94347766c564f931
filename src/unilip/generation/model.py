"""The UniLIP generator: conditioner -> connector -> SANA DiT, in the frozen UniLIP tokenizer's latent space.

One module holds the whole path so that training stages, pipelines and evaluation share it:

- :meth:`UniLIPGenerator.conditions` turns prompts (and, to edit, source images) into the DiT's cross-attention
  conditions C (B, L, caption_channels) and their mask;
- :meth:`UniLIPGenerator.latents` / :meth:`UniLIPGenerator.images` map pixels to scaled latents and back;
- :meth:`UniLIPGenerator.loss` is the flow-matching objective on a batch.

The MLLM and the tokenizer are frozen; the queries, the connector and the DiT are what the stages train.
``condition_mode`` selects the paper's ablations: ``dual`` (multimodal hidden states + queries, the default),
``queries`` (the query outputs only) or ``hidden`` (the hidden states only, queries masked out).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from unilip.config import UniLIPConfig
from unilip.errors import UniLIPError
from unilip.generation.conditioner import UNCONDITIONAL_EDIT, UNCONDITIONAL_GENERATE, Conditioner
from unilip.generation.connector import Connector
from unilip.generation.dit import build_dit
from unilip.generation.flow import flow_matching_loss
from unilip.generation.sampling import sample_latents

CONDITION_MODES = ("dual", "queries", "hidden")


class UniLIPGenerator(nn.Module):
    def __init__(self, cfg: UniLIPConfig, mllm, tokenizer, condition_mode: str = "dual"):
        super().__init__()
        if condition_mode not in CONDITION_MODES:
            raise UniLIPError(f"condition_mode: {condition_mode!r} is not one of {', '.join(CONDITION_MODES)}")
        g = cfg.generator
        self.cfg, self.condition_mode = cfg, condition_mode
        self.tokenizer = tokenizer.requires_grad_(False).eval()
        self.conditioner = Conditioner(mllm, g.num_queries)
        self.connector = Connector.from_language_model(self.conditioner.language_model, g.connector_layers,
                                                       g.caption_channels)
        channels, grid, _ = cfg.latent_shape()
        self.dit = build_dit(g, latent_channels=channels, latent_size=grid)

    def train(self, mode: bool = True) -> UniLIPGenerator:
        super().train(mode)
        self.tokenizer.eval()  # frozen parts stay in eval mode whatever the trainer asks
        self.conditioner.mllm.eval()
        return self

    @property
    def latent_scale(self) -> float:
        return self.cfg.generator.latent_scale

    @torch.no_grad()
    def latents(self, images: Tensor) -> Tensor:
        """Images in [0, 1] -> the DiT's targets: UniLIP latents times ``latent_scale``."""
        return self.tokenizer.encode(images) * self.latent_scale

    @torch.no_grad()
    def images(self, latents: Tensor) -> Tensor:
        """The DiT's latents -> images in [0, 1] (the UniLIP decoder, clamped)."""
        return self.tokenizer.decode(latents / self.latent_scale, clamp=True)

    def conditions(self, instructions: list[str], source_images: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Cross-attention conditions (B, L, caption_channels) and their mask (B, L) for prompts or edits."""
        return self._conditions(instructions, self._source_features(source_images))

    @torch.no_grad()
    def _source_features(self, source_images: Tensor | None) -> Tensor | None:
        return None if source_images is None else self.tokenizer.features(source_images)

    def _conditions(self, instructions: list[str], features: Tensor | None) -> tuple[Tensor, Tensor]:
        hidden, mask = self.conditioner(instructions, features)
        n = self.cfg.generator.num_queries
        if self.condition_mode == "queries":
            mask = torch.cat([torch.zeros_like(mask[:, :-n]), mask[:, -n:]], 1)
        elif self.condition_mode == "hidden":
            mask = torch.cat([mask[:, :-n], torch.zeros_like(mask[:, -n:])], 1)
        return self.connector(hidden, mask), mask

    def loss(self, images: Tensor, instructions: list[str], source_images: Tensor | None = None,
             generator: torch.Generator | None = None) -> Tensor:
        """Flow matching on the latents of ``images`` given the prompts (and sources, to edit)."""
        conditions, mask = self.conditions(instructions, source_images)
        return flow_matching_loss(self.dit, self.latents(images), conditions, mask, generator)

    @torch.no_grad()
    def generate(self, prompts: list[str], source_images: Tensor | None = None, num_images_per_prompt: int = 1,
                 steps: int | None = None, guidance: float | None = None, negative_prompt: str | None = None,
                 generator: torch.Generator | None = None, scheduler: str = "euler", progress: bool = False) -> Tensor:
        """Images (B * num_images_per_prompt, 3, S, S) in [0, 1] for prompts, or edits of ``source_images``.

        ``steps`` and ``guidance`` default to the config's; the unconditional branch is ``negative_prompt`` or the
        official empty prompt (editing keeps the source image there too). Conditions are computed once per call.
        """
        if source_images is not None and source_images.shape[0] != len(prompts):
            raise UniLIPError(f"{source_images.shape[0]} source images for {len(prompts)} prompts")
        g = self.cfg.generator
        steps = g.num_inference_steps if steps is None else steps
        guidance = g.cfg_scale if guidance is None else guidance
        prompts = [p for p in prompts for _ in range(num_images_per_prompt)]
        if source_images is not None:
            source_images = source_images.repeat_interleave(num_images_per_prompt, 0)
        features = self._source_features(source_images)
        conditions, mask = self._conditions(prompts, features)
        uncond = uncond_mask = None
        if guidance != 1.0:
            empty = UNCONDITIONAL_EDIT if features is not None else UNCONDITIONAL_GENERATE
            uncond, uncond_mask = self._conditions([negative_prompt or empty] * len(prompts), features)
        latents = sample_latents(self.dit, (len(prompts), *self.cfg.latent_shape()), conditions, mask, uncond,
                                 uncond_mask, guidance, steps, scheduler, generator, progress)
        return self.images(latents)


@torch.no_grad()
def measure_latent_scale(tokenizer, images: Tensor) -> float:
    """1 / std of the UniLIP latents of ``images``: the factor that gives the DiT unit-variance targets (the
    official 10.6 for 1B and 9.5 for 2B were chosen so; recompute it for a new tokenizer)."""
    return float(1.0 / tokenizer.encode(images).float().std())
