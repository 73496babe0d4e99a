"""The CLI's progress display: a bar on a terminal, plain lines everywhere else."""

import io

import pytest

from canstyle import progress
from canstyle.progress import Progress, TqdmProgress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_non_terminal_gets_plain_lines_not_carriage_returns() -> None:
    buf = io.StringIO()
    with TqdmProgress("stylize", stream=buf, interval=3600) as bar:
        for i in range(1, 11):
            bar(Progress("stylize", i, 10, 1, 3, (36, 64), 0.25))
        bar(Progress("stylize", 10, 10, 1, 3, (36, 64), 0.25))  # the end reported twice
    out = buf.getvalue()
    assert "\r" not in out
    lines = out.splitlines()
    # the first step, then nothing within the interval until the last step, once
    assert lines == ["stylize 1/10 (10%) scale 2/3 64x36 loss 0.25", "stylize 10/10 (100%) scale 2/3 64x36 loss 0.25"]


def test_one_scale_shows_its_size_only() -> None:
    buf = io.StringIO()
    with TqdmProgress("train", stream=buf) as bar:
        bar(Progress("train", 3, 30, size=(64, 64), loss=2.5))
    assert buf.getvalue() == "train 3/30 (10%) size 64x64 loss 2.5\n"


def test_non_terminal_prints_each_stage_with_its_last_line() -> None:
    buf = io.StringIO()
    with TqdmProgress("create", stream=buf, interval=3600) as bar:
        bar(Progress("generate", 1, 4))
        bar(Progress("generate", 2, 4))
        bar(Progress("upscale", 1, 0))
        bar(Progress("upscale", 7, 0))
        bar(Progress("upscale", 2, 0))  # the next image starts again: a restart
        bar(Progress("upscale", 3, 0))
    assert buf.getvalue().splitlines() == ["generate 1/4 (25%)", "generate 2/4 (50%)", "upscale 1", "upscale 7",
                                           "upscale 2", "upscale 3"]


def test_non_terminal_prints_once_per_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter([0.0, 4.0, 9.0, 10.5, 12.0, 25.0])
    monkeypatch.setattr(progress.time, "monotonic", lambda: next(clock))
    buf = io.StringIO()
    with TqdmProgress("train", stream=buf, interval=10) as bar:
        for step in range(1, 7):
            bar(Progress("train", step, 100))
    assert buf.getvalue().splitlines() == ["train 1/100 (1%)", "train 4/100 (4%)", "train 6/100 (6%)"]


def test_terminal_gets_a_bar() -> None:
    term = Terminal()
    with TqdmProgress("stylize", stream=term) as bar:
        bar(Progress("stylize", 5, 10))
    assert "\r" in term.getvalue() and "5/10" in term.getvalue()


@pytest.mark.parametrize("closed", [False, True])
def test_disabled_or_closed_stream_prints_nothing(closed: bool) -> None:
    buf = io.StringIO()
    if closed:
        buf.close()
    with TqdmProgress("train", disable=not closed, stream=buf) as bar:
        bar(Progress("train", 5, 10))
    assert closed or buf.getvalue() == ""
