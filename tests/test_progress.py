"""The CLI's progress display: a bar on a terminal, plain lines everywhere else."""

import io

from canstyle.progress import Progress, TqdmProgress


def test_non_terminal_gets_plain_lines_not_carriage_returns():
    buf = io.StringIO()
    with TqdmProgress("stylize", stream=buf, interval=3600) as bar:
        for i in range(1, 11):
            bar(Progress("stylize", i, 10, 1, 3, (36, 64), 0.25))
    out = buf.getvalue()
    assert "\r" not in out
    lines = out.splitlines()
    # the first step, then nothing within the interval until the last step
    assert lines == ["stylize 1/10 (10%) scale 2/3 64x36 loss 0.25", "stylize 10/10 (100%) scale 2/3 64x36 loss 0.25"]


def test_non_terminal_prints_each_new_stage_and_the_last_unprinted_step():
    buf = io.StringIO()
    with TqdmProgress("create", stream=buf, interval=3600) as bar:
        bar(Progress("generate", 1, 4))
        bar(Progress("generate", 2, 4))
        bar(Progress("upscale", 1, 0))
        bar(Progress("upscale", 7, 0))
    assert buf.getvalue().splitlines() == ["generate 1/4 (25%)", "upscale 1", "upscale 7"]


def test_disabled_prints_nothing():
    buf = io.StringIO()
    with TqdmProgress("train", disable=True, stream=buf) as bar:
        bar(Progress("train", 5, 10))
    assert buf.getvalue() == ""
