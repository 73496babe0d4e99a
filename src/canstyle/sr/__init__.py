"""Super-resolution: waifu2x x2 networks (upconv_7, CUNet) read from ncnn files.

``upscale(image, scale=2)`` is the one-shot API the pipeline calls; ``Upscaler``
keeps a loaded network for repeated calls. Both are imported lazily.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "upscale": "canstyle.sr.upscaler",
    "Upscaler": "canstyle.sr.upscaler",
    "upscale_alpha": "canstyle.sr.upscaler",
    "MODELS": "canstyle.sr.zoo",
    "DEFAULT_MODEL": "canstyle.sr.zoo",
    "psnr_y": "canstyle.sr.metrics",
    "ssim_y": "canstyle.sr.metrics",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'canstyle.sr' has no attribute {name!r}")
