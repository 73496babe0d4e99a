"""Training view of a cache: style selection, world-size-invariant batches, multi-scale crops.

Every random choice for a step (which images, crops, flips, noise, augment
offsets) is drawn for the *global* batch from a generator seeded by
(seed, step); rank r then takes rows r, r+W, r+2W... This is what makes a
resumed run continue exactly, gives every rank different images and noise,
and makes N processes compute the same step as one process with the same
global batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F
from torch.utils.data.distributed import DistributedSampler

from canstyle.can.data import Cache
from canstyle.errors import CanstyleError


@dataclass
class Selection:
    indices: np.ndarray  # rows of the cache
    labels: np.ndarray  # class ids into ``classes``
    classes: list[str]


def select(cache: Cache, styles: list[str] | None = None, min_images: int = 0) -> Selection:
    """Keep the requested styles (all by default) that have at least ``min_images`` images."""
    names = cache.classes
    if styles:
        unknown = sorted(set(styles) - set(names))
        if unknown:
            raise CanstyleError(f"styles not in the data: {', '.join(unknown)} (have: {', '.join(names)})")
    counts = np.bincount(cache.labels, minlength=len(names))
    keep = [c for i, c in enumerate(names) if (not styles or c in styles) and counts[i] >= max(1, min_images)]
    if len(keep) < 2:
        raise CanstyleError(f"need at least 2 styles to train a style head, got {keep}")
    old = {c: i for i, c in enumerate(names)}
    new = {c: i for i, c in enumerate(keep)}  # keep is sorted because names is
    remap = np.full(len(names), -1, dtype=np.int64)
    for c in keep:
        remap[old[c]] = new[c]
    labels = remap[cache.labels]
    rows = np.nonzero(labels >= 0)[0]
    return Selection(indices=rows, labels=labels[rows], classes=keep)


def step_generator(seed: int, step: int, stream: int = 0) -> torch.Generator:
    """Independent, reproducible randomness for one step (and one purpose)."""
    return torch.Generator().manual_seed((seed * 1_000_003 + step * 7919 + stream * 104_729) % (2**63))


class Batches:
    """Per-rank image batches for step ``s``, via DistributedSampler's epoch permutation."""

    def __init__(self, cache: Cache, sel: Selection, size: int, global_batch: int, rank: int = 0,
                 world: int = 1, seed: int = 0, crop_min: float = 0.5) -> None:
        if global_batch % world:
            raise CanstyleError(f"--batch-size {global_batch} must be divisible by {world} processes")
        if len(sel.indices) < global_batch:
            raise CanstyleError(f"the data has {len(sel.indices)} images, fewer than --batch-size {global_batch}")
        if not 0 < crop_min <= 1:
            raise CanstyleError("--crop-min must be in (0, 1]")
        self.cache, self.sel, self.size = cache, sel, size
        self.rank, self.world, self.seed, self.crop_min = rank, world, seed, crop_min
        self.local = global_batch // world
        self.sampler = DistributedSampler(range(len(sel.indices)), num_replicas=world, rank=rank,
                                          shuffle=True, seed=seed, drop_last=True)
        self.steps_per_epoch = len(self.sampler) // self.local
        self._epoch, self._order = -1, []

    def positions(self, step: int) -> list[int]:
        epoch, pos = divmod(step, self.steps_per_epoch)
        if epoch != self._epoch:
            self.sampler.set_epoch(epoch)
            self._epoch, self._order = epoch, list(self.sampler)
        return self._order[pos * self.local : (pos + 1) * self.local]

    def get(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(images Bx3xSxS in [0, 1], labels B) for this rank at ``step`` (0-based)."""
        pos = self.positions(step)
        u = torch.rand(self.local * self.world, 4, generator=step_generator(self.seed, step, 1))
        u = u[self.rank :: self.world]
        imgs = [self.crop(self.cache.image(int(self.sel.indices[p])), u[j]) for j, p in enumerate(pos)]
        labels = torch.as_tensor(self.sel.labels[pos], dtype=torch.long)
        return torch.cat(imgs), labels

    def crop(self, arr: np.ndarray, u: torch.Tensor) -> torch.Tensor:
        return crop_square(arr, u, self.size, self.crop_min)


def crop_square(arr: np.ndarray, u: torch.Tensor, size: int, crop_min: float) -> torch.Tensor:
    """A square crop at a random scale and place (uniforms ``u``), resized to ``size``, maybe flipped.

    Crops between ``crop_min`` and all of the short side let a painting
    larger than the training size contribute its details, not just one
    down-scaled view (what the paper's 256x256 resize would do).
    """
    h, w = arr.shape[:2]
    side = max(1, round(min(h, w) * (crop_min + (1 - crop_min) * float(u[0]))))
    top = int(float(u[1]) * (h - side + 1))
    left = int(float(u[2]) * (w - side + 1))
    patch = torch.from_numpy(np.array(arr[top : top + side, left : left + side]))  # copy out of the read-only memmap
    x = patch.permute(2, 0, 1)[None].float().div_(255)
    if side != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=side > size, align_corners=False)
    return x.flip(3) if float(u[3]) < 0.5 else x


def global_noise(seed: int, step: int, global_batch: int, z_dim: int, rank: int, world: int) -> torch.Tensor:
    z = torch.randn(global_batch, z_dim, generator=step_generator(seed, step, 2))
    return z[rank::world]


AUGMENTS = ("translation", "cutout")


def parse_augment(text: str) -> tuple[str, ...]:
    ops = tuple(s.strip() for s in text.split(",") if s.strip() and s.strip() != "none")
    bad = [o for o in ops if o not in AUGMENTS]
    if bad:
        # Colour jitter is deliberately not offered: colour is a style cue, and D's
        # style head shares the augmented input, so it would learn colour-blind styles.
        raise CanstyleError(f"unknown --augment {', '.join(bad)}: choose from {', '.join(AUGMENTS)} or none")
    return ops


def augment_params(seed: int, step: int, stream: int, global_batch: int, rank: int, world: int) -> torch.Tensor:
    return torch.rand(global_batch, 4, generator=step_generator(seed, step, stream))[rank::world]


def diff_augment(x: torch.Tensor, ops: tuple[str, ...], u: torch.Tensor) -> torch.Tensor:
    """DiffAugment (Zhao et al. 2020), differentiable so G's gradient passes through.

    ``u`` holds per-image uniforms: translation uses columns 0-1 (up to 1/8 of
    the size, zero = grey padding), cutout columns 2-3 (a half-size square).
    """
    if not ops:
        return x
    n, _, h, w = x.shape
    u = u.to(x.device)
    if "translation" in ops:
        p = max(1, h // 8)
        ty = (u[:, 0] * (2 * p + 1)).long().clamp(max=2 * p) - p
        tx = (u[:, 1] * (2 * p + 1)).long().clamp(max=2 * p) - p
        xp = F.pad(x, (p, p, p, p))
        iy = (torch.arange(h, device=x.device)[None] + p - ty[:, None])[:, None, :, None]
        xp = xp.gather(2, iy.expand(n, x.shape[1], h, w + 2 * p))
        ix = (torch.arange(w, device=x.device)[None] + p - tx[:, None])[:, None, None, :]
        x = xp.gather(3, ix.expand(n, x.shape[1], h, w))
    if "cutout" in ops:
        ch, cw = h // 2, w // 2
        cy = (u[:, 2] * (h + 1 - ch % 2)).long()
        cx = (u[:, 3] * (w + 1 - cw % 2)).long()
        yy = torch.arange(h, device=x.device)[None, :, None]
        xx = torch.arange(w, device=x.device)[None, None, :]
        inside = ((yy - cy[:, None, None]).abs() < ch / 2) & ((xx - cx[:, None, None]).abs() < cw / 2)
        x = x * (~inside)[:, None].to(x.dtype)
    return x
