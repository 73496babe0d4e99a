"""PSNR and SSIM on the luma (Y) channel, as super-resolution papers report them.

Y is ITU-R BT.601 "studio swing" luma on the 0-255 scale (MATLAB ``rgb2ycbcr``):
``Y = 16 + 65.481 R + 128.553 G + 24.966 B`` with R, G, B in [0, 1]. ``shave``
pixels are dropped at every border before comparing. SSIM is Wang et al. (2004)
with an 11x11 Gaussian window (sigma 1.5), K1 = 0.01, K2 = 0.03, L = 255, over
"valid" window positions only, averaged: the usual SR-benchmark definition.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

_Y_WEIGHTS = (65.481, 128.553, 24.966)


def rgb_to_y(img: torch.Tensor) -> torch.Tensor:
    """Nx3xHxW RGB in [0, 1] -> Nx1xHxW BT.601 luma in [16, 235], float64."""
    img = img.double()
    w = torch.tensor(_Y_WEIGHTS, dtype=torch.float64, device=img.device).view(1, 3, 1, 1)
    return 16.0 + (img * w).sum(dim=1, keepdim=True)


def _shave(x: torch.Tensor, shave: int) -> torch.Tensor:
    if shave <= 0:
        return x
    return x[..., shave:-shave, shave:-shave]


def _prepare(a: torch.Tensor, b: torch.Tensor, shave: int) -> tuple[torch.Tensor, torch.Tensor]:
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {tuple(a.shape)} vs {tuple(b.shape)}")
    if a.dim() == 3:
        a, b = a[None], b[None]
    if a.shape[1] == 3:
        a, b = rgb_to_y(a), rgb_to_y(b)
    else:
        a, b = a.double() * 255.0, b.double() * 255.0  # already single-channel [0, 1]
    a, b = _shave(a, shave), _shave(b, shave)
    if a.shape[-1] < 1 or a.shape[-2] < 1:
        raise ValueError(f"nothing left to compare after shaving {shave} px")
    return a, b


def psnr_y(a: torch.Tensor, b: torch.Tensor, shave: int = 0) -> float:
    """PSNR in dB between two RGB (or Y) images in [0, 1], on Y at the 0-255 scale."""
    ya, yb = _prepare(a, b, shave)
    mse = float(((ya - yb) ** 2).mean())
    return math.inf if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


def gaussian_1d(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    g = gaussian_1d(size, sigma)
    return torch.outer(g, g)


def ssim_y(a: torch.Tensor, b: torch.Tensor, shave: int = 0) -> float:
    """Mean SSIM between two RGB (or Y) images in [0, 1], on Y at the 0-255 scale."""
    ya, yb = _prepare(a, b, shave)
    g = gaussian_1d().to(ya.device)
    if min(ya.shape[-2:]) < g.numel():
        raise ValueError("SSIM needs at least 11x11 pixels after shaving")
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2

    def blur(x: torch.Tensor) -> torch.Tensor:
        # The 2-D Gaussian is separable; two 1-D passes are 5x cheaper in float64.
        # "valid" padding: only windows fully inside the image count.
        return F.conv2d(F.conv2d(x, g.view(1, 1, -1, 1)), g.view(1, 1, 1, -1))

    mu_a, mu_b = blur(ya), blur(yb)
    var_a = blur(ya * ya) - mu_a**2
    var_b = blur(yb * yb) - mu_b**2
    cov = blur(ya * yb) - mu_a * mu_b
    num = (2 * mu_a * mu_b + c1) * (2 * cov + c2)
    den = (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
    return float((num / den).mean())
