"""LPIPS-VGG (v0.1) from weights on disk: the tokenizer's perceptual loss, and a reconstruction metric.

The ``lpips`` package builds the network; its VGG16 backbone is loaded strictly from torchvision's local file, so
nothing is downloaded and no random weight survives (a random backbone would give a number that looks like LPIPS
and means nothing). Without the package or the file, a :class:`~unilip.errors.UniLIPError` says what to install and
where to put the file.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import torch

from unilip.checks import check_image_pair
from unilip.errors import UniLIPError

__all__ = ["LPIPS_VGG16_FILE", "lpips_metric", "missing_modules"]

#: torchvision's file name for the ImageNet VGG16 weights, the backbone of LPIPS-VGG.
LPIPS_VGG16_FILE = "vgg16-397923af.pth"


def missing_modules(*names: str) -> list[str]:
    return [n for n in names if importlib.util.find_spec(n) is None]


def _lpips_message(where: str) -> str:
    return (
        "LPIPS needs the `unilip[lpips]` extra (the `lpips` and `torchvision` packages) and the VGG16 backbone "
        f"weights ({LPIPS_VGG16_FILE}, torchvision's ImageNet VGG16) on disk at {where}; nothing is downloaded"
    )


def lpips_metric(weights_dir: str | os.PathLike[str] | None = None) -> torch.nn.Module:
    """LPIPS-VGG (v0.1) as a module ``(x, y) -> (B,)`` for images in [0, 1], from weights on disk only.

    Args:
        weights_dir: folder holding ``vgg16-397923af.pth``; default ``<torch hub dir>/checkpoints``, where
            torchvision would have cached it. The LPIPS linear heads ship inside the ``lpips`` package.

    Raises:
        UniLIPError: ``lpips`` or ``torchvision`` is not installed, or the backbone file is not there.
    """
    folder = Path(weights_dir).expanduser() if weights_dir is not None else Path(torch.hub.get_dir()) / "checkpoints"
    weights = folder / LPIPS_VGG16_FILE
    missing = missing_modules("lpips", "torchvision")
    if missing:
        raise UniLIPError(f"{_lpips_message(str(weights))} (not installed: {', '.join(missing)})")
    if not weights.is_file():
        raise UniLIPError(f"{_lpips_message(str(weights))} (no such file)")
    return _LPIPS(weights)


class _LPIPS(torch.nn.Module):
    """lpips.LPIPS(net='vgg') with its VGG16 backbone loaded strictly from a local torchvision file."""

    def __init__(self, weights: Path):
        super().__init__()
        import lpips

        # pnet_rand=True only skips lpips' own (downloading) backbone load; every backbone weight is then
        # overwritten from the local file below, strictly, so no random weight survives.
        self.net = lpips.LPIPS(net="vgg", pretrained=True, pnet_rand=True, verbose=False)
        state = torch.load(weights, map_location="cpu", weights_only=True)
        backbone = self.net.net  # slices slice1..slice5 holding features[i] under the name str(i)
        mapped = {}
        for key in backbone.state_dict():
            _, index, param = key.split(".")
            source = f"features.{index}.{param}"
            if source not in state:
                raise UniLIPError(f"{weights}: not a torchvision VGG16 state dict (no {source})")
            mapped[key] = state[source]
        backbone.load_state_dict(mapped, strict=True)
        self.eval().requires_grad_(False)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        check_image_pair(x, y)
        return self.net(x, y, normalize=True).flatten()  # [0,1] -> [-1,1] inside lpips; (B,1,1,1) -> (B,)
