"""Tile planning, and whole-image squeeze-excitation statistics for tiled CUNet.

Every network here is shift-equivariant (unpadded convolutions, stride-2 layers
on an even grid) except for the SE blocks' global channel means. Per-tile means
made CUNet tiles differ from the untiled result by up to 17/255 at tile seams.
``sync_se`` removes that: for each SE block in execution order it runs every
tile up to that block, sums the block's input over the positions the tile
"owns" (a partition of the untiled feature map), and fixes the block's mean to
the exact whole-image value. The final pass then matches untiled inference to
float rounding. The cost is a few partial forward passes, paid only when an
SE model actually needs more than one tile.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from canstyle.sr.models import SEBlock, SECollected

Box = tuple[int, int, int, int]  # y0, y1, x0, x1


def round_up(n: int, m: int) -> int:
    return -(-n // m) * m


def plan_tiles(h: int, w: int, tile: int, pad: int, multiple: int = 1) -> list[tuple[Box, Box]]:
    """(core, context) boxes in input pixels; cores cover the image exactly once.

    Cores and contexts start on multiples of ``multiple`` so stride-2 layers see
    the same pixel grid in every tile as in the whole image.
    """
    if tile <= 0 or (h <= tile and w <= tile):
        return [((0, h, 0, w), (0, h, 0, w))]
    tile, pad = round_up(tile, multiple), round_up(pad, multiple)
    out = []
    for y0 in range(0, h, tile):
        for x0 in range(0, w, tile):
            y1, x1 = min(y0 + tile, h), min(x0 + tile, w)
            ctx = (max(y0 - pad, 0), min(y1 + pad, h), max(x0 - pad, 0), min(x1 + pad, w))
            out.append(((y0, y1, x0, x1), ctx))
    return out


def se_blocks(net: nn.Module) -> list[SEBlock]:
    """SE blocks in execution order (their registration order in CUNet)."""
    return [m for m in net.modules() if isinstance(m, SEBlock)]


def clear_se(net: nn.Module) -> None:
    for b in se_blocks(net):
        b.fixed_mean, b.collect = None, None


def _se_input_rows(net: nn.Module, side: int) -> list[int]:
    """Rows of each SE block's input map for a small side x side input (a cheap real run)."""
    blocks = se_blocks(net)
    p = next(net.parameters())
    rows = []
    try:
        for k, block in enumerate(blocks):
            for j, other in enumerate(blocks):
                other.collect = None  # blocks before k get dummy means: only shapes matter here
                other.fixed_mean = torch.zeros(1, other.fc1.in_channels, 1, 1, device=p.device) if j < k else None
            block.collect = (0, 0, 0, 0)
            try:
                with torch.inference_mode():
                    net(torch.zeros(1, 3, side, side, device=p.device, dtype=p.dtype))
                raise RuntimeError("SE block was not reached")
            except SECollected as e:
                rows.append(e.shape[0])
    finally:
        clear_se(net)
    return rows


def se_strides(net: nn.Module) -> list[int]:
    """Input pixels between neighbouring positions of each SE block's input map (cached)."""
    strides = getattr(net, "_se_strides", None)
    if strides is None:
        small, big = _se_input_rows(net, 40), _se_input_rows(net, 44)  # 40 px: CUNet's smallest input
        strides = [4 // (b - a) for a, b in zip(small, big, strict=True)]
        net._se_strides = strides  # type: ignore[assignment]
    return strides


def _owned(core: Box, ctx: Box, h: int, w: int, s: int) -> tuple[int, int | None, int, int | None]:
    """The part of a tile's SE map that it owns, in the map's own indices (None = to the end).

    Untiled map row r sits at input row s*r (+ a constant), and a tile's map starts at
    untiled row ya/s, so tiles owning rows [y0/s, y1/s) partition the untiled map.
    """
    (y0, y1, x0, x1), (ya, _, xa, _) = core, ctx
    return (0 if y0 == 0 else y0 // s - ya // s, None if y1 == h else y1 // s - ya // s,
            0 if x0 == 0 else x0 // s - xa // s, None if x1 == w else x1 // s - xa // s)


def sync_se(net: nn.Module, run: Callable[[torch.Tensor], torch.Tensor], padded: torch.Tensor,
            tiles: list[tuple[Box, Box]], offset: int) -> None:
    """Fix every SE block's mean to its untiled value (see the module docstring)."""
    blocks = se_blocks(net)
    if not blocks or len(tiles) < 2:
        return
    h, w = padded.shape[-2] - 2 * offset, padded.shape[-1] - 2 * offset
    for block, s in zip(blocks, se_strides(net), strict=True):
        total: torch.Tensor | float = 0.0
        count, full = 0, (0, 0)
        for core, ctx in tiles:
            ya, yb, xa, xb = ctx
            block.collect = _owned(core, ctx, h, w, s)  # type: ignore[assignment]
            try:
                run(padded[..., ya : yb + 2 * offset, xa : xb + 2 * offset])
                raise RuntimeError("SE block was not reached")
            except SECollected as e:
                total, count = total + e.sums, count + e.count
                full = (max(full[0], ya // s + e.shape[0]), max(full[1], xa // s + e.shape[1]))
        block.collect = None
        if count != full[0] * full[1]:
            raise RuntimeError(f"SE tiles covered {count} of {full[0] * full[1]} positions")
        block.fixed_mean = total / count  # type: ignore[assignment]
