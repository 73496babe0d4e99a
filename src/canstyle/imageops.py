"""Image operations shared by every stage: layout of contact sheets."""

from __future__ import annotations

import torch
from torch.nn import functional as F


def contact_sheet(rows: list[list[torch.Tensor]], height: int = 320, pad: int = 8) -> torch.Tensor:
    """Lay out rows of 1x3xHxW images (e.g. photo, art, result), each scaled to ``height``."""
    cells = [[F.interpolate(im[:, :3].float(), size=(height, max(1, round(im.shape[-1] * height / im.shape[-2]))),
                            mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)
              for im in row] for row in rows]
    widths = [sum(c.shape[-1] for c in row) + pad * (len(row) + 1) for row in cells]
    sheet = torch.ones(1, 3, len(rows) * (height + pad) + pad, max(widths))
    for r, row in enumerate(cells):
        x, y = pad, pad + r * (height + pad)
        for c in row:
            sheet[..., y : y + height, x : x + c.shape[-1]] = c
            x += c.shape[-1] + pad
    return sheet
