"""Image operations shared by every stage: resizing, sample grids and contact sheets."""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from canstyle.errors import CanstyleError

# Float images may overshoot [0, 1] a little after resampling; far outside it they are 0-255 data.
_SLACK = 0.5


def check_image(x: object, what: str = "image", channels: tuple[int, ...] = (1, 3),
                batch: bool = False) -> torch.Tensor:
    """``x`` as a float32 N x C x H x W tensor in [0, 1] (a C x H x W tensor gets N = 1), or a clear
    error for what would otherwise give a silent wrong result: a uint8 or 0-255 tensor, NaN or
    infinite pixels, a batch where one image is meant (unless ``batch``), other channel counts."""
    if not isinstance(x, torch.Tensor):
        hint = ": pass its .rgb" if isinstance(getattr(x, "rgb", None), torch.Tensor) else \
            " (canstyle.load_image(path).rgb reads a file)"
        raise TypeError(f"{what}: expected a 1x3xHxW float tensor in [0, 1], got {type(x).__name__}{hint}")
    if x.device.type == "meta":
        raise CanstyleError(f"{what}: a meta tensor holds no pixels")
    t = x[None] if x.dim() == 3 else x
    if t.dim() != 4 or min(t.shape[-2:]) < 1:
        raise CanstyleError(f"{what}: expected a 1x3xHxW tensor, got shape {tuple(x.shape)}")
    if t.shape[0] != 1 and not batch:
        raise CanstyleError(f"{what}: a batch of {t.shape[0]}; pass one 1x3xHxW image at a time "
                            "(or a list of them)")
    if t.shape[1] not in channels:
        raise CanstyleError(f"{what}: {t.shape[1]} channels; expected {' or '.join(map(str, channels))}"
                            + (" (drop an alpha channel: x[:, :3])" if t.shape[1] == 4 else ""))
    if not t.is_floating_point():
        raise CanstyleError(f"{what}: a {str(t.dtype).replace('torch.', '')} tensor; expected floats in "
                            "[0, 1] (for 0-255 data: x.float() / 255)")
    t = t.detach().float()  # a tensor that requires grad is read, never differentiated through
    if not torch.isfinite(t).all():
        raise CanstyleError(f"{what}: contains NaN or infinite values")
    lo, hi = float(t.min()), float(t.max())
    if lo < -_SLACK or hi > 1 + _SLACK:
        fix = "(x + 1) / 2 for [-1, 1] data" if lo < -_SLACK and hi <= 1 + _SLACK else "x / 255 for 0-255 data"
        raise CanstyleError(f"{what}: values from {lo:g} to {hi:g}; expected [0, 1] ({fix})")
    return t.clamp(0, 1)


def resize_to(x: torch.Tensor, size: int | tuple[int, int], mode: str = "bicubic") -> torch.Tensor:
    """N x C x H x W resized to ``size`` (h, w), or a square for an int; clamped to [0, 1].

    Antialiased when either side shrinks, so a large photo (or a sample squeezed to a square)
    does not alias; enlarging uses the plain kernel.
    """
    hw = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if tuple(x.shape[-2:]) == hw:
        return x
    down = hw[0] < x.shape[-2] or hw[1] < x.shape[-1]
    return F.interpolate(x, size=hw, mode=mode, align_corners=False, antialias=down).clamp(0, 1)


def make_grid(images: torch.Tensor, nrow: int | None = None, pad: int = 2) -> torch.Tensor:
    """N x 3 x H x W -> 1 x 3 x H' x W' with white gutters."""
    n, c, h, w = images.shape
    nrow = nrow or math.ceil(math.sqrt(n))
    rows = math.ceil(n / nrow)
    grid = torch.ones(c, rows * (h + pad) + pad, nrow * (w + pad) + pad)
    for i in range(n):
        r, q = divmod(i, nrow)
        y, x = pad + r * (h + pad), pad + q * (w + pad)
        grid[:, y : y + h, x : x + w] = images[i]
    return grid[None]


def contact_sheet(rows: list[list[torch.Tensor]], height: int = 320, pad: int = 8) -> torch.Tensor:
    """Lay out rows of 1x3xHxW images (e.g. photo, art, result), each scaled to ``height``."""
    cells = [[resize_to(im[:, :3].float(), (height, max(1, round(im.shape[-1] * height / im.shape[-2]))),
                        "bilinear") for im in row] for row in rows]
    widths = [sum(c.shape[-1] for c in row) + pad * (len(row) + 1) for row in cells]
    sheet = torch.ones(1, 3, len(rows) * (height + pad) + pad, max(widths))
    for r, row in enumerate(cells):
        x, y = pad, pad + r * (height + pad)
        for c in row:
            sheet[..., y : y + height, x : x + c.shape[-1]] = c
            x += c.shape[-1] + pad
    return sheet
