"""canstyle: CAN paintings, super-resolution and Gatys style transfer.

Heavy modules (torch models) are imported lazily so that ``canstyle --help``
and ``import canstyle`` stay fast.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "stylize": "canstyle.nst.stylize",
    "StyleTransfer": "canstyle.nst.stylize",
    "StylizeOptions": "canstyle.nst.stylize",
    "upscale": "canstyle.sr.upscaler",
    "Upscaler": "canstyle.sr.upscaler",
    "generate": "canstyle.can.generate",
    "CanGenerator": "canstyle.can.generate",
    "Pipeline": "canstyle.pipeline",
    "PipelineOutput": "canstyle.pipeline",
    "Progress": "canstyle.progress",
    "CanstyleError": "canstyle.errors",
    "load_image": "canstyle.imageio",
    "save_image": "canstyle.imageio",
}

__all__ = ["__version__", *_LAZY]


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})  # the lazy names too, for tab completion


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'canstyle' has no attribute {name!r}")
