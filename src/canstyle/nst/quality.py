"""How far a stylisation got, in units that hold at every size: the content and style fractions.

- content fraction = content loss of the result / content loss of the painting itself against
  the photo: 0 keeps all of the photo's structure, 1 keeps no more than an unrelated painting;
  noise scores above 1.
- style fraction = style loss of the result / style loss of the photo itself against the
  painting: the part of the gap in style statistics that is left.

Both are measured in fp32, at the result's size, with the painting analysed as ``stylize``
analyses it. ``bench/bench_nst_quality.py`` and the tests use them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from canstyle.nst.features import CONTENT_LAYERS, STYLE_LAYERS
from canstyle.nst.losses import content_loss, style_loss

if TYPE_CHECKING:
    from canstyle.nst.stylize import StyleTransfer, StylizeOptions


@torch.no_grad()
def fractions(engine: StyleTransfer, result: torch.Tensor, photo: torch.Tensor, painting: torch.Tensor,
              opts: StylizeOptions) -> dict[str, float]:
    """Content and style fractions of ``result`` (plus the raw losses), in fp32."""
    hw = tuple(result.shape[-2:])
    t = engine.targets(photo, [painting], [1.0], hw, round(max(hw) * opts.style_scale), torch.float32,
                       pair_scales=True)
    layers = tuple(dict.fromkeys(CONTENT_LAYERS + STYLE_LAYERS))
    f = engine._feats(result, layers, torch.float32)
    c_res, s_res = float(content_loss(f, t.content)), float(style_loss(f, t.grams))
    # t.content_scale / t.style_scale: the painting's own content loss, the photo's own style loss.
    return {"content_loss": c_res, "style_loss": s_res, "content": c_res / t.content_scale,
            "style": s_res / t.style_scale}
