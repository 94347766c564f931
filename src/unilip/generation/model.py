"""The UniLIP generator: conditioner -> connector -> SANA DiT, in the frozen UniLIP tokenizer's latent space.

One module holds the whole path so that training stages, pipelines and evaluation share it:

- :meth:`UniLIPGenerator.conditions` turns prompts (and, to edit, source images) into the DiT's cross-attention
  conditions C (B, L, caption_channels) and their mask;
- :meth:`UniLIPGenerator.latents` / :meth:`UniLIPGenerator.images` map pixels to scaled latents and back;
- :meth:`UniLIPGenerator.loss` is the flow-matching objective on a batch.

Sampling is the pipeline's (:class:`unilip.pipeline.UniLIPPipeline`, with :func:`unilip.generation.flow.sample_latents`).

The MLLM and the tokenizer are frozen; the queries, the connector and the DiT are what the stages train.
``condition_mode`` selects the paper's ablations: ``dual`` (multimodal hidden states + queries, the default),
``queries`` (the query outputs only) or ``hidden`` (the hidden states only, queries masked out).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path

import torch
from PIL import Image
from torch import Tensor, nn
from torch.nn import functional as F

from unilip.config import UniLIPConfig
from unilip.errors import UniLIPError
from unilip.generation.conditioner import Conditioner, Prefix
from unilip.generation.connector import Connector
from unilip.generation.dit import build_dit
from unilip.generation.flow import flow_matching_loss

CONDITION_MODES = ("dual", "queries", "hidden")
CONDITION_CHUNK = 64  # items per connector pass in training (see conditions_of): big enough for full-speed matmuls
TRAINED_PARTS = ("conditioner", "connector", "dit")  # conditioner.queries only: the MLLM inside stays frozen
# The header generator folders had before every component's config.json started with hub.component_header.
_LEGACY_HEADER = {"format": "unilip-generator"}
CONFIG_NAME, WEIGHTS_NAME = "config.json", "model.safetensors"


class UniLIPGenerator(nn.Module):
    def __init__(self, cfg: UniLIPConfig, mllm, tokenizer, condition_mode: str = "dual", autoencoder: nn.Module | None = None):
        super().__init__()
        if condition_mode not in CONDITION_MODES:
            raise UniLIPError(f"condition_mode: {condition_mode!r} is not one of {', '.join(CONDITION_MODES)}")
        g = cfg.generator
        self.cfg, self.condition_mode = cfg, condition_mode
        self.tokenizer = tokenizer.requires_grad_(False).eval()
        # The space the DiT generates in: the UniLIP latent (default), or another autoencoder's (the paper's VAE
        # ablation: generator.vae_baseline.PixelAutoencoder); edit sources always reach the MLLM as UniLIP features.
        self.autoencoder = autoencoder.requires_grad_(False).eval() if autoencoder is not None else None
        self.conditioner = Conditioner(mllm, g.num_queries)
        self.connector = Connector.from_language_model(self.conditioner.language_model, g.connector_layers,
                                                       g.caption_channels)
        channels, grid, _ = cfg.latent_shape()
        self.dit = build_dit(g, latent_channels=channels, latent_size=grid)

    def train(self, mode: bool = True) -> UniLIPGenerator:
        super().train(mode)
        self.tokenizer.eval()  # frozen parts stay in eval mode whatever the trainer asks
        if self.autoencoder is not None:
            self.autoencoder.eval()
        self.conditioner.mllm.eval()
        return self

    @property
    def device(self) -> torch.device:
        return self.conditioner.queries.device

    @property
    def latent_scale(self) -> float:
        return self.cfg.generator.latent_scale

    @torch.no_grad()
    def latents(self, images: Tensor) -> Tensor:
        """Images in [0, 1] -> the DiT's targets: UniLIP latents times ``latent_scale``."""
        return (self.autoencoder or self.tokenizer).encode(images) * self.latent_scale

    @property
    def pixel_decoder(self) -> nn.Module:
        """The module :meth:`images` decodes with: the UniLIP tokenizer's decoder, or the plain autoencoder."""
        return self.autoencoder if self.autoencoder is not None else self.tokenizer.decoder

    @torch.no_grad()
    def images(self, latents: Tensor) -> Tensor:
        """The DiT's latents -> images in [0, 1]: the UniLIP decoder's output clamped, then resized to the image size
        (the official pipeline's order; a plain autoencoder decodes at its own size)."""
        latents = (latents / self.latent_scale).to(next(self.pixel_decoder.parameters()).dtype)  # the sampler's: fp32
        if self.autoencoder is not None:
            return self.autoencoder.decode(latents, clamp=True)
        return self.tokenizer.decode(latents, clamp_first=True)

    def conditions(self, instructions: list[str], source_images: Tensor | None = None,
                   features: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Cross-attention conditions (B, L, caption_channels) and their mask (B, L) for prompts or edits: of
        ``source_images``, or of their :meth:`source_features` computed before (both CFG branches share them)."""
        if features is None:
            features = self.source_features(source_images)
        return self.conditions_of(self.conditioner.prefix(instructions, features))

    @torch.no_grad()
    def source_features(self, source_images: Tensor | None) -> Tensor | None:
        """The UniLIP encoder's features of edit sources (B, N, D), what the MLLM reads in place of its own."""
        return None if source_images is None else self.tokenizer.features(source_images)

    def conditions_of(self, prefix: Prefix, chunk: int = CONDITION_CHUNK) -> tuple[Tensor, Tensor]:
        """Conditions and mask from the frozen MLLM's pass over the prompts (:class:`Prefix`): the queries run on its
        cache, then the connector; ``condition_mode`` masks what an ablation drops.

        A batch longer than ``chunk`` runs in consecutive chunks, each trimmed to its own longest prompt, and the
        conditions are left-padded back to one length: the same conditions (padding is masked everywhere), fewer
        FLOPs where lengths vary, most when the batch is sorted by length (:class:`~unilip.train.frozen_pool.FrozenPool`
        sorts its batches)."""
        if len(prefix) <= chunk:
            return self._chunk_conditions(prefix)
        parts = [self._chunk_conditions(prefix.narrow(i, chunk)) for i in range(0, len(prefix), chunk)]
        length = max(c.shape[1] for c, _ in parts)
        return (torch.cat([F.pad(c, (0, 0, length - c.shape[1], 0)) for c, _ in parts]),
                torch.cat([F.pad(m, (length - m.shape[1], 0)) for _, m in parts]))

    def _chunk_conditions(self, prefix: Prefix) -> tuple[Tensor, Tensor]:
        hidden, mask = self.conditioner.extend(prefix)
        n = self.cfg.generator.num_queries
        if self.condition_mode == "queries":
            mask = torch.cat([torch.zeros_like(mask[:, :-n]), mask[:, -n:]], 1)
        elif self.condition_mode == "hidden":
            mask = torch.cat([mask[:, :-n], torch.zeros_like(mask[:, -n:])], 1)
        return self.connector(hidden, mask), mask

    @torch.no_grad()
    def prefix(self, instructions: list[str], source_images: Tensor | None = None) -> Prefix:
        """The frozen part of a batch's conditions: its *last* ``len(source_images)`` items are edits and the rest
        prompts; the two groups go through the MLLM separately and are stacked into one left-padded prefix."""
        k = 0 if source_images is None else source_images.shape[0]
        if k == 0 or k == len(instructions):
            return self.conditioner.prefix(instructions, self.source_features(source_images))
        generate = self.conditioner.prefix(instructions[: len(instructions) - k])
        edit = self.conditioner.prefix(instructions[len(instructions) - k:], self.source_features(source_images))
        return Prefix.stack(generate.split() + edit.split())

    def loss_on(self, latents: Tensor, prefix: Prefix, generator: torch.Generator | None = None) -> Tensor:
        """Flow matching on scaled latents (:meth:`latents`) given their prompts' prefixes (:meth:`prefix`)."""
        conditions, mask = self.conditions_of(prefix)
        return flow_matching_loss(self.dit, latents, conditions, mask, generator)

    def loss(self, images: Tensor, instructions: list[str], source_images: Tensor | None = None,
             generator: torch.Generator | None = None) -> Tensor:
        """Flow matching on the latents of ``images`` given the prompts; the last ``len(source_images)`` items are
        edits of those sources (all of them when the counts match)."""
        return self.loss_on(self.latents(images), self.prefix(instructions, source_images), generator)

    def forward(self, latents: Tensor, prefix: Prefix) -> Tensor:
        """The training loss (:meth:`loss_on`): the loop calls the module, so DDP can synchronise the gradients."""
        return self.loss_on(latents, prefix)

    # ------------------------------------------------------------------------------------------- saving, loading

    def trained_state_dict(self) -> dict[str, Tensor]:
        """What the generator adds to the frozen MLLM and tokenizer: the queries, the connector and the DiT."""
        return {k: v for k, v in self.state_dict().items() if k.split(".")[0] in TRAINED_PARTS
                and not k.startswith("conditioner.mllm.")}

    def save_pretrained(self, directory: str | Path) -> None:
        """Write ``config.json`` (the generator config, the condition mode, the latent shape) and ``model.safetensors``
        (queries, connector, DiT) atomically; the MLLM and the tokenizer are saved by themselves."""
        from unilip.hub import save_weights_and_config

        latent_space = "unilip" if self.autoencoder is None else type(self.autoencoder).__name__
        save_weights_and_config(directory, self.trained_state_dict(),
                                generator_config(self.cfg, self.condition_mode, latent_space), WEIGHTS_NAME, CONFIG_NAME)

    @classmethod
    def from_pretrained(cls, directory_or_repo: str | Path, mllm, tokenizer, cfg: UniLIPConfig | None = None,
                        autoencoder: nn.Module | None = None) -> UniLIPGenerator:
        """Load a generator written by :meth:`save_pretrained` around ``mllm`` and ``tokenizer``, strictly.

        ``cfg`` supplies the tokenizer/MLLM geometry (default: read from ``mllm`` and ``tokenizer`` themselves);
        the saved latent shape must match what it implies, so a generator never meets a tokenizer it was not made for.
        """
        from unilip.config import GeneratorConfig
        from unilip.config_io import from_dict
        from unilip.hub import (check_component_config, load_safetensors_subset, load_state_dict_strict,
                                read_config_json, resolve_pretrained)

        directory = resolve_pretrained(str(directory_or_repo), f"the UniLIP generator {directory_or_repo}",
                                       [CONFIG_NAME, WEIGHTS_NAME])
        saved = read_config_json(directory / CONFIG_NAME, f"the UniLIP generator in {directory}")
        try:
            check_component_config(saved, "UniLIPGenerator", directory / CONFIG_NAME, legacy=_LEGACY_HEADER)
            gen_cfg = from_dict(GeneratorConfig, saved.get("generator"), "generator")  # typed and range-checked
        except (ValueError, KeyError, TypeError) as err:
            raise UniLIPError(f"cannot read the generator config {directory / CONFIG_NAME}: {err}") from err
        cfg = copy.deepcopy(cfg) if cfg is not None else _geometry_of(mllm, tokenizer)
        cfg.generator = replace(gen_cfg, dit_pretrained=None)  # the weights below hold the DiT
        if list(cfg.latent_shape()) != saved.get("latent_shape"):
            raise UniLIPError(f"the generator in {directory} makes latents of shape {saved.get('latent_shape')}, but the "
                              f"tokenizer config implies {list(cfg.latent_shape())}; pass the config it was trained with")
        space = saved.get("latent_space", "unilip")
        if (space == "unilip") != (autoencoder is None):
            raise UniLIPError(f"the generator in {directory} generates in the {space} latent space; "
                              + ("pass that autoencoder" if autoencoder is None else "it takes no autoencoder"))
        model = cls(cfg, mllm, tokenizer, saved.get("condition_mode", "dual"), autoencoder)
        if not (directory / WEIGHTS_NAME).is_file():
            raise UniLIPError(f"the UniLIP generator in {directory}: {WEIGHTS_NAME} is missing")
        state = load_safetensors_subset(directory, ("",))
        frozen = {k: v for k, v in model.state_dict().items() if k not in model.trained_state_dict()}
        load_state_dict_strict(model, {**frozen, **state}, f"the generator weights in {directory}")
        return model


def generator_config(cfg: UniLIPConfig, condition_mode: str = "dual", latent_space: str = "unilip") -> dict:
    """The content of a generator directory's ``config.json``: the generator config, the condition mode, and the
    latent the DiT makes (shape and space), which loading checks against the tokenizer it is given."""
    from unilip.hub import component_header

    return {**component_header("UniLIPGenerator"), "generator": asdict(cfg.generator), "condition_mode": condition_mode,
            "latent_shape": list(cfg.latent_shape()), "image_size": cfg.tokenizer.image_size, "latent_space": latent_space}


def _geometry_of(mllm, tokenizer) -> UniLIPConfig:
    """A config whose image size, patch size, pixel-shuffle ratio and latent channels are those of the given models."""
    from unilip.config import get_preset
    from unilip.mllm.model import square_side

    cfg = get_preset("mini")
    config = mllm.model.config
    cfg.mllm.vision.patch_size = square_side(config.vision_config.patch_size)
    cfg.mllm.downsample_ratio = config.downsample_ratio
    cfg.tokenizer.image_size = tokenizer.image_size
    cfg.tokenizer.latent_channels = tokenizer.projection.latent_channels
    return cfg


@torch.no_grad()
def measure_latent_scale(tokenizer, images: Tensor) -> float:
    """1 / std of the UniLIP latents of ``images``: the factor that gives the DiT unit-variance targets (the
    official 10.6 for 1B and 9.5 for 2B were chosen so; recompute it for a new tokenizer)."""
    return float(1.0 / tokenizer.encode(images).float().std())


#: Images per encoder pass in :func:`latent_scale_of_images`: bounds its memory whatever the number of images.
LATENT_SCALE_CHUNK = 256


@torch.no_grad()
def latent_scale_of_images(tokenizer, images: Sequence[Image.Image], image_size: int,
                           chunk: int = LATENT_SCALE_CHUNK) -> float:
    """:func:`measure_latent_scale` over ``images`` (each resized and centre-cropped to ``image_size``), encoded
    ``chunk`` at a time so that thousands of images fit in memory.

    The chunks' counts, means and squared deviations are pooled (Chan et al.'s parallel variance), so the result is
    1 / std of all the latents as one batch would give it: averaging the chunks' scales, or their variances alone,
    would not be (a std of a union is neither, when the chunks' means differ).
    """
    from unilip.data.loader import eval_transform

    if not images:
        raise UniLIPError("no images to measure the latent scale over")
    count, mean, squares = 0, 0.0, 0.0  # running pooled statistics, float64
    for start in range(0, len(images), chunk):
        batch = torch.stack([eval_transform(im, image_size) for im in images[start : start + chunk]])
        latents = tokenizer.encode(batch).double()
        k, chunk_mean = latents.numel(), float(latents.mean())
        delta = chunk_mean - mean
        squares += float(((latents - chunk_mean) ** 2).sum()) + delta**2 * count * k / (count + k)
        mean += delta * k / (count + k)
        count += k
    return ((count - 1) / squares) ** 0.5  # 1 / the unbiased std, as torch.std gives it
