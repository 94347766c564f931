"""unilip: UniLIP (CLIP revamped to unify multimodal understanding, generation and editing) in PyTorch.

The package imports nothing heavy at the top level: ``import unilip`` is cheap, and torch, transformers and
diffusers load only when a model is built.
"""

__version__ = "0.1.0"

from unilip.errors import ConfigError, ImageLoadError, UniLIPError

__all__ = ["ConfigError", "ImageLoadError", "UniLIPError", "__version__"]
