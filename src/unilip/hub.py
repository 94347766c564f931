"""Finding and reading pretrained weights: local directories first, then the Hugging Face cache, never pickles.

Every 1b/2b component (InternVL3, DC-AE, SANA, our own checkpoints) is named by a local directory or a hub repo id.
:func:`resolve_pretrained` turns that name into a directory, fails fast with the command that fetches what is missing
(offline machines and CI must never hang on a download), and :func:`load_safetensors_subset` reads only the tensors a
component needs (the ViT and projector out of a 1.9 GB InternVL3 file, the decoder out of a DC-AE file).
:func:`load_state_dict_strict` loads them all-or-nothing, with every missing, unexpected or misshapen key named.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import Tensor, nn

from unilip.errors import UniLIPError

__all__ = ["MODEL_INDEX_NAME", "PIPELINE_INDEX", "check_component_config", "check_state_dict", "component_header",
           "load_safetensors_subset", "load_state_dict_strict", "read_config_json", "read_model_index",
           "resolve_pretrained", "save_weights_and_config", "write_model_index"]

# Seconds to wait for the hub's metadata answer when online: a dead network fails in seconds, not minutes.
_ETAG_TIMEOUT_S = 10.0
_TRUE = {"1", "ON", "YES", "TRUE"}
_WEIGHT_STEMS = ("model", "diffusion_pytorch_model")  # transformers' and diffusers' file names


def _offline() -> bool:
    """HF_HUB_OFFLINE, read now (the env var, for callers that set it after import) or at hub import (constants)."""
    from huggingface_hub import constants

    return os.environ.get("HF_HUB_OFFLINE", "").upper() in _TRUE or bool(constants.HF_HUB_OFFLINE)


def _looks_like_path(name: str) -> bool:
    """A repo id is `name` or `owner/name`; anything else that could only be a path is reported as a missing path."""
    return name.startswith(("/", ".", "~")) or "\\" in name or name.count("/") > 1


def resolve_pretrained(name_or_path: str, what: str, allow_patterns: list[str] | None = None) -> Path:
    """The local directory holding ``name_or_path``: the directory itself, or the cached snapshot of a hub repo.

    Args:
        name_or_path: a local directory (used as is) or a Hugging Face repo id such as ``OpenGVLab/InternVL3-1B-hf``.
        what: what this is, for the error message, e.g. ``"the InternVL3 checkpoint for the 1b preset"``.
        allow_patterns: the files of the repo that are needed (e.g. ``["config.json", "*.safetensors"]``).

    The local cache is tried first; the network only when that fails and ``HF_HUB_OFFLINE`` is not set.

    Raises:
        UniLIPError: not a directory, not cached while offline, not reachable, or no such repo. The message names
        ``what`` and the command that fetches it.
    """
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    if path.exists() or _looks_like_path(name_or_path):
        raise UniLIPError(f"cannot find {what}: {name_or_path} is not a directory")

    from huggingface_hub import snapshot_download

    fetch = (
        f"fetch it with `huggingface-cli download {name_or_path}` (or `hf download {name_or_path}`), "
        "or pass a local directory"
    )
    try:
        return Path(snapshot_download(name_or_path, allow_patterns=allow_patterns, local_files_only=True))
    except Exception as err:  # not cached, or an invalid repo id: both mean "not here"
        cached_error = err
    if _offline():
        raise UniLIPError(
            f"cannot find {what}: {name_or_path!r} is not a local directory and is not in the Hugging Face cache, "
            f"and HF_HUB_OFFLINE=1 forbids downloading it; {fetch}"
        ) from cached_error
    try:
        return Path(snapshot_download(name_or_path, allow_patterns=allow_patterns, etag_timeout=_ETAG_TIMEOUT_S))
    except Exception as err:  # no network, no such repo, gated repo, disk full: one clear line for each
        raise UniLIPError(
            f"cannot get {what}: {name_or_path!r} is not a local directory, not in the Hugging Face cache, and "
            f"downloading it failed ({type(err).__name__}: {err}); {fetch}"
        ) from err


#: A model folder's config.json is a few KB; a larger one is not a config (and would be read whole into memory).
_MAX_CONFIG_JSON_BYTES = 4 << 20


def read_config_json(path: str | Path, what: str) -> dict:
    """The JSON object in ``path`` (a model folder's config.json), or one UniLIPError naming the file and the fix."""
    path = Path(path)
    if not path.is_file():
        raise UniLIPError(f"{what}: {path} is missing; the folder is not a complete save_pretrained() output")
    if path.stat().st_size > _MAX_CONFIG_JSON_BYTES:
        raise UniLIPError(f"{what}: {path} is {path.stat().st_size} bytes, too large for a config")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as err:
        raise UniLIPError(f"{what}: {path} is not valid JSON ({type(err).__name__}: {str(err)[:200]}); "
                          "re-save or re-download the folder") from None
    if not isinstance(data, dict):
        kind = "null" if data is None else f"a {type(data).__name__}"
        raise UniLIPError(f"{what}: {path} holds {kind}, not a JSON object of settings")
    return data


def _weight_files(directory: Path, prefixes: tuple[str, ...]) -> list[Path]:
    """The safetensors files of ``directory`` that may hold keys under ``prefixes`` (only the needed shards)."""
    for stem in _WEIGHT_STEMS:
        index = directory / f"{stem}.safetensors.index.json"
        if index.is_file():
            try:
                weight_map: dict[str, str] = json.loads(index.read_text())["weight_map"]
            except (OSError, ValueError, KeyError, TypeError) as err:
                raise UniLIPError(f"cannot read the shard index {index}: {err}") from err
            shards = sorted({file for key, file in weight_map.items() if key.startswith(prefixes)})
            return [directory / shard for shard in shards]
        single = directory / f"{stem}.safetensors"
        if single.is_file():
            return [single]
    looked = ", ".join(f"{stem}.safetensors[.index.json]" for stem in _WEIGHT_STEMS)
    raise UniLIPError(f"no safetensors weights in {directory} (looked for {looked}; pickled .bin files are never read)")


def load_safetensors_subset(directory: Path, prefixes: tuple[str, ...]) -> dict[str, Tensor]:
    """The tensors of ``directory`` whose keys start with one of ``prefixes`` (keys kept whole, nothing stripped).

    Reads ``model.safetensors`` or the shards listed in ``model.safetensors.index.json`` (diffusers'
    ``diffusion_pytorch_model*`` names too) with ``safetensors.safe_open``, so only the requested tensors are loaded.
    """
    from safetensors import safe_open

    tensors: dict[str, Tensor] = {}
    for file in _weight_files(Path(directory), tuple(prefixes)):
        try:
            with safe_open(str(file), framework="pt") as handle:
                for key in handle.keys():
                    if key.startswith(prefixes):
                        tensors[key] = handle.get_tensor(key)
        except Exception as err:  # missing shard, truncated or corrupt file: name the file
            raise UniLIPError(f"cannot read weights from {file}: {type(err).__name__}: {err}") from err
    return tensors


def _listing(keys: list[str], limit: int = 20) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def check_state_dict(expected: dict[str, torch.Size | tuple[int, ...]], state_dict: dict[str, Tensor], what: str) -> None:
    """Raise unless ``state_dict`` has exactly the keys of ``expected`` with exactly its shapes.

    ``expected`` maps key -> shape (a meta-device model's state dict serves: no weights needed).

    Raises:
        UniLIPError: naming ``what`` and every missing, unexpected or misshapen key.
    """
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    misshapen = sorted(
        f"{key} {tuple(value.shape)} (model: {tuple(expected[key])})"
        for key, value in state_dict.items()
        if key in expected and tuple(value.shape) != tuple(expected[key])
    )
    problems = [
        f"{label} {len(keys)}: {_listing(keys)}"
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", misshapen))
        if keys
    ]
    if problems:
        raise UniLIPError(f"{what} does not match the model ({'; '.join(problems)}); nothing was loaded")


def load_state_dict_strict(module: nn.Module, state_dict: dict[str, Tensor], what: str) -> None:
    """Load ``state_dict`` into ``module`` all-or-nothing: any missing, unexpected or misshapen key raises first.

    Raises:
        UniLIPError: naming ``what`` and every offending key; ``module`` is left untouched.
    """
    check_state_dict({key: value.shape for key, value in module.state_dict().items()}, state_dict, what)
    with torch.no_grad():
        module.load_state_dict(state_dict, strict=True)


def save_weights_and_config(directory: str | Path, state: dict[str, Tensor], config: dict,
                            weights_name: str = "model.safetensors", config_name: str = "config.json") -> None:
    """Write ``config_name`` (JSON) and ``weights_name`` (safetensors) into ``directory`` (created if needed).

    Each file is written under a temporary name in the same directory and then renamed over the old one, so a crash
    never leaves a truncated file; weights go first, so a new config never describes old weights.
    """
    import uuid

    from safetensors.torch import save_file

    if any(value.is_meta for value in state.values()):
        raise UniLIPError("cannot save weights on the meta device: there are none yet")
    state = {key: value.detach().to("cpu").contiguous() for key, value in state.items()}
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex
    weights_tmp, config_tmp = directory / f".{weights_name}.{tag}.tmp", directory / f".{config_name}.{tag}.tmp"
    try:
        save_file(state, str(weights_tmp), metadata={"format": "pt"})
        config_tmp.write_text(json.dumps(config, indent=2) + "\n")
        os.replace(weights_tmp, directory / weights_name)
        os.replace(config_tmp, directory / config_name)
    finally:
        weights_tmp.unlink(missing_ok=True)
        config_tmp.unlink(missing_ok=True)


# ------------------------------------------------------------------------------- what our config.json files say

#: The version of the layout of our config.json files; a reader refuses any other.
FORMAT_VERSION = 1


def component_header(class_name: str) -> dict:
    """The first keys of every config.json unilip writes for its own components (diffusers' convention: the class
    that reads the folder, and the version that wrote it)."""
    from unilip import __version__

    return {"_class_name": class_name, "_unilip_version": __version__, "format_version": FORMAT_VERSION}


def check_component_config(config: dict, class_name: str, where: str | Path, legacy: dict | None = None) -> None:
    """Refuse a config.json that :func:`component_header` did not write for ``class_name``. ``legacy``: the header
    an older unilip wrote for the same layout (accepted as it is)."""
    if legacy is not None and all(config.get(k) == v for k, v in legacy.items()):
        return
    if config.get("_class_name") != class_name or config.get("format_version") != FORMAT_VERSION:
        raise UniLIPError(f"{where} is not a {class_name} config (format {FORMAT_VERSION}): _class_name "
                          f"{config.get('_class_name')!r}, format_version {config.get('format_version')!r}")


# ---------------------------------------------------------------------------------------- the pipeline's index

MODEL_INDEX_NAME = "model_index.json"
#: A pipeline directory's components and the classes that load them (as diffusers' model_index.json).
PIPELINE_INDEX = {"mllm": ["transformers", "InternVLForConditionalGeneration"],
                  "tokenizer": ["unilip", "UniLIPTokenizer"], "generator": ["unilip", "UniLIPGenerator"]}


def write_model_index(directory: str | Path) -> Path:
    """Write ``model_index.json`` into a pipeline directory, atomically."""
    path = Path(directory) / MODEL_INDEX_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps({**component_header("UniLIPPipeline"), **PIPELINE_INDEX}, indent=2) + "\n")
    os.replace(tmp, path)
    return path


def read_model_index(directory: str | Path) -> dict | None:
    """A pipeline directory's index, checked against :data:`PIPELINE_INDEX`; None when the directory has none (one
    written before the index existed, or assembled by hand)."""
    path = Path(directory) / MODEL_INDEX_NAME
    if not path.is_file():
        return None
    index = read_config_json(path, f"the pipeline index of {directory}")
    check_component_config(index, "UniLIPPipeline", path)
    wrong = [f"{c}: {index.get(c)} (expected {cls})" for c, cls in PIPELINE_INDEX.items() if index.get(c) != cls]
    if wrong:
        raise UniLIPError(f"{path} names components this version cannot load: {'; '.join(wrong)}")
    return index
