"""Text-to-image and editing with diffusers' conventions: ``UniLIPPipeline.from_pretrained(...)(prompt, ...)``.

A pipeline directory holds three components, each loadable alone: ``mllm/`` (transformers InternVL + its tokenizer),
``tokenizer/`` (the UniLIP tokenizer) and ``generator/`` (queries, connector, DiT). ``"mini"`` is the bundled one.
Every argument is honoured: steps, guidance scale, negative prompt, seeds (a generator or one per image), batches
of prompts, images per prompt, the sampler and the output type. Conditions are computed once per call.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from unilip.checks import (MAX_BATCH, MAX_GUIDANCE, MAX_IMAGES_PER_PROMPT, MAX_STEPS, SCHEDULERS, check_float,
                           check_int, check_text, short)
from unilip.errors import UniLIPError

COMPONENTS = ("mllm", "tokenizer", "generator")
OUTPUT_TYPES = ("pil", "np", "pt")


@dataclass
class UniLIPPipelineOutput:
    """``images``: a list of PIL images, an (N, H, W, 3) uint8 array or an (N, 3, H, W) float tensor in [0, 1]."""

    images: Any


class UniLIPPipeline:
    """The one inference API: the command line, the web page, the demo and the mini benchmarks all call it."""

    def __init__(self, generator, progress: bool = True, scheduler=None):
        """``scheduler``: the default sampler, a diffusers scheduler (default: flow Euler, no shift); a call may name
        another one."""
        from unilip.generation.flow import make_scheduler

        self.generator = generator.eval()
        self.scheduler = make_scheduler("euler") if scheduler is None else scheduler
        self._progress = progress
        self._offload_to: torch.device | None = None  # the execution device under model or sequential offload
        self._offload = None  # None, "model" or "sequential"

    # ------------------------------------------------------------------------------------------------ loading

    @classmethod
    def from_pretrained(cls, path_or_repo: str | Path = "mini", dtype: torch.dtype = torch.float32,
                        device: str | torch.device | None = None) -> UniLIPPipeline:
        """Load ``mllm/``, ``tokenizer/`` and ``generator/`` from a directory, a Hugging Face repo id (cache first;
        offline-safe) or ``"mini"`` (the bundled weights); an official UniLIP-1B/3B directory is converted on the fly.
        A ``generator/scheduler_config.json`` (diffusers' format) sets the default sampler."""
        from unilip.generation.flow import load_scheduler
        from unilip.generation.model import UniLIPGenerator
        from unilip.hub import read_model_index, resolve_pretrained
        from unilip.mllm.model import MLLM
        from unilip.pretrained import resolve_model
        from unilip.tokenizer import UniLIPTokenizer

        root = resolve_model(path_or_repo, "pipeline")
        if isinstance(root, str):  # not a name we know: a local directory or a hub repo id
            root = resolve_pretrained(root, f"the UniLIP pipeline {root}", [f"{c}/*" for c in COMPONENTS])
        missing = [c for c in COMPONENTS if not (Path(root) / c).is_dir()]
        if missing:
            raise UniLIPError(f"{root} is not a UniLIP pipeline directory: no {', '.join(c + '/' for c in missing)} "
                              "(write one with UniLIPPipeline.save_pretrained or `python -m unilip.bundle`)")
        root = Path(root)
        read_model_index(root)  # when there is one, it must name the classes loaded below
        mllm = MLLM.from_pretrained(root / "mllm", dtype=dtype)
        tokenizer = UniLIPTokenizer.from_pretrained(root / "tokenizer").to(dtype)
        generator = UniLIPGenerator.from_pretrained(root / "generator", mllm, tokenizer).to(dtype)
        pipe = cls(generator, scheduler=load_scheduler(root / "generator"))
        return pipe.to(device) if device is not None else pipe

    def save_pretrained(self, directory: str | Path) -> None:
        """``mllm/``, ``tokenizer/``, ``generator/`` (with the default sampler's ``scheduler_config.json``) and
        ``model_index.json`` (which names them and their classes)."""
        from unilip.hub import write_model_index

        directory = Path(directory)
        self.generator.conditioner.mllm.save_pretrained(directory / "mllm")
        self.generator.tokenizer.save_pretrained(directory / "tokenizer")
        self.generator.save_pretrained(directory / "generator")
        self.scheduler.save_config(directory / "generator")
        write_model_index(directory)

    def quantize(self, scheme: str = "int8") -> UniLIPPipeline:
        """8-bit weight-only quantization of the language model, the connector and the DiT (the bulk of the weights),
        in place; the vision encoder and the pixel decoder keep their precision (they also serve reconstruction)."""
        from unilip.devices import quantize_weights

        if self._offload == "sequential":
            raise UniLIPError("quantize before offloading (the weights are offloaded layer by layer)")
        model = self.generator
        quantize_weights(model.conditioner.mllm.model.model.language_model, scheme)
        quantize_weights(model.connector, scheme)
        quantize_weights(model.dit, scheme)
        return self

    def compile(self) -> UniLIPPipeline:
        """``torch.compile`` the pixel decoder (the DC-AE decoder is 15-50 % of a call at 448 px). The first call then
        pays the compilation (about 40 s for the 1b decoder on a CPU), later ones decode faster (bf16, 2 CPU cores:
        7.6 -> 5.6 s): for dumps, benchmarks and servers, not for one image. The DiT is left eager: compiling its
        blocks made the sampling loop slower here (conditions of varying length recompile it)."""
        self.generator.pixel_decoder.compile()
        return self

    def to(self, device: str | torch.device) -> UniLIPPipeline:
        if self._offload == "sequential":
            raise UniLIPError("the pipeline's weights are offloaded layer by layer (enable_sequential_cpu_offload); "
                              "load it again to place it on one device")
        self.generator.to(device)
        self._offload_to = self._offload = None
        return self

    def enable_model_cpu_offload(self, device: str | torch.device | None = None) -> UniLIPPipeline:
        """Keep the components in CPU memory and move each to ``device`` (default: CUDA) only while it runs: the
        vision encoder (edits), then the MLLM with the queries and the connector, then the DiT, then the decoder.
        Peak accelerator memory is then about the largest component's instead of their sum, at the cost of one
        host-to-device copy of each per call (diffusers' ``enable_model_cpu_offload``)."""
        from unilip.devices import resolve_device

        if self._offload == "sequential":
            raise UniLIPError("the pipeline is already offloaded layer by layer (enable_sequential_cpu_offload)")
        self.generator.to("cpu")
        self._offload_to, self._offload = resolve_device(device), "model"
        return self

    def enable_sequential_cpu_offload(self, device: str | torch.device | None = None) -> UniLIPPipeline:
        """Keep the weights in CPU memory and bring each layer to ``device`` (default: CUDA) only for its own forward
        (accelerate's ``cpu_offload`` hooks on the vision encoder, the MLLM, the connector, the DiT and the decoder; the
        queries and the small projections stay on ``device``). Peak accelerator memory is then about one layer's
        weights plus the activations, at the cost of copying every layer at every DiT step: the slowest mode, for
        cards too small for ``enable_model_cpu_offload`` (diffusers' ``enable_sequential_cpu_offload``). Quantize
        first if both are wanted; the mode is final: load the pipeline again to undo it."""
        from accelerate import cpu_offload

        from unilip.devices import resolve_device

        if self._offload is not None:
            raise UniLIPError(f"the pipeline is already offloaded ({self._offload}); load it again to change the mode")
        device = resolve_device(device)
        model = self.generator.to("cpu")
        for unit in self.sequential_offload_units():
            cpu_offload(unit, execution_device=device)  # weights -> a CPU map, the module's own ones -> meta
        for module in model.modules():  # the rest (queries, projector, h_phi; the units' buffers) on the device
            for tensors in (module._parameters, module._buffers):
                for name, t in tensors.items():
                    if t is not None and not t.is_meta and t.device != device:
                        tensors[name] = (torch.nn.Parameter(t.data.to(device), t.requires_grad)
                                         if isinstance(t, torch.nn.Parameter) else t.to(device))
        self._offload_to, self._offload = device, "sequential"
        return self

    def sequential_offload_units(self) -> list[torch.nn.Module]:
        """The modules :meth:`enable_sequential_cpu_offload` offloads layer by layer (the bulk of the weights)."""
        model = self.generator
        return [model.tokenizer.encoder.vision_tower, model.conditioner.mllm.model, model.connector, model.dit,
                model.pixel_decoder]

    @contextmanager
    def _running(self, *modules: torch.nn.Module):
        """``modules`` on the execution device for the block, back in CPU memory after it (under model offload)."""
        if self._offload != "model":
            yield
            return
        for module in modules:
            module.to(self._offload_to)
        try:
            yield
        finally:
            for module in modules:
                module.to("cpu")

    @property
    def device(self) -> torch.device:
        """Where the inputs go: the execution device (under offload the weights wait in CPU memory)."""
        return self._offload_to or self.generator.conditioner.queries.device

    @property
    def image_size(self) -> int:
        return self.generator.tokenizer.image_size

    def set_progress_bar_config(self, disable: bool = False) -> None:
        self._progress = not disable

    # ------------------------------------------------------------------------------------------------ calling

    def _source_tensor(self, image, n: int) -> torch.Tensor:
        """Source image(s) -> (n, 3, S, S) in [0, 1]: one image for every prompt, or one per prompt. A tensor already
        at the model's size (S x S, values in [0, 1]) is used as it is; anything else is loaded and resized as the
        generator's ``edit_source_resize`` says (centre crop, or the official squash to S x S)."""
        from unilip.data.images import load_image
        from unilip.data.loader import eval_transform, squash_transform

        resize = squash_transform if self.generator.cfg.generator.edit_source_resize == "squash" else eval_transform

        if isinstance(image, torch.Tensor) and image.ndim == 4 or isinstance(image, (list, tuple)):
            images = list(image)
        else:
            images = [image]
        tensors = []
        for im in images:
            if isinstance(im, torch.Tensor):
                if im.ndim != 3 or im.shape[0] != 3:
                    raise UniLIPError(f"image: a tensor must be (3, H, W) or (B, 3, H, W) in [0, 1], got {tuple(im.shape)}")
                if tuple(im.shape[1:]) == (self.image_size, self.image_size):
                    tensors.append(im.detach().float().clamp(0, 1).cpu())
                    continue
                im = Image.fromarray((im.detach().float().clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy())
            tensors.append(resize(load_image(im), self.image_size))
        if len(tensors) == 1 and n > 1:
            tensors = tensors * n
        if len(tensors) != n:
            raise UniLIPError(f"{len(tensors)} source images for {n} prompts; pass one image, or one per prompt")
        return torch.stack(tensors).to(self.device, dtype=self.generator.conditioner.queries.dtype)

    def _generate(self, prompts: list[str], sources: torch.Tensor | None, num_images_per_prompt: int,
                  steps: int | None, guidance_scale: float | None, negative_prompt: str | None, generator,
                  scheduler) -> torch.Tensor:
        """Images (B * num_images_per_prompt, 3, S, S) in [0, 1]: conditions once, the flow integrated with CFG,
        decoded. ``steps`` and ``guidance_scale`` default to the generator's config; the unconditional branch is
        ``negative_prompt`` or the official empty prompt (an edit keeps the source image there too)."""
        from unilip.generation.conditioner import UNCONDITIONAL_EDIT, UNCONDITIONAL_GENERATE
        from unilip.generation.flow import sample_latents

        model, defaults = self.generator, self.generator.cfg.generator
        steps = defaults.num_inference_steps if steps is None else steps
        guidance_scale = defaults.cfg_scale if guidance_scale is None else guidance_scale
        prompts = [p for p in prompts for _ in range(num_images_per_prompt)]
        if sources is not None:
            sources = sources.repeat_interleave(num_images_per_prompt, 0)
        with self._running(model.tokenizer.encoder):
            features = model.source_features(sources)  # once, for both branches
        with self._running(model.conditioner, model.connector):
            conditions, mask = model.conditions(prompts, features=features)
            uncond = uncond_mask = None
            if guidance_scale != 1.0:
                empty = UNCONDITIONAL_EDIT if features is not None else UNCONDITIONAL_GENERATE
                uncond, uncond_mask = model.conditions([negative_prompt or empty] * len(prompts), features=features)
        with self._running(model.dit):
            latents = sample_latents(model.dit, (len(prompts), *model.cfg.latent_shape()), conditions, mask, uncond,
                                     uncond_mask, guidance_scale, steps, scheduler, generator, self._progress)
        with self._running(model.pixel_decoder):
            return model.images(latents)

    @torch.no_grad()
    def __call__(self, prompt: str | list[str], image: Any = None, negative_prompt: str | None = None,
                 num_inference_steps: int | None = None, guidance_scale: float | None = None,
                 num_images_per_prompt: int = 1, generator: torch.Generator | list[torch.Generator] | None = None,
                 output_type: str = "pil", scheduler: str | None = None, return_dict: bool = True):
        """Generate images for ``prompt`` (a string or a list), or, with ``image``, edit it by the instruction(s).

        ``scheduler``: ``euler``, ``dpm`` or ``unipc`` (no shift), or None for the pipeline's own :attr:`scheduler` (for a
        converted official checkpoint, SANA's DPM-Solver with flow_shift 3, as the official pipeline).

        Returns :class:`UniLIPPipelineOutput` (or a tuple ``(images,)`` with ``return_dict=False``); ``len(images) ==
        len(prompts) * num_images_per_prompt``, grouped by prompt.
        """
        prompts = [prompt] if isinstance(prompt, str) else list(prompt) if isinstance(prompt, (list, tuple)) else None
        if not prompts or len(prompts) > MAX_BATCH:
            raise UniLIPError(f"prompt: give a non-empty string or a list of 1 to {MAX_BATCH} non-empty strings")
        prompts = [check_text(f"prompt {i}" if len(prompts) > 1 else "prompt", p) for i, p in enumerate(prompts)]
        if negative_prompt is not None:
            negative_prompt = check_text("negative_prompt", negative_prompt)
        num_images_per_prompt = check_int("num_images_per_prompt", num_images_per_prompt, 1, MAX_IMAGES_PER_PROMPT)
        if num_inference_steps is not None:
            num_inference_steps = check_int("num_inference_steps", num_inference_steps, 1, MAX_STEPS)
        if guidance_scale is not None:
            guidance_scale = check_float("guidance_scale", guidance_scale, 1.0, MAX_GUIDANCE)
        if output_type not in OUTPUT_TYPES:
            raise UniLIPError(f"output_type: {short(output_type)} is not one of {', '.join(OUTPUT_TYPES)}")
        if scheduler is not None and scheduler not in SCHEDULERS:
            raise UniLIPError(f"scheduler: {short(scheduler)} is not one of {', '.join(SCHEDULERS)} (or None: the model's own)")
        sources = self._source_tensor(image, len(prompts)) if image is not None else None
        images = self._generate(prompts, sources, num_images_per_prompt, num_inference_steps, guidance_scale,
                                negative_prompt, generator, self.scheduler if scheduler is None else scheduler)
        if output_type == "pt":
            out: Any = images.float().cpu()
        else:
            arrays = (images.float().clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()
            out = arrays if output_type == "np" else [Image.fromarray(np.ascontiguousarray(a)) for a in arrays]
        return UniLIPPipelineOutput(out) if return_dict else (out,)
