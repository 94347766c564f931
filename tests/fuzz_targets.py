"""Coverage-guided fuzz targets (atheris, libFuzzer) for the two parsers of untrusted input: images and configs.

    python tests/fuzz_targets.py image  CORPUS_DIR... -max_total_time=30
    python tests/fuzz_targets.py config CORPUS_DIR... -max_total_time=30

The only allowed failure is a :class:`~unilip.errors.UniLIPError` (a clear, one-line refusal); any other exception is a
crash, and libFuzzer writes the input to ``crash-*``. A crash that was found and fixed goes into the seed folders
under tests/data/fuzz/ so it stays covered. tests/test_fuzz.py runs both targets for a bounded time.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports(include=["unilip"]):
    from unilip.checks import MAX_INPUT_PIXELS
    from unilip.config import UniLIPConfig
    from unilip.config_io import load_config, parse_overrides, parse_yaml_mapping
    from unilip.data.images import load_image
    from unilip.data.loader import eval_transform
    from unilip.errors import UniLIPError


def image(data: bytes) -> None:
    """Decode ``data`` as an upload would be (the CLI's and the web page's limits), then the model's transform."""
    try:
        eval_transform(load_image(data, max_pixels=MAX_INPUT_PIXELS), 32)
    except UniLIPError:
        pass


def config(data: bytes) -> None:
    """``data`` as a YAML config file's text, then each of its lines as a ``key=value`` override."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return  # read_yaml refuses non-UTF-8 before parsing (covered by the malformed-input corpus)
    try:
        load_config(UniLIPConfig, None, parse_yaml_mapping(text, "<fuzz>"))
    except UniLIPError:
        pass
    try:
        load_config(UniLIPConfig, None, parse_overrides(line for line in text.splitlines()[:20] if line.strip()))
    except UniLIPError:
        pass


if __name__ == "__main__":
    target = {"image": image, "config": config}[sys.argv.pop(1)]
    atheris.Setup(sys.argv, target)
    atheris.Fuzz()
