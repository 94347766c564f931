"""Tests for unilip.eval.metrics: checked against torchmetrics, scikit-image and closed-form Fréchet distances."""

from __future__ import annotations

import builtins
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity
from torchmetrics.functional.image import (
    peak_signal_noise_ratio,
    structural_similarity_index_measure,
)

from unilip.errors import UniLIPError
from unilip.eval import metrics
from unilip.eval.metrics import (
    FeatureFrechet,
    frechet_distance,
    frechet_distance_from_stats,
    lpips_metric,
    psnr,
    rfid_metric,
    ssim,
    ssim_official,
)


@pytest.fixture()
def pair() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 3, 32, 32, generator=g)
    y = (x + 0.1 * torch.randn(3, 3, 32, 32, generator=g)).clamp(0, 1)
    return x, y


# ---------------------------------------------------------------------------------------------- PSNR / SSIM


def test_psnr_matches_torchmetrics_per_image(pair):
    x, y = pair
    ours = psnr(x, y)
    assert ours.shape == (3,)
    ref = torch.stack([peak_signal_noise_ratio(x[i : i + 1], y[i : i + 1], data_range=1.0) for i in range(3)])
    torch.testing.assert_close(ours.float(), ref, rtol=1e-5, atol=1e-4)
    assert torch.isinf(psnr(x, x)).all()


def test_psnr_hand_computed():
    x = torch.zeros(1, 3, 4, 4)
    y = torch.full((1, 3, 4, 4), 0.1)  # mse 0.01 -> 20 dB
    assert psnr(x, y).item() == pytest.approx(20.0)


def _skimage_ssim(x: torch.Tensor, y: torch.Tensor, data_range: float) -> float:
    """The official evaluation's call: one (3, H, W) pair, channel-last, Gaussian window."""
    return structural_similarity(
        x.permute(1, 2, 0).double().numpy(), y.permute(1, 2, 0).double().numpy(),
        channel_axis=-1, data_range=data_range, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
    )


def test_ssim_matches_skimage_up_to_the_border(pair):
    x, y = pair
    ours = ssim(x, y)
    assert ours.shape == (3,) and ours.dtype == torch.float64
    _, full = structural_similarity_index_measure(
        x.double(), y.double(), sigma=1.5, kernel_size=11, data_range=1.0, return_full_image=True
    )
    for i in range(3):
        ref = _skimage_ssim(x[i], y[i], 1.0)
        # skimage averages the SSIM map without a 5-px border; on that interior the two maps are the same.
        assert full[i, :, 5:-5, 5:-5].mean().item() == pytest.approx(ref, abs=1e-9)
        # Over the whole image (torchmetrics, our ssim) the border term costs about 1e-3 at 32 px.
        assert ours[i].item() == pytest.approx(ref, abs=2e-3)
    assert torch.allclose(ssim(x, x), torch.ones(3, dtype=torch.float64))


def test_ssim_official_is_the_inflated_data_range_2(pair):
    x, y = pair
    official = ssim_official(x, y)
    assert torch.equal(official, ssim(x, y, data_range=2.0))
    assert (official > ssim(x, y)).all()  # the quirk inflates SSIM
    assert official[0].item() == pytest.approx(_skimage_ssim(x[0], y[0], 2.0), abs=2e-3)


def test_shape_errors():
    with pytest.raises(UniLIPError, match="same shape"):
        psnr(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 9))
    with pytest.raises(UniLIPError, match="11x11"):
        ssim(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 8))


# ---------------------------------------------------------------------------------------------- Fréchet


def _gaussian(mean, cov, n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).multivariate_normal(mean, cov, size=n)


def test_frechet_of_stats_closed_forms():
    d = 4
    eye = np.eye(d)
    assert frechet_distance_from_stats(np.zeros(d), eye, np.zeros(d), eye) == pytest.approx(0.0, abs=1e-10)
    mu2 = np.array([1.0, 2.0, 0.0, -1.0])
    assert frechet_distance_from_stats(np.zeros(d), eye, mu2, eye) == pytest.approx(float(mu2 @ mu2))
    # diagonal covariances: sum_i (sqrt(a_i) - sqrt(b_i))^2
    a, b = np.array([1.0, 4.0, 9.0, 0.25]), np.array([4.0, 1.0, 9.0, 1.0])
    expect = float(np.sum((np.sqrt(a) - np.sqrt(b)) ** 2))
    assert frechet_distance_from_stats(np.zeros(d), np.diag(a), np.zeros(d), np.diag(b)) == pytest.approx(expect)


def test_frechet_from_samples_approaches_closed_form():
    d, n = 3, 20000
    a = _gaussian(np.zeros(d), np.eye(d), n, 0)
    assert frechet_distance(a, _gaussian(np.zeros(d), np.eye(d), n, 1)) < 0.01
    shift = np.array([2.0, 0.0, -1.0])
    assert frechet_distance(a, _gaussian(shift, np.eye(d), n, 2)) == pytest.approx(5.0, abs=0.05)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)


def test_frechet_singular_covariance_is_handled():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(5, 16))  # 5 samples in 16 dims: rank-4 covariances
    b = rng.normal(size=(5, 16)) + 1.0
    fd = frechet_distance(a, b)
    assert np.isfinite(fd) and fd > 0


def test_frechet_input_errors():
    with pytest.raises(UniLIPError, match="N >= 2"):
        frechet_distance(np.zeros((1, 3)), np.zeros((4, 3)))
    with pytest.raises(UniLIPError, match="mismatched"):
        frechet_distance(np.zeros((4, 3)), np.zeros((4, 2)))


def test_feature_frechet_accumulates_like_the_one_shot_formula():
    rng = np.random.default_rng(0)
    real, fake = rng.normal(size=(50, 6)), rng.normal(size=(40, 6)) * 1.5 + 0.3
    fd = FeatureFrechet()
    for r, f in zip(np.array_split(real, 4), np.array_split(fake, 4)):
        fd.update(torch.from_numpy(r).float(), f)
    assert fd.count == (50, 40)
    assert fd.compute() == pytest.approx(frechet_distance(real.astype(np.float32), fake), rel=1e-5)
    fd.reset()
    tokens = rng.normal(size=(8, 5, 6))  # (B, N, D): averaged over tokens
    fd.update(tokens, tokens)
    assert fd.compute() == pytest.approx(0.0, abs=1e-8)
    with pytest.raises(UniLIPError, match="at least 2"):
        FeatureFrechet().compute()


# ---------------------------------------------------------------------------------------------- optional metrics


def _hide_modules(monkeypatch, *names: str) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a, **k: None if n in names else real(n, *a, **k))
    real_import = builtins.__import__

    def guarded(name, *args, **kw):
        if name.split(".")[0] in names:
            raise ModuleNotFoundError(name)
        return real_import(name, *args, **kw)

    monkeypatch.setattr(builtins, "__import__", guarded)


def test_lpips_without_packages_says_what_to_install(monkeypatch, tmp_path: Path):
    _hide_modules(monkeypatch, "lpips", "torchvision")
    with pytest.raises(UniLIPError, match=r"unilip\[lpips\].*nothing is downloaded.*not installed: lpips, torchvision"):
        lpips_metric(str(tmp_path))


def test_lpips_without_weights_names_the_file(monkeypatch, tmp_path: Path):
    # Pretend the packages are installed: the weights check must still refuse, never use random weights.
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a, **k: object() if n in ("lpips", "torchvision") else real(n, *a, **k))
    with pytest.raises(UniLIPError, match=r"vgg16-397923af\.pth.*no such file"):
        lpips_metric(str(tmp_path))


def test_rfid_without_package_or_weights(monkeypatch, tmp_path: Path):
    missing = tmp_path / "inception.pth"
    _hide_modules(monkeypatch, "torch_fidelity")
    with pytest.raises(UniLIPError, match=r"torch_fidelity.*nothing is downloaded"):
        rfid_metric(str(missing))
    monkeypatch.undo()
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a, **k: object() if n == "torch_fidelity" else real(n, *a, **k))
    with pytest.raises(UniLIPError, match=r"inception\.pth; nothing is downloaded \(no such file\)"):
        rfid_metric(str(missing))
