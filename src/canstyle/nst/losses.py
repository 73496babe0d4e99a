"""Style-transfer losses.

Departure from Gatys et al.: each layer's loss is divided by the size of its
target (a relative squared error) and Gram matrices are averaged over
positions. The paper's raw sums change by orders of magnitude with image size
and with the network's input scale (Caffe 0-255 vs ImageNet-normalised), so one
set of default weights could not serve both VGG16 and VGG19 at every size.
"""

from __future__ import annotations

import torch

_EPS = 1e-8


class _Gram(torch.autograd.Function):
    """m @ m^T with a one-matmul backward.

    Autograd would differentiate both operands of bmm(m, m^T) separately and add
    the results (two large matmuls and an add over a C x H*W tensor); the
    symmetric form needs one: d/dm = (dG + dG^T) @ m.
    """

    @staticmethod
    def forward(ctx, m: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(m)
        return torch.bmm(m, m.transpose(1, 2))

    @staticmethod
    def backward(ctx, g: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        (m,) = ctx.saved_tensors
        return torch.bmm((g + g.transpose(1, 2)).to(m.dtype), m)


def gram(f: torch.Tensor) -> torch.Tensor:
    """N x C x H x W features -> N x C x C fp32 Gram matrix averaged over the H*W positions.

    fp32 features stay fp32. bf16 features (from bf16 autocast) are multiplied in
    bf16 with fp32 accumulation: upcasting them first adds no information, and
    the fp32 matmul plus its backward cost as much as the convolutions at 512 px.
    """
    n, c, h, w = f.shape
    with torch.autocast(f.device.type, enabled=False):
        m = f.reshape(n, c, h * w)
        if m.dtype not in (torch.float32, torch.bfloat16):
            m = m.float()
        return _Gram.apply(m).float() / (h * w)


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
