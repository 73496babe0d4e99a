"""One progress record shared by every long-running stage.

Each long call takes ``callback: Callable[[Progress], None] | None``. The CLI's
tqdm bar and the web studio's live view are both just callbacks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch


@dataclass
class Progress:
    stage: str  # "stylize", "upscale", "train", ...
    step: int  # steps done in the whole call (1-based after the first step)
    total: int  # total steps planned for the whole call (0 = not known ahead, e.g. a stream)
    scale: int = 0  # index of the current scale (multi-scale stages)
    n_scales: int = 1
    size: tuple[int, int] = (0, 0)  # (height, width) being worked on
    loss: float | None = None
    losses: dict[str, float] = field(default_factory=dict)
    # Current image (1x3xHxW in [0, 1], CPU) when a preview was requested for this step.
    image: torch.Tensor | None = None


ProgressCallback = Callable[[Progress], None]


class TqdmProgress:
    """A tqdm bar driven by Progress records; use as a context manager."""

    def __init__(self, desc: str = "", disable: bool = False) -> None:
        from tqdm.auto import tqdm

        self._bar = tqdm(desc=desc, disable=disable, unit="it", dynamic_ncols=True)
        self._stage = desc

    def __call__(self, p: Progress) -> None:
        # Multi-stage work (the pipeline: generate, upscale, stylize) restarts the bar per stage.
        if p.stage != self._stage or p.step < self._bar.n:
            self._stage = p.stage
            self._bar.set_description(p.stage, refresh=False)
            self._bar.reset(total=p.total or None)  # also restarts the rate clock
        if self._bar.total != (p.total or None):
            self._bar.total = p.total or None
        self._bar.n = p.step
        post = {"scale": f"{p.scale + 1}/{p.n_scales} {p.size[1]}x{p.size[0]}"} if p.size != (0, 0) else {}
        if p.loss is not None:
            post["loss"] = f"{p.loss:.4g}"
        self._bar.set_postfix(post, refresh=False)
        self._bar.refresh()

    def __enter__(self) -> TqdmProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self._bar.close()
