"""The distances ``canstyle evaluate`` reports, on features or pixels it is handed: normalised
style entropy, KID, a style-balanced pick of reals, and nearest-neighbour pixel distance."""

from __future__ import annotations

import math

import torch

from canstyle.imageops import resize_to


def norm_entropy(p: torch.Tensor) -> torch.Tensor:
    k = p.shape[-1]
    return (-(p * p.clamp_min(1e-12).log()).sum(-1) / math.log(k)).clamp_min(0)


def kid(x: torch.Tensor, y: torch.Tensor, subsets: int = 50, size: int = 100, seed: int = 0
        ) -> tuple[float, float]:
    """Kernel Inception Distance (Binkowski et al. 2018): unbiased MMD^2 with the cubic
    polynomial kernel, averaged over random subsets; (mean, std).

    Departure from the paper: ``evaluate`` passes features of the judge (VGG16 style statistics
    and its head's hidden layer), not Inception-v3 pool features, which are not shipped offline
    and were trained on photos; so values are comparable between canstyle runs, not with
    published KIDs."""
    g = torch.Generator().manual_seed(seed)
    m = min(size, len(x), len(y))
    if m < 2:
        return float("nan"), float("nan")
    d = x.shape[1]
    vals = []
    for _ in range(subsets):
        a = x[torch.randperm(len(x), generator=g)[:m]].double()
        b = y[torch.randperm(len(y), generator=g)[:m]].double()
        kxx, kyy, kxy = ((a @ a.T) / d + 1) ** 3, ((b @ b.T) / d + 1) ** 3, ((a @ b.T) / d + 1) ** 3
        off = (kxx.sum() - kxx.diag().sum() + kyy.sum() - kyy.diag().sum()) / (m * (m - 1))
        vals.append(float(off - 2 * kxy.mean()))
    t = torch.tensor(vals)
    return float(t.mean()), float(t.std())


def balanced_pick(labels: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Indices holding equally many items of every style present, as many as the smallest style
    has, drawn without replacement with a fixed seed."""
    g = torch.Generator().manual_seed(seed)
    styles = labels.unique()
    m = min(int((labels == c).sum()) for c in styles)
    picks = [torch.nonzero(labels == c).flatten() for c in styles]
    return torch.cat([p[torch.randperm(len(p), generator=g)[:m]] for p in picks]).sort().values


def nn_distance(samples: torch.Tensor, train: torch.Tensor, side: int = 32) -> torch.Tensor:
    """Per-sample RMS pixel distance (in [0, 1] units) to the closest training painting."""
    a = resize_to(samples, side, "bilinear").flatten(1)
    b = resize_to(train, side, "bilinear").flatten(1)
    d2 = torch.cdist(a.double(), b.double()).pow(2) / a.shape[1]
    return d2.min(1).values.sqrt().float()
