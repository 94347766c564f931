"""The UniLIP tokenizer (the paper's autoencoder): vision encoder -> F -> h_phi -> z -> DC-AE decoder -> pixels."""

from unilip.tokenizer.decoder import PixelDecoder
from unilip.tokenizer.encoder import (
    HFVisionEncoder,
    InternViTEncoder,
    VisionEncoder,
    build_encoder,
)
from unilip.tokenizer.model import TokenizerOutput, UniLIPTokenizer
from unilip.tokenizer.projection import LatentProjection

__all__ = [
    "HFVisionEncoder", "InternViTEncoder", "LatentProjection", "PixelDecoder", "TokenizerOutput", "UniLIPTokenizer",
    "VisionEncoder", "build_encoder",
]
