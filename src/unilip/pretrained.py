"""What a model name means: the one place that turns ``--model`` (or ``from_pretrained``'s argument) into a directory.

- ``mini`` -> the weights bundled inside the package (trained by our own commands on the mini world; README,
  "The embedded default");
- an official UniLIP checkpoint (a tokenizer ``.pth``, a UniLIP-1B/3B directory) -> our layout, converted once per
  process into a temporary directory;
- anything else -> returned unchanged: a local directory or a Hugging Face repo id, which the loaders resolve through
  :func:`unilip.hub.resolve_pretrained` (cache first, offline-safe).

It sits above the models and the converters (it calls them) and below everything that loads by name: the pipeline,
training, evaluation and the command line.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path

from unilip.errors import UniLIPError

__all__ = ["BUNDLED_COMPONENTS", "BUNDLED_DIR", "COMPONENTS", "resolve_model", "resolve_official"]

logger = logging.getLogger("unilip.pretrained")

#: The weights that ship inside the package: a pipeline directory (``mllm/``, ``tokenizer/``, ``generator/``).
BUNDLED_DIR = Path(__file__).parent / "assets" / "mini"
BUNDLED_COMPONENTS = ("mllm", "tokenizer", "generator")
#: What can be asked for: one component, or the whole pipeline directory.
COMPONENTS = (*BUNDLED_COMPONENTS, "pipeline")


def resolve_model(name_or_path: str | os.PathLike[str], component: str) -> Path | str:
    """The directory of ``component`` (``mllm``, ``tokenizer``, ``generator`` or ``pipeline``) named by
    ``name_or_path``: see the module docstring. A local directory or a repo id comes back unchanged."""
    if component not in COMPONENTS:
        raise UniLIPError(f"no component {component!r}; one of {', '.join(COMPONENTS)}")
    if str(name_or_path) != "mini":
        return resolve_official(name_or_path, component) or name_or_path
    path = BUNDLED_DIR if component == "pipeline" else BUNDLED_DIR / component
    needed = [BUNDLED_DIR / c for c in BUNDLED_COMPONENTS] if component == "pipeline" else [path]
    missing = [p for p in needed if not (p / "config.json").is_file()]
    if missing:
        raise UniLIPError(f"the bundled mini {missing[0].name} is missing from this installation ({missing[0]}); "
                          "reinstall unilip, or train one (README: 'The embedded default') and pass its directory")
    return path


# ------------------------------------------------------------------------------------- official inputs to --model

_converted: dict[tuple[str, float], Path] = {}
_scratch: list[Path] = []


def _scratch_dir() -> Path:
    if not _scratch:
        _scratch.append(Path(tempfile.mkdtemp(prefix="unilip-converted-")))
        atexit.register(shutil.rmtree, _scratch[0], True)
    return _scratch[0]


def resolve_official(path: str | os.PathLike[str], component: str) -> Path | None:
    """Our directory for ``component`` when ``path`` is an official checkpoint (converted now, once per process);
    None when it is not one."""
    from unilip.convert.official import (convert_official_generator, convert_official_tokenizer,
                                         is_official_generator, is_official_tokenizer)

    path = Path(path)
    if is_official_tokenizer(path):
        if component != "tokenizer":
            raise UniLIPError(f"{path} is an official UniLIP tokenizer checkpoint; it holds no {component}")
        convert, command = convert_official_tokenizer, "official-tokenizer"
    elif path.is_dir() and is_official_generator(path):
        convert, command = convert_official_generator, "official-generator"
    else:
        return None
    key = (str(path.resolve()), path.stat().st_mtime)
    if key not in _converted:
        logger.warning("%s is an official UniLIP checkpoint: converting it for this run; `unilip convert %s %s DIR` "
                       "once, then --model DIR, saves this step", path, command, path)
        start = time.perf_counter()
        out = _scratch_dir() / uuid.uuid4().hex
        convert(path, out)
        logger.info("converted in %.1f s", time.perf_counter() - start)
        _converted[key] = out
    out = _converted[key]
    return out if component == "pipeline" or convert is convert_official_tokenizer else out / component
