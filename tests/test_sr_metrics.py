"""PSNR and SSIM on Y against values worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from canstyle.sr.metrics import gaussian_window, psnr_y, rgb_to_y, ssim_y


def test_rgb_to_y_is_bt601_studio_swing() -> None:
    img = torch.tensor([0.0, 1.0]).view(1, 1, 1, 2).expand(1, 3, 1, 2)
    assert rgb_to_y(img).flatten().tolist() == pytest.approx([16.0, 235.0])
    red = torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1)
    assert float(rgb_to_y(red)) == pytest.approx(16 + 65.481)


def test_psnr_of_a_uniform_offset() -> None:
    # Every channel up by 10/255 moves Y by (65.481 + 128.553 + 24.966) * 10/255 = 2190/255
    # = 8.588235 on the 0-255 scale, so MSE = 73.75779 and PSNR = 10 log10(65025 / 73.75779).
    a = torch.full((1, 3, 8, 8), 0.3)
    b = a + 10 / 255
    assert psnr_y(a, b) == pytest.approx(29.45268, abs=1e-4)
    assert psnr_y(a, a) == math.inf


def test_psnr_shave_ignores_the_border() -> None:
    a = torch.rand(1, 3, 12, 12, generator=torch.Generator().manual_seed(0))
    b = a.clone()
    b[..., :2, :] = 0  # damage only the top two rows
    assert psnr_y(a, b, shave=2) == math.inf
    assert psnr_y(a, b, shave=1) < 40


def test_ssim_of_constant_images() -> None:
    # Flat images: variances and covariance vanish, so SSIM = (2ab + C1) / (a^2 + b^2 + C1)
    # with C1 = (0.01 * 255)^2 = 6.5025: (24000 + 6.5025) / (24400 + 6.5025) = 0.9836113.
    a = torch.full((1, 1, 16, 16), 100 / 255)
    b = torch.full((1, 1, 16, 16), 120 / 255)
    assert ssim_y(a, b) == pytest.approx(0.9836113, abs=1e-6)
    assert ssim_y(a, a) == pytest.approx(1.0)


def test_ssim_of_one_window_matches_the_formula() -> None:
    rng = np.random.default_rng(1)
    x, y = rng.uniform(0, 255, (11, 11)), rng.uniform(0, 255, (11, 11))
    g = np.exp(-((np.arange(11) - 5.0) ** 2) / (2 * 1.5**2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    mx, my = (w * x).sum(), (w * y).sum()
    vx, vy = (w * x * x).sum() - mx**2, (w * y * y).sum() - my**2
    cxy = (w * x * y).sum() - mx * my
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    expected = (2 * mx * my + c1) * (2 * cxy + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    got = ssim_y(torch.from_numpy(x / 255)[None, None], torch.from_numpy(y / 255)[None, None])
    assert got == pytest.approx(expected, abs=1e-10)
    assert float(gaussian_window().sum()) == pytest.approx(1.0)


def test_metrics_reject_mismatched_or_tiny_images() -> None:
    with pytest.raises(ValueError, match="shape"):
        psnr_y(torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 5))
    with pytest.raises(ValueError, match="11x11"):
        ssim_y(torch.zeros(1, 3, 12, 12), torch.zeros(1, 3, 12, 12), shave=2)
