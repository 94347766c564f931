"""Checkpoint conversion: the official UniLIP releases into our directories and back, and the UniLIP encoder into
a plain InternVL3-hf checkpoint (``unilip convert`` / ``unilip export``)."""

from unilip.convert.official import (
    convert_official_generator,
    convert_official_tokenizer,
    export_internvl,
    export_official_generator,
    export_official_tokenizer,
)

__all__ = ["convert_official_generator", "convert_official_tokenizer", "export_internvl", "export_official_generator",
           "export_official_tokenizer"]
