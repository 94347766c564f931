"""The MLLM: a transformers ``InternVLForConditionalGeneration`` plus its text tokenizer, and the encoder swap.

At 1b/2b this is InternVL3-*-hf as published; in the mini world it is a tiny InternVL trained from scratch by
``unilip train mllm``. Either way the vision path is the one the UniLIP tokenizer's encoder reproduces exactly
(``vision_tower`` -> pixel shuffle -> ``multi_modal_projector``), so :meth:`MLLM.use_encoder` can put a UniLIP
encoder in the MLLM's place with a plain ``load_state_dict`` and no other change — what users do with InternVL3.
Images enter as (B, 3, H, W) floats in [0, 1], normalised here with the encoder's ImageNet mean and std.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path

import torch
from torch import Tensor, nn

from unilip.config import UniLIPConfig
from unilip.errors import UniLIPError
from unilip.mllm.chat import IMG_CONTEXT, chat_prompt

logger = logging.getLogger("unilip.mllm")

IMAGE_MEAN = (0.485, 0.456, 0.406)  # InternViT's normalisation (ImageNet), as the tokenizer's encoder uses
IMAGE_STD = (0.229, 0.224, 0.225)


def square_side(size: int | list[int] | tuple[int, int]) -> int:
    """The side of a square size that transformers configs store as an int or an (h, w) pair."""
    return size[0] if isinstance(size, (list, tuple)) else size


def internvl_config(cfg: UniLIPConfig, tokenizer):
    """The ``InternVLConfig`` of a randomly initialised MLLM for ``cfg.mllm`` and a text tokenizer."""
    from transformers import InternVLConfig, InternVLVisionConfig, Qwen2Config

    v, lm = cfg.mllm.vision, cfg.mllm.language
    if len(tokenizer) > lm.vocab_size:
        raise UniLIPError(f"mllm.language.vocab_size: {lm.vocab_size} is smaller than the tokenizer's {len(tokenizer)} tokens")
    grid = v.image_size // v.patch_size
    vision = InternVLVisionConfig(
        hidden_size=v.hidden_size, num_hidden_layers=v.num_layers, num_attention_heads=v.num_heads,
        intermediate_size=v.intermediate_size, image_size=v.image_size, patch_size=v.patch_size,
        attention_bias=v.attention_bias, layer_scale_init_value=v.layer_scale_init, norm_type=v.norm_type,
        layer_norm_eps=v.layer_norm_eps, use_qk_norm=v.use_qk_norm, initializer_range=0.02,
        use_mean_pooling=True,  # no final norm: the features are the raw last layer, as UniLIP's encoder reads them
    )
    text = Qwen2Config(
        vocab_size=lm.vocab_size, hidden_size=lm.hidden_size, num_hidden_layers=lm.num_layers,
        num_attention_heads=lm.num_heads, num_key_value_heads=lm.num_kv_heads, intermediate_size=lm.intermediate_size,
        max_position_embeddings=lm.max_position_embeddings, rope_theta=lm.rope_theta, rms_norm_eps=lm.rms_norm_eps,
        tie_word_embeddings=lm.tie_word_embeddings, pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id, bos_token_id=None,
    )
    return InternVLConfig(
        vision_config=vision, text_config=text, image_token_id=tokenizer.convert_tokens_to_ids(IMG_CONTEXT),
        image_seq_length=int(grid * cfg.mllm.downsample_ratio) ** 2, downsample_ratio=cfg.mllm.downsample_ratio,
        vision_feature_layer=-1, vision_feature_select_strategy="default",
        tie_word_embeddings=lm.tie_word_embeddings,  # top level too: transformers 5 defaults it to True
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
    )


def _quiet_transformers() -> None:
    """No per-call progress bars from transformers' loading and saving (ours show the work that matters)."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def _shallow_module_copy(module: nn.Module) -> nn.Module:
    """A new module object whose child modules, parameters and buffers are the same objects as ``module``'s, in
    dicts of its own: replacing one of its children leaves ``module`` as it was."""
    other = copy.copy(module)
    other._modules, other._parameters, other._buffers = dict(module._modules), dict(module._parameters), dict(module._buffers)
    return other


class MLLM(nn.Module):
    """An InternVL model (``self.model``) with its text tokenizer (``self.tokenizer``).

    Args:
        model: a transformers ``InternVLForConditionalGeneration``.
        tokenizer: its ``PreTrainedTokenizerFast`` (InternVL chat format, ``<IMG_CONTEXT>`` image tokens).
    """

    def __init__(self, model, tokenizer):
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.register_buffer("mean", torch.tensor(IMAGE_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGE_STD).view(1, 3, 1, 1), persistent=False)

    @property
    def image_seq_length(self) -> int:
        return self.model.config.image_seq_length

    @property
    def image_size(self) -> int:
        return square_side(self.model.config.vision_config.image_size)

    # ----------------------------------------------------------------------------------------------- building

    @classmethod
    def from_config(cls, cfg: UniLIPConfig, tokenizer=None) -> MLLM:
        """A randomly initialised MLLM (the mini recipe trains it from scratch); tokenizer: the mini world's."""
        from transformers import InternVLForConditionalGeneration

        from unilip.mllm.chat import build_text_tokenizer

        if tokenizer is None:
            grid = cfg.mllm.vision.image_size // cfg.mllm.vision.patch_size
            tokenizer = build_text_tokenizer(image_seq_length=int(grid * cfg.mllm.downsample_ratio) ** 2)
        return cls(InternVLForConditionalGeneration(internvl_config(cfg, tokenizer)), tokenizer)

    @classmethod
    def from_pretrained(cls, path_or_repo: str | Path, dtype: torch.dtype = torch.float32) -> MLLM:
        """An InternVL checkpoint directory (ours, or InternVL3-*-hf from the local HF cache) with its tokenizer.

        Loaded in ``dtype`` (float32 by default, whatever the file stores: the bundled weights are fp16)."""
        from transformers import AutoTokenizer, InternVLForConditionalGeneration

        from unilip.hub import read_config_json, resolve_pretrained

        directory = resolve_pretrained(str(path_or_repo), f"the MLLM {path_or_repo}")
        what = f"the MLLM in {directory}"
        read_config_json(directory / "config.json", what)  # a list, null or truncated config: one line, not a traceback
        if not any(directory.glob("*.safetensors")):
            raise UniLIPError(f"{what}: no *.safetensors weights (pickled .bin files are never read; convert them "
                              "with transformers' save_pretrained(safe_serialization=True))")
        _quiet_transformers()
        try:
            model, info = InternVLForConditionalGeneration.from_pretrained(directory, dtype=dtype,
                                                                           output_loading_info=True)
            tokenizer = AutoTokenizer.from_pretrained(directory)
        except Exception as err:  # transformers' and safetensors' many error types for a broken folder
            raise UniLIPError(f"cannot load {what}: {type(err).__name__}: {str(err)[:300]}") from err
        # transformers fills missing tensors with random values and only warns: a half-random MLLM would answer,
        # condition and export garbage without a word, so every tensor must come from the files
        problems = {kind: sorted(info.get(kind) or []) for kind in ("missing_keys", "unexpected_keys", "mismatched_keys")}
        if any(problems.values()):
            listed = "; ".join(f"{kind.replace('_', ' ')}: {', '.join(map(str, keys[:5]))}"
                               + (f" ... ({len(keys)} in all)" if len(keys) > 5 else "")
                               for kind, keys in problems.items() if keys)
            raise UniLIPError(f"{what}: the weights do not match the config ({listed}); nothing was loaded — "
                              "re-save or re-download the folder")
        return cls(model.eval(), tokenizer)

    def save_pretrained(self, directory: str | Path) -> None:
        """config.json + model.safetensors + the tokenizer files: loadable by plain transformers as well."""
        _quiet_transformers()
        self.model.save_pretrained(directory)
        self.tokenizer.save_pretrained(directory)

    def use_encoder(self, encoder: nn.Module) -> None:
        """Put a UniLIP (or any InternViT) encoder's vision tower + projector in place of the MLLM's, strictly."""
        try:
            self.model.model.vision_tower.load_state_dict(encoder.vision_tower.state_dict())
            self.model.model.multi_modal_projector.load_state_dict(encoder.multi_modal_projector.state_dict())
        except (RuntimeError, AttributeError) as err:
            raise UniLIPError(f"the encoder does not fit this MLLM's vision tower + projector: {err}") from err

    def with_encoder(self, encoder: nn.Module) -> MLLM:
        """A second MLLM that sees through ``encoder``'s vision tower + projector (those modules themselves, not a
        copy) and shares every other module and weight with this one: the web page's UniLIP-encoder MLLM costs no
        second language model (at 1B/3B the bulk of the memory). This MLLM is unchanged."""
        own = self.model.model
        for name in ("vision_tower", "multi_modal_projector"):
            ours, theirs = getattr(own, name).state_dict(), getattr(encoder, name, nn.Module()).state_dict()
            if {k: v.shape for k, v in ours.items()} != {k: v.shape for k, v in theirs.items()}:
                raise UniLIPError(f"the encoder's {name} does not fit this MLLM's (different names or shapes)")
        other = _shallow_module_copy(self)
        other.model = _shallow_module_copy(self.model)
        other.model.model = _shallow_module_copy(own)
        other.model.model.vision_tower = encoder.vision_tower
        other.model.model.multi_modal_projector = encoder.multi_modal_projector
        return other

    # -------------------------------------------------------------------------------------------------- using

    def forward(self, input_ids: Tensor, attention_mask: Tensor, labels: Tensor | None = None,
                images: Tensor | None = None):
        """The InternVL forward (loss when ``labels`` are given); ``images`` in [0, 1], one per image in the batch."""
        pixel_values = self.pixel_values(images) if images is not None else None
        return self.model(input_ids=input_ids, attention_mask=attention_mask, pixel_values=pixel_values, labels=labels)

    def pixel_values(self, images: Tensor) -> Tensor:
        """(B, 3, H, W) in [0, 1] -> the normalised pixels the vision tower takes."""
        return (images - self.mean) / self.std

    def encode_prompts(self, questions: list[str], with_image: bool) -> dict[str, Tensor]:
        """Left-padded input ids and attention mask of one user turn each, ready for generation."""
        texts = [chat_prompt(q, self.image_seq_length if with_image else None) for q in questions]
        return self.tokenizer(texts, return_tensors="pt", padding=True)

    @torch.no_grad()
    def answer(self, questions: list[str], images: Tensor | None = None, max_new_tokens: int = 4) -> list[str]:
        """Greedy answers to ``questions`` (one image each when ``images`` is given, else text only)."""
        if images is not None and images.shape[0] != len(questions):
            raise UniLIPError(f"{images.shape[0]} images for {len(questions)} questions")
        self.model.eval()
        device = next(self.model.parameters()).device
        batch = {k: v.to(device) for k, v in self.encode_prompts(questions, images is not None).items()}
        if images is not None:
            batch["pixel_values"] = self.pixel_values(images.to(device)).to(self.model.dtype)
        out = self.model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False,
                                  eos_token_id=self.tokenizer.eos_token_id, pad_token_id=self.tokenizer.pad_token_id)
        new = out[:, batch["input_ids"].shape[1]:]
        return [self.tokenizer.decode(ids, skip_special_tokens=True).strip() for ids in new]
