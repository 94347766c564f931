"""Reconstruction metrics: PSNR, SSIM, Fréchet distances, and the optional LPIPS / rFID.

Every number unilip reports is computed here, by our code, on our outputs. PSNR and SSIM are per image, so a
caller can average them, report a spread, or find the worst reconstructions. The Fréchet distance is the FID
formula on any features; :class:`FeatureFrechet` runs it on the *original* (frozen) encoder's features, which
needs no download, and :func:`rfid_metric` runs it on InceptionV3 features when those weights are on disk.

Nothing here downloads anything. LPIPS and rFID need optional packages and backbone weights that are fetched at
run time by their usual libraries; when either is missing we raise :class:`~unilip.errors.UniLIPError` saying
what to install and where to put the file, and never fall back to randomly initialised weights (which would give
a number that looks like LPIPS and means nothing).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import linalg

from unilip.checks import check_image_pair
from unilip.errors import UniLIPError
# LPIPS lives with the loss that trains on it; it is a metric here too.
from unilip.tokenizer.perceptual import LPIPS_VGG16_FILE, lpips_metric, missing_modules

__all__ = [
    "LPIPS_VGG16_FILE",
    "RFID_INCEPTION_FILE",
    "FeatureFrechet",
    "frechet_distance",
    "frechet_distance_from_stats",
    "lpips_metric",
    "psnr",
    "rfid_metric",
    "ssim",
    "ssim_official",
]

#: torch-fidelity's file name for the TF-ported InceptionV3 weights (FID's standard feature extractor).
RFID_INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"


# --------------------------------------------------------------------------------------------------------------
# PSNR and SSIM
# --------------------------------------------------------------------------------------------------------------


def psnr(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio per image, in dB, for images in [0, 1] (data range 1.0).

    Args:
        x, y: (B, 3, H, W) image batches in [0, 1]; the metric is symmetric.

    Returns:
        (B,) float64: ``10 * log10(1 / mean((x - y)^2))`` over each image's channels and pixels; ``inf`` for
        identical images. Same as ``torchmetrics.functional.peak_signal_noise_ratio(x[i:i+1], y[i:i+1],
        data_range=1.0)`` for each i.
    """
    check_image_pair(x, y)
    mse = (x.double() - y.double()).pow(2).flatten(1).mean(dim=1)  # (B,)
    return 10.0 * torch.log10(1.0 / mse)


def ssim(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Structural similarity per image (Gaussian window 11, sigma 1.5, K1 0.01, K2 0.03), averaged over channels.

    Computed with torchmetrics' ``structural_similarity_index_measure(..., reduction='none')`` in float64.
    Versus ``skimage.metrics.structural_similarity(..., channel_axis=-1, gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False)`` (what the official evaluation calls): the SSIM maps are identical (up to rounding)
    wherever the 11x11 window fits inside the image, but torchmetrics averages the map over *all* pixels, using
    reflect padding at the border, while skimage drops a 5-pixel border before averaging. So the two differ by a
    border term, about 1e-3 at 32 px and shrinking roughly as 1/side (tested in tests/eval/test_metrics.py).

    Args:
        x, y: (B, 3, H, W) image batches in [0, 1], H and W at least 11.
        data_range: the value range the SSIM constants assume; 1.0 is correct for [0, 1] images.

    Returns:
        (B,) float64.
    """
    from torchmetrics.functional.image import structural_similarity_index_measure

    check_image_pair(x, y)
    if min(x.shape[-2:]) < 11:
        raise UniLIPError(f"SSIM needs images of at least 11x11 pixels (the Gaussian window); got {tuple(x.shape[-2:])}")
    return structural_similarity_index_measure(
        x.double(), y.double(), gaussian_kernel=True, sigma=1.5, kernel_size=11, data_range=data_range, reduction="none"
    )


def ssim_official(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """SSIM as the official UniLIP evaluation computes it: ``data_range=2.0`` on [0, 1] images. Not standard SSIM.

    The official ``scripts/evaluation.py`` calls skimage's SSIM with ``data_range=2.0`` although its images are
    in [0, 1]. That quadruples the stabilising constants C1 and C2 and so inflates SSIM, most for low-contrast
    regions. We compute it only to compare with the paper's table; wherever it is reported it must be labelled
    as such (e.g. "SSIM (official, data_range=2)"), next to the standard :func:`ssim`.

    Returns:
        (B,) float64.
    """
    return ssim(x, y, data_range=2.0)


# --------------------------------------------------------------------------------------------------------------
# Fréchet distances
# --------------------------------------------------------------------------------------------------------------


def frechet_distance_from_stats(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, eps: float = 1e-6
) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2), in float64.

    ``||mu1 - mu2||^2 + Tr(sigma1 + sigma2 - 2 sqrt(sigma1 sigma2))``, as pytorch-fid computes it: if the matrix
    square root is not finite (singular covariances, e.g. fewer samples than dimensions), ``eps * I`` is added to
    both covariances; a tiny imaginary part from rounding is dropped, a large one is an error.
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (mu1.size, mu1.size):
        raise UniLIPError(f"mismatched statistics: means {mu1.shape}, {mu2.shape}; covariances {sigma1.shape}, {sigma2.shape}")
    diff = mu1 - mu2
    covmean = linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        imag = np.max(np.abs(np.diagonal(covmean).imag))
        if imag > 1e-3:
            raise UniLIPError(f"Fréchet distance: the matrix square root has a large imaginary part ({imag:.3g})")
        covmean = covmean.real
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))


def _feature_stats(feats: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    feats = np.asarray(feats, dtype=np.float64)
    if feats.ndim != 2 or feats.shape[0] < 2:
        raise UniLIPError(f"{what}: expected features (N, D) with N >= 2 (a covariance needs two samples); got {feats.shape}")
    return feats.mean(axis=0), np.cov(feats, rowvar=False).reshape(feats.shape[1], feats.shape[1])


def frechet_distance(feats_a: np.ndarray, feats_b: np.ndarray, eps: float = 1e-6) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (N, D) and (M, D): the FID formula.

    Means and (unbiased) covariances in float64, then :func:`frechet_distance_from_stats`.
    """
    mu_a, sigma_a = _feature_stats(feats_a, "feats_a")
    mu_b, sigma_b = _feature_stats(feats_b, "feats_b")
    return frechet_distance_from_stats(mu_a, sigma_a, mu_b, sigma_b, eps)


class _RunningMoments:
    """Mean and covariance of a stream of (B, D) batches in float64, merged batch by batch (Chan et al.).

    Keeps only D + D*D numbers, never the features, and merges stably (no sum-of-squares cancellation).
    """

    def __init__(self) -> None:
        self.n = 0
        self.mean: np.ndarray | None = None
        self.m2: np.ndarray | None = None  # sum of outer products of deviations from the mean

    def update(self, feats: np.ndarray) -> None:
        nb = feats.shape[0]
        if nb == 0:
            return
        mean_b = feats.mean(axis=0)
        dev = feats - mean_b
        m2_b = dev.T @ dev
        if self.mean is None:
            self.n, self.mean, self.m2 = nb, mean_b, m2_b
            return
        if mean_b.shape != self.mean.shape:
            raise UniLIPError(f"feature size changed from {self.mean.shape[0]} to {mean_b.shape[0]}")
        n = self.n + nb
        delta = mean_b - self.mean
        self.mean = self.mean + delta * (nb / n)
        self.m2 = self.m2 + m2_b + np.outer(delta, delta) * (self.n * nb / n)
        self.n = n

    def stats(self, what: str) -> tuple[np.ndarray, np.ndarray]:
        if self.n < 2:
            raise UniLIPError(f"{what}: needs at least 2 feature vectors (got {self.n})")
        return self.mean, self.m2 / (self.n - 1)


def _as_features(feats: Any) -> np.ndarray:
    """Tensor or array (B, D), or token features (B, N, D) averaged over tokens, as float64 numpy."""
    if isinstance(feats, torch.Tensor):
        feats = feats.detach().to("cpu", torch.float64).numpy()
    feats = np.asarray(feats, dtype=np.float64)
    if feats.ndim == 3:
        feats = feats.mean(axis=1)  # (B, N, D) -> (B, D): one vector per image
    if feats.ndim != 2:
        raise UniLIPError(f"expected features (B, D) or token features (B, N, D); got shape {feats.shape}")
    return feats


class FeatureFrechet:
    """Fréchet distance between the feature distributions of real and reconstructed images, accumulated in batches.

    Used with the *original* (frozen) encoder's features, mean over tokens: a distribution distance that needs no
    download, unlike Inception-based FID. Token features (B, N, D) are averaged over tokens for you.

    Example::

        fd = FeatureFrechet()
        for real, fake in batches:
            fd.update(encoder(real), encoder(fake))
        print(fd.compute())
    """

    def __init__(self, eps: float = 1e-6):
        self.eps = eps
        self.reset()

    def reset(self) -> None:
        """Forget everything accumulated."""
        self._real, self._fake = _RunningMoments(), _RunningMoments()

    def update(self, real_features: Any, fake_features: Any) -> None:
        """Add one batch of real and one of fake features: (B, D) or (B, N, D); the two B may differ."""
        self._real.update(_as_features(real_features))
        self._fake.update(_as_features(fake_features))

    @property
    def count(self) -> tuple[int, int]:
        """(real, fake) feature vectors accumulated so far."""
        return self._real.n, self._fake.n

    def compute(self) -> float:
        """The Fréchet distance of everything accumulated (needs at least 2 real and 2 fake vectors)."""
        mu_r, sigma_r = self._real.stats("real features")
        mu_f, sigma_f = self._fake.stats("fake features")
        return frechet_distance_from_stats(mu_r, sigma_r, mu_f, sigma_f, self.eps)


# --------------------------------------------------------------------------------------------------------------
# optional: LPIPS and rFID (packages and weights the user provides)
# --------------------------------------------------------------------------------------------------------------


def _rfid_message(where: str) -> str:
    return (
        "rFID needs the `unilip[fid]` extra (the `torch_fidelity` package) and the InceptionV3 weights "
        f"({RFID_INCEPTION_FILE}) on disk at {where}; nothing is downloaded"
    )


def rfid_metric(weights_path: str | os.PathLike[str] | None = None) -> RFID:
    """rFID with torch-fidelity's InceptionV3 (2048-d pool features), from a weights file on disk only.

    Args:
        weights_path: the weights file; default ``<torch hub dir>/checkpoints/weights-inception-2015-12-05-6726825d.pth``.

    Raises:
        UniLIPError: ``torch_fidelity`` is not installed, or the weights file is not there.
    """
    path = Path(weights_path).expanduser() if weights_path is not None else Path(torch.hub.get_dir()) / "checkpoints" / RFID_INCEPTION_FILE
    missing = missing_modules("torch_fidelity")
    if missing:
        raise UniLIPError(f"{_rfid_message(str(path))} (not installed: {', '.join(missing)})")
    if not path.is_file():
        raise UniLIPError(f"{_rfid_message(str(path))} (no such file)")
    return RFID(path)


class RFID:
    """Accumulates InceptionV3 features of real and reconstructed images (B, 3, H, W) in [0, 1]; returns FID.

    Images are quantised to uint8 by rounding (the extractor's input type) and resized by the extractor itself
    (TF1-style bilinear to 299). The official evaluation rounds reconstructions but truncates real images; we
    round both, so values can differ from it in the last digits.
    """

    def __init__(self, weights: Path):
        from torch_fidelity.feature_extractor_inceptionv3 import (
            FeatureExtractorInceptionV3,
        )

        self.extractor = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(weights))
        self.extractor.eval().requires_grad_(False)
        self.frechet = FeatureFrechet()

    @torch.no_grad()
    def _features(self, images: torch.Tensor) -> torch.Tensor:
        u8 = (images.clamp(0, 1) * 255).round().to(torch.uint8)  # (B, 3, H, W)
        return self.extractor(u8)[0]  # (B, 2048)

    def update(self, real: torch.Tensor, fake: torch.Tensor) -> None:
        """Add one batch of real and one of reconstructed images."""
        self.frechet.update(self._features(real), self._features(fake))

    def compute(self) -> float:
        """rFID of everything accumulated."""
        return self.frechet.compute()
