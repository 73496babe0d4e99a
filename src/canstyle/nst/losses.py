"""Style-transfer losses.

Departure from Gatys et al.: each layer's loss is divided by the size of its
target (a relative squared error) and Gram matrices are averaged over
positions. The paper's raw sums change by orders of magnitude with image size
and with the network's input scale (Caffe 0-255 vs ImageNet-normalised), so one
set of default weights could not serve both VGG16 and VGG19 at every size.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

_EPS = 1e-8


def gram(f: torch.Tensor) -> torch.Tensor:
    """N x C x H x W features -> N x C x C Gram matrix averaged over the H*W positions.

    Always computed in fp32 (outside autocast): the sums over hundreds of
    thousands of positions lose too much in bf16.
    """
    n, c, h, w = f.shape
    with torch.autocast(f.device.type, enabled=False):
        m = f.float().reshape(n, c, h * w)
        return torch.bmm(m, m.transpose(1, 2)) / (h * w)


def relative_mse(x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """sum((x - t)^2) / sum(t^2): scale-free, so layers and networks are comparable."""
    with torch.autocast(x.device.type, enabled=False):
        x, target = x.float(), target.float()
        return (x - target).pow(2).sum() / (target.pow(2).sum() + _EPS)


def content_loss(feats: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]) -> torch.Tensor:
    return sum((relative_mse(feats[k], t) for k, t in targets.items()), torch.zeros(()))  # type: ignore[return-value]


def style_loss(feats: dict[str, torch.Tensor], target_grams: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean over style layers of the relative Gram error (each layer weighted equally, as in Gatys)."""
    total = sum((relative_mse(gram(feats[k]), g) for k, g in target_grams.items()), torch.zeros(()))
    return total / max(len(target_grams), 1)  # type: ignore[return-value]


def tv_loss(x: torch.Tensor) -> torch.Tensor:
    """Mean squared difference between neighbouring pixels (image in [0, 1])."""
    dx = x[..., :, 1:] - x[..., :, :-1]
    dy = x[..., 1:, :] - x[..., :-1, :]
    return dx.pow(2).mean() + dy.pow(2).mean()


def blend_grams(grams: list[dict[str, torch.Tensor]], weights: list[float]) -> dict[str, torch.Tensor]:
    """Weighted mean of several styles' Grams.

    Matching the blended Gram equals minimising the weighted sum of per-style
    squared errors up to a constant, at the cost of one comparison per layer.
    """
    total = float(sum(weights))
    return {k: sum(w / total * g[k] for g, w in zip(grams, weights, strict=True)) for k in grams[0]}  # type: ignore[misc]


def resize_to(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    down = size[0] < x.shape[-2]
    return F.interpolate(x, size=size, mode="bicubic", align_corners=False, antialias=down).clamp(0, 1)
