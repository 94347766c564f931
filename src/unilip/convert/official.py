"""The published UniLIP checkpoints <-> our directories, in one environment and without any hub look-up.

Official layouts (as the official code, nnnth/UniLIP, writes them: the tokenizer's EMA state dict saved by
``tokenizer/scripts/train_stage*.py``, the generator ``UniLIP_InternVLForCausalLM`` saved by the HF Trainer of
``unilip/train/train_stage*.py``):

- **tokenizer** ``1b_unilip.pth`` / ``2b_unilip.pth``: a pickled flat state dict, ``encoder.*`` (InternViT, original
  naming), ``mlp1.{0,1,3}``, ``down_blocks.*`` / ``down_mlp.*`` (h_phi) and ``decoder.*`` (DC-AE decoder). It is read
  with ``torch.load(weights_only=True)`` only, which never runs code stored in the file.
- **generator** ``UniLIP-1B`` / ``UniLIP-3B``: ``config.json`` (an InternVL config plus ``n_query``,
  ``connect_layer``, ``unilip_factor`` and hub paths we do not need), safetensors shards with ``model.vision_tower.*``
  (original naming), ``model.multi_modal_projector.{0,1,3}``, ``model.language_model.*``, ``lm_head``,
  ``model.latent_queries``, ``model.llm_connector.*``, ``model.projector``, ``model.dit.*``, ``model.vae_decoder.*``,
  and the text tokenizer's files.

Ours: a tokenizer directory (``UniLIPTokenizer``), and a pipeline directory ``mllm/`` (plain transformers InternVL),
``tokenizer/`` and ``generator/``. What the weights do not say (the DC-AE decoder's and SANA's block layout, h_phi's
depth, the image size) comes from a preset (``1b`` for D = 896, ``2b`` for D = 1536) or a given config, and every
tensor is checked against a ``meta``-device model of that config before anything is written: a mismatched checkpoint
is an error naming the keys, never a half-converted directory.

The conversions are pure renames (plus InternViT's fused ``qkv`` split into q/k/v), so a converted model computes
exactly what the original weights compute; ``tests/convert`` proves it by round trips through both layouts.
"""

from __future__ import annotations

import copy
import json
import os
import pickle
import uuid
from pathlib import Path

import torch
from torch import Tensor

from unilip.config import UniLIPConfig, get_preset
from unilip.convert.internvit import (
    hf_to_original_projector,
    hf_to_original_tower,
    original_to_hf_projector,
    original_to_hf_tower,
)
from unilip.errors import UniLIPError
from unilip.hub import check_state_dict, save_weights_and_config, write_model_index

__all__ = [
    "convert_official_generator", "convert_official_tokenizer", "export_internvl", "export_official_generator",
    "export_official_tokenizer", "is_official_generator", "is_official_tokenizer", "load_official_tokenizer_state",
    "official_generator_to_ours", "official_tokenizer_to_ours", "ours_to_official_generator",
    "ours_to_official_tokenizer",
]

GENERATOR_MODEL_TYPE = "unilip_internvl"
_VAE_MODEL_TYPE = "unilip_vae_internvl"
# The official config's own keys; everything else in it is InternVLConfig's.
_UNILIP_KEYS = ("n_query", "connect_layer", "unilip_factor", "mllm_path", "mllm_hf_path", "dit_path", "vae_path",
                "mm_use_im_start_end", "mm_use_im_patch_token")
_INTERNVL_KEYS = ("vision_config", "text_config", "image_token_id", "image_seq_length", "downsample_ratio",
                  "projector_hidden_act", "vision_feature_layer", "vision_feature_select_strategy", "tie_word_embeddings",
                  "pad_token_id", "eos_token_id", "bos_token_id")
_TEXT_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json",
                         "merges.txt", "added_tokens.json", "chat_template.jinja", "chat_template.json")


# --------------------------------------------------------------------------------------------------- the tokenizer


def is_official_tokenizer(path: str | os.PathLike[str]) -> bool:
    """A file named like a PyTorch checkpoint (``.pth``, ``.pt``, ``.bin``): the official tokenizer's format."""
    path = Path(path)
    return path.is_file() and path.suffix in (".pth", ".pt", ".bin")


def load_official_tokenizer_state(path: str | os.PathLike[str]) -> dict[str, Tensor]:
    """The flat state dict of an official tokenizer ``.pth``, read with ``weights_only=True`` and nothing else.

    Raises:
        UniLIPError: not a file, not a PyTorch checkpoint, a pickle holding anything but tensors (code included:
        torch refuses it before running it), or not a flat ``{name: tensor}`` dict.
    """
    path = Path(path)
    if not path.is_file():
        raise UniLIPError(f"no official tokenizer checkpoint at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UniLIPError(f"{path} holds Python objects besides tensors and was refused (checkpoints are read with "
                          f"torch.load(weights_only=True) only, which never runs code from a file): {first}") from err
    except Exception as err:  # truncated zip, not a checkpoint at all, ...
        raise UniLIPError(f"cannot read {path} as a PyTorch checkpoint: {type(err).__name__}: {err}") from err
    if isinstance(state, dict) and len(state) == 1 and next(iter(state)) in ("state_dict", "model", "module"):
        state = next(iter(state.values()))  # a trainer's wrapper around the state dict
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, Tensor) for k, v in state.items()):
        raise UniLIPError(f"{path} is not a flat {{name: tensor}} state dict (found {type(state).__name__})")
    return state


# Official tokenizer prefix -> ours. The vision tower and mlp1 are also renamed inside (``convert.internvit``).
_TOKENIZER_PARTS = {"encoder.": "encoder.vision_tower.", "mlp1.": "encoder.multi_modal_projector.",
                    "down_blocks.": "projection.blocks.", "down_mlp.": "projection.head.", "decoder.": "decoder."}


def _by_prefix(state: dict[str, Tensor], prefixes) -> tuple[dict[str, dict[str, Tensor]], list[str]]:
    """``state`` split by the first of ``prefixes`` each key starts with (prefix removed), and the keys of none."""
    groups: dict[str, dict[str, Tensor]] = {prefix: {} for prefix in prefixes}
    unknown = []
    for key, value in state.items():
        prefix = next((p for p in prefixes if key.startswith(p)), None)
        if prefix is None:
            unknown.append(key)
        else:
            groups[prefix][key.removeprefix(prefix)] = value
    return groups, unknown


def official_tokenizer_to_ours(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Official tokenizer keys -> :class:`UniLIPTokenizer` keys (``regressor`` keys, a legacy name, are dropped as
    the official loader drops them).

    Raises:
        UniLIPError: keys of no known part.
    """
    groups, unknown = _by_prefix({k: v for k, v in state.items() if "regressor" not in k}, _TOKENIZER_PARTS)
    if unknown:
        raise UniLIPError(f"not an official UniLIP tokenizer: {len(unknown)} keys of no known part "
                          f"({', '.join(_TOKENIZER_PARTS)}), e.g. {', '.join(sorted(unknown)[:5])}")
    groups["encoder."] = original_to_hf_tower(groups["encoder."])
    groups["mlp1."] = original_to_hf_projector(groups["mlp1."])
    return {_TOKENIZER_PARTS[prefix] + key: value for prefix, group in groups.items() for key, value in group.items()}


def ours_to_official_tokenizer(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """:class:`UniLIPTokenizer` keys -> the official tokenizer keys (the inverse of :func:`official_tokenizer_to_ours`)."""
    official = {ours: theirs for theirs, ours in _TOKENIZER_PARTS.items()}
    groups, unknown = _by_prefix(state, official)
    if unknown:
        raise UniLIPError(f"{unknown[0]}: only InternViT tokenizers have an official layout (encoder.vision_tower.*)")
    groups["encoder.vision_tower."] = hf_to_original_tower(groups["encoder.vision_tower."])
    groups["encoder.multi_modal_projector."] = hf_to_original_projector(groups["encoder.multi_modal_projector."])
    return {official[prefix] + key: value for prefix, group in groups.items() for key, value in group.items()}


def _preset_for_width(dim: int, source: str) -> UniLIPConfig:
    """The 1b or 2b preset, chosen by the LLM width D the weights show."""
    for name in ("1b", "2b"):
        cfg = get_preset(name)
        if cfg.mllm.language.hidden_size == dim:
            return cfg
    raise UniLIPError(f"{source}: D = {dim} is neither UniLIP-1B's 896 nor UniLIP-3B's 1536; name the architecture "
                      "with --preset or --config")


def _without_downloads(cfg: UniLIPConfig) -> UniLIPConfig:
    """``cfg`` with every pretrained source removed: converters build shapes only, from the config alone."""
    cfg = copy.deepcopy(cfg)
    cfg.mllm.pretrained = None
    cfg.tokenizer.decoder_pretrained = None
    cfg.tokenizer.encoder_backbone = None
    cfg.generator.dit_pretrained = None
    return cfg


def tokenizer_template(cfg: UniLIPConfig, vision_config=None, projector_hidden_act: str = "gelu"):
    """A ``meta``-device :class:`UniLIPTokenizer` of ``cfg`` (no weights): its config and its tensors' names and shapes.

    ``vision_config`` (an ``InternVLVisionConfig``) overrides ``cfg.mllm.vision`` when a checkpoint states its own.
    """
    from unilip.tokenizer import UniLIPTokenizer
    from unilip.tokenizer.decoder import PixelDecoder
    from unilip.tokenizer.encoder import InternViTEncoder
    from unilip.tokenizer.projection import LatentProjection

    cfg = _without_downloads(cfg)
    dim, ratio = cfg.mllm.language.hidden_size, cfg.mllm.downsample_ratio
    with torch.device("meta"):
        if vision_config is None:
            encoder = InternViTEncoder.from_config(cfg.mllm.vision, dim, ratio)
        else:
            encoder = InternViTEncoder(vision_config, dim, ratio, projector_hidden_act)
        projection = LatentProjection(dim, cfg.tokenizer.latent_channels, cfg.tokenizer.projection_blocks)
        decoder = PixelDecoder.from_config(cfg.tokenizer)
        return UniLIPTokenizer(encoder, projection, decoder, cfg.tokenizer.image_size)


def _shapes(module: torch.nn.Module, prefix: str = "") -> dict[str, torch.Size]:
    return {prefix + key: value.shape for key, value in module.state_dict().items()}


def _prepare_output(dst: Path, overwrite: bool) -> None:
    if dst.exists() and (not dst.is_dir() or any(dst.iterdir())) and not overwrite:
        raise UniLIPError(f"{dst} exists and is not empty; choose a new directory or pass --overwrite")


def convert_official_tokenizer(src: str | os.PathLike[str], dst: str | os.PathLike[str],
                               cfg: UniLIPConfig | None = None, overwrite: bool = False) -> Path:
    """``1b_unilip.pth`` (official) -> a tokenizer directory loadable by ``UniLIPTokenizer.from_pretrained``.

    ``cfg`` names the architecture (default: the 1b or 2b preset, by the width of ``mlp1``). Nothing is written
    unless every tensor matches it.
    """
    src, dst = Path(src), Path(dst)
    _prepare_output(dst, overwrite)
    state = official_tokenizer_to_ours(load_official_tokenizer_state(src))
    width = state.get("encoder.multi_modal_projector.linear_1.weight")
    if width is None:
        raise UniLIPError(f"{src}: no mlp1.1.weight, so this is not an official UniLIP tokenizer")
    cfg = cfg if cfg is not None else _preset_for_width(width.shape[0], str(src))
    template = tokenizer_template(cfg)
    check_state_dict(_shapes(template), state, f"the official tokenizer {src} (read as the {cfg.preset} architecture)")
    save_weights_and_config(dst, state, template.config_dict())
    return dst


def export_official_tokenizer(tokenizer_dir: str | os.PathLike[str], dst: str | os.PathLike[str]) -> Path:
    """Our tokenizer directory -> the official flat ``.pth`` (what the official code and its users load). Names such
    as ``mini`` are resolved by the caller (:func:`unilip.pretrained.resolve_model`)."""
    from unilip.tokenizer import UniLIPTokenizer
    from unilip.tokenizer.encoder import InternViTEncoder

    tok = UniLIPTokenizer.from_pretrained(tokenizer_dir)
    if not isinstance(tok.encoder, InternViTEncoder):
        raise UniLIPError(f"{tokenizer_dir}: a {type(tok.encoder).__name__} tokenizer has no official layout (InternViT only)")
    state = ours_to_official_tokenizer({k: v.contiguous() for k, v in tok.state_dict().items()})
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.parent / f".{dst.name}.{uuid.uuid4().hex}.tmp"
    try:
        torch.save(state, tmp)
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)
    return dst


# --------------------------------------------------------------------------------------------------- the generator


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise UniLIPError(f"cannot read {path}: {err}") from err
    if not isinstance(data, dict):
        raise UniLIPError(f"{path} is not a JSON object")
    return data


def is_official_generator(path: str | os.PathLike[str]) -> bool:
    """A directory whose ``config.json`` is an official UniLIP model's (``model_type`` unilip_*, or ``n_query``)."""
    config = Path(path) / "config.json"
    if not config.is_file():
        return False
    try:
        data = json.loads(config.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and (str(data.get("model_type", "")).startswith("unilip") or "n_query" in data)


def official_generator_to_ours(tensors: dict[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, Tensor], dict[str, Tensor]]:
    """Official generator keys -> (MLLM, tokenizer, generator) state dicts in our names.

    The MLLM's vision tower and projector are the UniLIP encoder, so they go to both the MLLM and the tokenizer.
    """
    mllm, official_tok, gen, unknown = {}, {}, {}, []
    for key, value in tensors.items():
        if key.startswith("model.vision_tower."):
            official_tok["encoder." + key.removeprefix("model.vision_tower.")] = value
        elif key.startswith("model.multi_modal_projector."):
            official_tok["mlp1." + key.removeprefix("model.multi_modal_projector.")] = value
        elif key.startswith("model.vae_decoder."):
            official_tok[key.removeprefix("model.vae_decoder.")] = value
        elif key.startswith("model.language_model.") or key == "lm_head.weight":
            mllm[key] = value
        elif key == "model.latent_queries":
            gen["conditioner.queries"] = value
        elif key.startswith("model.llm_connector."):
            gen["connector." + key.removeprefix("model.llm_connector.")] = value
        elif key.startswith("model.projector."):
            gen["connector.proj." + key.removeprefix("model.projector.")] = value
        elif key.startswith("model.dit."):
            gen["dit." + key.removeprefix("model.dit.")] = value
        elif key.startswith("model.dcae."):
            raise UniLIPError("this is a VAE-latent (generation stage 1) checkpoint (model.dcae.*): its DiT makes DC-AE "
                              "latents; convert a stage-2/3 UniLIP checkpoint")
        else:
            unknown.append(key)
    if unknown:
        raise UniLIPError(f"not an official UniLIP generator: {len(unknown)} keys of no known part, e.g. "
                          f"{', '.join(sorted(unknown)[:5])}")
    tok = official_tokenizer_to_ours(official_tok)
    for key, value in tok.items():
        if key.startswith("encoder."):
            mllm["model." + key.removeprefix("encoder.")] = value
    return mllm, tok, gen


def ours_to_official_generator(mllm: dict[str, Tensor], tok: dict[str, Tensor],
                               gen: dict[str, Tensor]) -> dict[str, Tensor]:
    """(MLLM, tokenizer, generator) state dicts -> the official generator keys. The vision tower and projector are
    written once, from the tokenizer (the UniLIP encoder the checkpoint's MLLM reads with)."""
    out = {key: value for key, value in mllm.items() if key.startswith("model.language_model.") or key == "lm_head.weight"}
    for key, value in ours_to_official_tokenizer(tok).items():
        if key.startswith("encoder."):
            out["model.vision_tower." + key.removeprefix("encoder.")] = value
        elif key.startswith("mlp1."):
            out["model.multi_modal_projector." + key.removeprefix("mlp1.")] = value
        else:
            out["model.vae_decoder." + key] = value
    for key, value in gen.items():
        if key == "conditioner.queries":
            out["model.latent_queries"] = value
        elif key.startswith("connector.proj."):
            out["model.projector." + key.removeprefix("connector.proj.")] = value
        elif key.startswith("connector."):
            out["model.llm_connector." + key.removeprefix("connector.")] = value
        elif key.startswith("dit."):
            out["model.dit." + key.removeprefix("dit.")] = value
        else:
            raise UniLIPError(f"{key}: not a part of the generator (queries, connector, dit)")
    return out


def _internvl_config(official: dict):
    """The plain ``InternVLConfig`` inside an official UniLIP config (its own keys and hub paths dropped)."""
    from transformers import InternVLConfig

    kept = {key: official[key] for key in _INTERNVL_KEYS if key in official}
    if "vision_config" not in kept or "text_config" not in kept:
        raise UniLIPError("the official config.json has no vision_config / text_config")
    try:
        return InternVLConfig(**kept)
    except (TypeError, ValueError) as err:
        raise UniLIPError(f"the official config.json is not a valid InternVL config: {err}") from err


def _generator_cfg(official: dict, internvl, cfg: UniLIPConfig | None, source: str) -> UniLIPConfig:
    """Our config for an official generator: geometry from its config.json, the rest from ``cfg`` or the preset."""
    for key in ("n_query", "connect_layer", "unilip_factor"):
        if key not in official:
            raise UniLIPError(f"{source}: config.json has no {key!r}; is this an official UniLIP-1B/3B directory?")
    cfg = _without_downloads(cfg if cfg is not None else _preset_for_width(internvl.text_config.hidden_size, source))
    patch = internvl.vision_config.patch_size
    cfg.mllm.vision.patch_size = patch[0] if isinstance(patch, (list, tuple)) else patch
    cfg.mllm.downsample_ratio = internvl.downsample_ratio
    cfg.mllm.language.hidden_size = internvl.text_config.hidden_size
    cfg.generator.num_queries = int(official["n_query"])
    cfg.generator.connector_layers = int(official["connect_layer"])
    cfg.generator.latent_scale = float(official["unilip_factor"])
    cfg.generator.edit_source_resize = "squash"  # the official edit pipeline resizes a source to 448 x 448
    return cfg


def _generator_shapes(cfg: UniLIPConfig, internvl) -> dict[str, torch.Size]:
    """Names and shapes of the generator's own tensors (queries, connector, DiT) on the meta device."""
    from unilip.generation.connector import Connector
    from unilip.generation.dit import build_dit

    cfg = _without_downloads(cfg)
    channels, grid, _ = cfg.latent_shape()
    with torch.device("meta"):
        connector = Connector(internvl.text_config, cfg.generator.connector_layers, cfg.generator.caption_channels)
        dit = build_dit(cfg.generator, latent_channels=channels, latent_size=grid)
    queries = {"conditioner.queries": torch.Size([1, cfg.generator.num_queries, internvl.text_config.hidden_size])}
    return {**queries, **_shapes(connector, "connector."), **_shapes(dit, "dit.")}


def _save_mllm(directory: Path, internvl, state: dict[str, Tensor], src: Path) -> None:
    """Write a plain transformers InternVL checkpoint (config, weights, text tokenizer) from converted tensors."""
    from transformers import AutoTokenizer, InternVLForConditionalGeneration

    from unilip.mllm.model import _quiet_transformers

    with torch.device("meta"):
        model = InternVLForConditionalGeneration(internvl)
    expected = _shapes(model)
    if internvl.tie_word_embeddings and "lm_head.weight" not in state:
        state = {**state, "lm_head.weight": state.get("model.language_model.embed_tokens.weight")}
    check_state_dict(expected, state, f"the MLLM weights in {src}")
    model.load_state_dict(state, strict=True, assign=True)
    _quiet_transformers()
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # its config.json says unilip_internvl, which transformers warns about
    try:
        tokenizer = AutoTokenizer.from_pretrained(src)
    except (OSError, ValueError) as err:
        raise UniLIPError(f"cannot read the text tokenizer files in {src}: {err}") from err
    finally:
        hf_logging.set_verbosity(verbosity)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)


def convert_official_generator(src: str | os.PathLike[str], dst: str | os.PathLike[str],
                               cfg: UniLIPConfig | None = None, overwrite: bool = False) -> Path:
    """An official UniLIP-1B/3B directory -> our pipeline directory (``mllm/``, ``tokenizer/``, ``generator/``).

    The MLLM and vision geometry come from the official ``config.json``; the DC-AE decoder, h_phi and SANA layouts from
    ``cfg`` (default: the 1b or 2b preset by the LLM width); every tensor is checked before anything is written.
    """
    from unilip.generation.flow import OFFICIAL_SCHEDULER_CONFIG, scheduler_from_config
    from unilip.generation.model import generator_config
    from unilip.hub import load_safetensors_subset

    src, dst = Path(src), Path(dst)
    if not src.is_dir():
        raise UniLIPError(f"{src} is not a directory (an official UniLIP-1B/3B checkpoint is a directory)")
    official = _read_json(src / "config.json")
    if official.get("model_type") == _VAE_MODEL_TYPE:
        raise UniLIPError(f"{src} is a VAE-latent (generation stage 1) checkpoint; convert a stage-2/3 UniLIP checkpoint")
    _prepare_output(dst, overwrite)
    internvl = _internvl_config(official)
    cfg = _generator_cfg(official, internvl, cfg, str(src))
    mllm, tok, gen = official_generator_to_ours(load_safetensors_subset(src, ("",)))

    tok_template = tokenizer_template(cfg, internvl.vision_config, internvl.projector_hidden_act)
    check_state_dict(_shapes(tok_template), tok, f"the tokenizer weights in {src} (as the {cfg.preset} architecture)")
    check_state_dict(_generator_shapes(cfg, internvl), gen, f"the generator weights in {src} (as the {cfg.preset} architecture)")
    cfg.tokenizer.image_size = tok_template.image_size
    _save_mllm(dst / "mllm", internvl, mllm, src)
    save_weights_and_config(dst / "tokenizer", tok, tok_template.config_dict())
    save_weights_and_config(dst / "generator", gen, generator_config(cfg))
    scheduler_from_config(OFFICIAL_SCHEDULER_CONFIG).save_config(dst / "generator")  # the official sampler: SANA's file
    write_model_index(dst)
    return dst


def _readable_by_transformers_4(directory: Path) -> None:
    """Rewrite what transformers 5 saved so that the official stack (transformers 4.52) reads the same model, while
    transformers 5 still does.

    - ``config.json``: 5 writes the RoPE base only as ``rope_parameters``; 4.52's ``Qwen2Config`` reads ``rope_theta``
      and would silently fall back to 1e4 (InternVL3's Qwen2.5 uses 1e6). Both keys are written, and ``torch_dtype``
      beside ``dtype``.
    - ``tokenizer_config.json``: 5 writes ``extra_special_tokens`` as a list, which 4.52 reads as a dict of named tokens
      and fails on; the list goes back to ``additional_special_tokens`` (5 converts it on load). 5's generic
      ``TokenizersBackend`` class, unknown to 4.52, is named ``PreTrainedTokenizerFast``. The added tokens get their
      ids in ``added_tokens_decoder``, so a slow tokenizer numbers them as the fast one does.
    - A BPE tokenizer also gets ``vocab.json`` and ``merges.txt``, the files 4.52's slow ``Qwen2Tokenizer`` needs.
    """
    path = directory / "config.json"
    config = json.loads(path.read_text())
    for section in (config, config.get("text_config") or {}):
        rope = section.get("rope_parameters")
        if isinstance(rope, dict) and "rope_theta" in rope:
            section["rope_theta"] = rope["rope_theta"]
            extra = {k: v for k, v in rope.items() if k != "rope_theta"}
            section.setdefault("rope_scaling", None if extra.get("rope_type", "default") == "default" else extra)
        if "dtype" in section:
            section["torch_dtype"] = section["dtype"]
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")

    path, fast = directory / "tokenizer_config.json", directory / "tokenizer.json"
    if not path.is_file() or not fast.is_file():
        return
    tok_config, tokenizer = json.loads(path.read_text()), json.loads(fast.read_text())
    extra = tok_config.pop("extra_special_tokens", None)
    if isinstance(extra, list):
        tok_config["additional_special_tokens"] = list(dict.fromkeys([*tok_config.get("additional_special_tokens", []), *extra]))
    elif extra:
        tok_config["extra_special_tokens"] = extra  # already the dict 4.52 reads
    if tok_config.get("tokenizer_class") in (None, "TokenizersBackend"):
        tok_config["tokenizer_class"] = "PreTrainedTokenizerFast"
    keys = ("content", "lstrip", "normalized", "rstrip", "single_word", "special")
    tok_config["added_tokens_decoder"] = {str(a["id"]): {k: a[k] for k in keys if k in a} for a in tokenizer.get("added_tokens", [])}
    path.write_text(json.dumps(tok_config, indent=2, ensure_ascii=False) + "\n")
    model = tokenizer.get("model") or {}
    if model.get("type") == "BPE":
        (directory / "vocab.json").write_text(json.dumps(model["vocab"], ensure_ascii=False))
        merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
        (directory / "merges.txt").write_text("#version: 0.2\n" + "".join(m + "\n" for m in merges))


def export_official_generator(pipeline, dst: str | os.PathLike[str], hub_paths: dict[str, str] | None = None) -> Path:
    """A :class:`UniLIPPipeline` -> the official UniLIP-1B/3B directory layout (config.json, model.safetensors, the
    text tokenizer's files). ``hub_paths`` fills the official config's ``mllm_path`` / ``dit_path`` / ... fields."""
    gen = pipeline.generator
    mllm = gen.conditioner.mllm
    if gen.autoencoder is not None or gen.condition_mode != "dual":
        raise UniLIPError("only a dual-condition generator in the UniLIP latent has an official layout")
    state = ours_to_official_generator(mllm.model.state_dict(), gen.tokenizer.state_dict(), gen.trained_state_dict())
    config = mllm.model.config.to_dict()
    config.update({"model_type": GENERATOR_MODEL_TYPE, "architectures": ["UniLIP_InternVLForCausalLM"],
                   "n_query": gen.cfg.generator.num_queries, "connect_layer": gen.cfg.generator.connector_layers,
                   "unilip_factor": gen.latent_scale, "mm_use_im_start_end": False, "mm_use_im_patch_token": False,
                   **(hub_paths or {})})
    dst = Path(dst)
    save_weights_and_config(dst, {k: v.contiguous() for k, v in state.items()}, config)
    mllm.tokenizer.save_pretrained(dst)
    _readable_by_transformers_4(dst)
    return dst


def export_internvl(tokenizer_dir: str | os.PathLike[str], mllm_dir: str | os.PathLike[str],
                    dst: str | os.PathLike[str]) -> Path:
    """An InternVL3-*-hf checkpoint whose vision tower + projector are the UniLIP encoder's: loadable by plain
    ``transformers.InternVLForConditionalGeneration.from_pretrained``, so understanding benchmarks can score it."""
    from unilip.mllm.model import MLLM
    from unilip.tokenizer import UniLIPTokenizer

    tok = UniLIPTokenizer.from_pretrained(tokenizer_dir)
    mllm = MLLM.from_pretrained(mllm_dir)
    mllm.use_encoder(tok.encoder)
    mllm.save_pretrained(dst)
    _readable_by_transformers_4(Path(dst))
    return Path(dst)
