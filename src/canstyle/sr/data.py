"""Input listing and fine-tuning patches for the SR stage.

Training pairs are made on the fly: a random HR crop (random flip and 90-degree
rotation), downscaled x2 with antialiased bicubic (``torch``'s antialiased
bicubic follows PIL's filter, the one ``eval-sr`` uses) and rounded to 8 bits
like a real LR image. The network sees the whole LR patch with unpadded
convolutions, so the target is the HR centre its output covers: no padding
artefacts enter the loss.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from canstyle.errors import CanstyleError
from canstyle.imageio import IMAGE_SUFFIXES

log = logging.getLogger(__name__)


def list_images(inputs: Sequence[str | Path]) -> list[Path]:
    """Files as given, folders expanded (sorted, non-recursive); an error if nothing is found."""
    out: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            found = sorted(p for p in item.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            if not found:
                raise CanstyleError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in folder {item}")
            out.extend(found)
        elif item.exists():
            out.append(item)
        else:
            raise CanstyleError(f"no such file or folder: {item}")
    if not out:
        raise CanstyleError("no input images given")
    return out


def load_training_images(paths: Sequence[Path], min_side: int) -> list[torch.Tensor]:
    """3xHxW uint8 tensors (kept as bytes: a few hundred paintings fit in memory)."""
    from canstyle.imageio import load_image

    images = []
    for p in paths:
        rgb = load_image(p).rgb[0]
        if min(rgb.shape[-2:]) < min_side:
            log.warning("skipping %s: smaller than %d px", p, min_side)
            continue
        images.append(rgb.mul(255).round().to(torch.uint8))
    if not images:
        raise CanstyleError(f"no training image is at least {min_side}x{min_side} px")
    return images


def random_crops(images: Sequence[torch.Tensor], n: int, size: int, gen: torch.Generator) -> torch.Tensor:
    """n random size x size crops (images picked uniformly), randomly flipped/rotated, in [0, 1]."""
    out = []
    for _ in range(n):
        img = images[int(torch.randint(len(images), (1,), generator=gen))]
        h, w = img.shape[-2:]
        y = int(torch.randint(h - size + 1, (1,), generator=gen))
        x = int(torch.randint(w - size + 1, (1,), generator=gen))
        crop = img[:, y : y + size, x : x + size]
        k, flip = (int(v) for v in torch.randint(4, (2,), generator=gen))
        crop = torch.rot90(crop, k, dims=(1, 2))
        if flip % 2:
            crop = crop.flip(-1)
        out.append(crop)
    return torch.stack(out).float().div_(255)


def make_pairs(hr: torch.Tensor, offset: int, scale: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """(LR input, HR target) for a network that eats ``offset`` LR pixels per side."""
    lr = F.interpolate(hr, scale_factor=1 / scale, mode="bicubic", antialias=True, align_corners=False)
    lr = lr.clamp_(0, 1).mul_(255).round_().div_(255)
    m = offset * scale
    return lr, hr[..., m:-m, m:-m]
