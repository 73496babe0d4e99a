"""Memorisation check: is any CAN sample a near-copy of a training painting?

Each sample's nearest training painting is found in the judge's feature space (the hidden
layer that KID also uses). Those distances are compared with the real-to-real ones: each
held-out painting's distance to its nearest painting in the judge's training split. A CAN
that copied paintings would put samples much closer to a painting than paintings are to
each other. The closest sample/painting pairs are returned as a picture to look at.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:
    from canstyle.can.evaluate import Judged


def nearest(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For each row of ``a``, the Euclidean distance to and the index of its nearest row of ``b``."""
    d = torch.cdist(a.double(), b.double())
    dist, idx = d.min(1)
    return dist.float(), idx


def memorisation(j: Judged, k: int = 8) -> tuple[dict[str, Any], list[tuple[int, int]]]:
    """Distance statistics and the ``k`` closest (sample index, painting position) pairs.

    A painting position indexes ``j.sel``; every painting (the judge's train and held-out split)
    is a candidate, since the CAN trained on all of them.
    """
    from canstyle.can.evaluate import split

    tr, held = split(j.sel, j.opts.holdout, j.opts.seed)  # the order of train_feats / held_feats
    _, hf = j.judge(j.feat(j.fake))
    _, ht = j.judge(j.judge.train_feats)
    _, hh = j.judge(j.judge.held_feats)
    d_fake, idx = nearest(hf, torch.cat([ht, hh]))
    d_real, _ = nearest(hh, ht)
    positions = np.concatenate([tr, held])
    order = torch.argsort(d_fake)[:k]
    pairs = [(int(i), int(positions[int(idx[i])])) for i in order]
    p5 = float(torch.quantile(d_real, 0.05))
    stats = {
        "n_samples": len(d_fake), "n_real_pairs": len(d_real),
        "fake_to_train": _quantiles(d_fake), "real_to_real": _quantiles(d_real),
        # under no copying, about 5 % of samples fall below the reals' 5th percentile
        "fake_below_real_p5": float((d_fake < p5).float().mean()),
        "closest_ratio": float(d_fake.min() / d_real.min()),
        "closest": [{"sample_seed": i, "painting": _name(j, p), "distance": float(d_fake[i])} for i, p in pairs],
    }
    return stats, pairs


def _quantiles(d: torch.Tensor) -> dict[str, float]:
    q = torch.quantile(d, torch.tensor([0.0, 0.05, 0.5]))
    return {"min": float(q[0]), "p5": float(q[1]), "median": float(q[2]), "mean": float(d.mean())}


def _name(j: Judged, pos: int) -> str:
    return f"{j.sel.classes[int(j.sel.labels[pos])]} #{int(j.sel.indices[pos])}"


def pairs_sheet(j: Judged, pairs: list[tuple[int, int]], height: int = 128) -> torch.Tensor:
    """One row per pair: the sample, then its nearest painting's centre view."""
    from canstyle.can.evaluate import center_views
    from canstyle.imageops import contact_sheet

    rows = []
    for i, pos in pairs:
        real = center_views(j.cache, j.sel, np.array([pos]), j.opts.image_size)
        rows.append([j.fake[i : i + 1], real])
    return contact_sheet(rows, height=height)
