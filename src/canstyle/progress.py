"""One progress record shared by every long-running stage.

Each long call takes ``callback: Callable[[Progress], None] | None``. The CLI's
tqdm bar and the web studio's live view are both just callbacks.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

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
    """A tqdm bar driven by Progress records; use as a context manager.

    When stderr is not a terminal (a log file, ``nohup``, CI) a bar would write one endless
    line of carriage returns, so it prints a plain line instead: at most every ``interval``
    seconds, at each new stage (the last line of the one before first) and at the end.
    """

    def __init__(self, desc: str = "", disable: bool = False, interval: float = 10.0,
                 stream: TextIO | None = None, unit: str = "it") -> None:
        self._stream = stream if stream is not None else sys.stderr
        self._stage, self._step = desc, 0
        usable = self._stream is not None and not getattr(self._stream, "closed", False)
        self._lines = usable and not disable and not _is_tty(self._stream)
        self._interval, self._last_line = interval, -math.inf
        self._printed, self._pending = "", ""
        self._bar: Any = None
        if usable and not self._lines:
            from tqdm.auto import tqdm

            self._bar = tqdm(desc=desc, disable=disable, unit=unit, dynamic_ncols=True, file=self._stream)

    def __call__(self, p: Progress) -> None:
        post: dict[str, str] = {}
        if p.size != (0, 0):
            wxh = f"{p.size[1]}x{p.size[0]}"
            post = {"scale": f"{p.scale + 1}/{p.n_scales} {wxh}"} if p.n_scales > 1 else {"size": wxh}
        if p.loss is not None:
            post["loss"] = f"{p.loss:.4g}"
        # A new stage (the pipeline: generate, upscale, stylize) or a step going back (the next
        # photo) restarts the bar, or prints the line it has pending.
        restart = p.stage != self._stage or p.step < self._step
        self._stage, self._step = p.stage, p.step
        if self._bar is not None:
            self._update_bar(p, post, restart)
        elif self._lines:
            self._line(p, post, restart)

    def _update_bar(self, p: Progress, post: dict[str, str], restart: bool) -> None:
        if restart:
            self._bar.set_description(p.stage, refresh=False)
            self._bar.reset(total=p.total or None)  # also restarts the rate clock
        if self._bar.total != (p.total or None):
            self._bar.total = p.total or None
        self._bar.n = p.step
        self._bar.set_postfix(post, refresh=False)
        self._bar.refresh()

    def _line(self, p: Progress, post: dict[str, str], restart: bool) -> None:
        done = f"{p.step}/{p.total} ({100 * p.step // p.total}%)" if p.total else f"{p.step}"
        text = " ".join([p.stage, done, *(f"{k} {v}" for k, v in post.items())])
        if restart:
            self._flush()
        now = time.monotonic()
        if restart or now - self._last_line >= self._interval or (p.total and p.step >= p.total):
            self._last_line, self._pending = now, text
            self._flush()
        else:
            self._pending = text  # printed later if nothing newer is

    def _flush(self) -> None:
        if self._pending and self._pending != self._printed:
            print(self._pending, file=self._stream, flush=True)
            self._printed = self._pending
        self._pending = ""

    def __enter__(self) -> TqdmProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.close()
        else:
            self._flush()


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # an odd stream
        return False
