"""The Python API refuses what would give a silent wrong result: a batch where one image is
meant, uint8 or 0-255 data, NaN pixels, options of the wrong type or choice, a pooling the
engine was not built with, seeds that torch would fold onto smaller ones, a runaway style_size."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from canstyle.errors import CanstyleError
from canstyle.nst.plan import StylizeOptions

FAST = {"size": 32, "iterations": 1, "coarse_iterations": 0}


@pytest.fixture(scope="module")
def engine():  # type: ignore[no-untyped-def]
    from canstyle.nst.stylize import StyleTransfer

    return StyleTransfer("vgg16", "cpu", "fp32")


@pytest.mark.parametrize("content, message", [
    (torch.rand(2, 3, 40, 40), "a batch of 2"),
    ((torch.rand(1, 3, 40, 40) * 255).to(torch.uint8), "uint8"),
    (torch.rand(1, 3, 40, 40) * 255, "expected \\[0, 1\\]"),
    (torch.full((1, 3, 40, 40), float("nan")), "NaN"),
    (torch.rand(1, 4, 40, 40), "drop an alpha channel"),
    (torch.rand(40, 40), "1x3xHxW"),
])
def test_content_that_would_paint_wrongly_is_refused(engine, content: torch.Tensor, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(CanstyleError, match=message):
        engine(content, torch.rand(1, 3, 40, 40), **FAST)


def test_styles_and_arguments_of_the_wrong_kind(engine) -> None:  # type: ignore[no-untyped-def]
    c = torch.rand(1, 3, 40, 40)
    with pytest.raises(CanstyleError, match="style 2: contains NaN"):
        engine(c, [torch.rand(1, 3, 40, 40), torch.full((1, 3, 40, 40), float("inf"))], **FAST)
    with pytest.raises(TypeError, match="got ndarray"):
        engine(np.zeros((40, 40, 3)), torch.rand(1, 3, 40, 40), **FAST)
    with pytest.raises(TypeError, match="options must be a StylizeOptions"):
        engine(c, torch.rand(1, 3, 40, 40), options={"size": 32})  # type: ignore[arg-type]
    with pytest.raises(CanstyleError, match="built with max pooling"):
        engine(c, torch.rand(1, 3, 40, 40), pooling="avg", **FAST)
    grey = torch.rand(1, 1, 40, 40)  # grey works, with every colour option
    assert engine(c, grey, preserve_color="histogram", **FAST).shape == (1, 3, 32, 32)
    assert engine(grey, c, **FAST).shape == (1, 3, 32, 32)


@pytest.mark.parametrize("override, message", [
    ({"size": "512"}, "--size must be an integer"), ({"size": 32.7}, "--size must be an integer"),
    ({"iterations": 2.5}, "--iterations must be an integer"), ({"style_weight": "3"}, "must be a number"),
    ({"optimizer": "sgd"}, "--optimizer must be one of lbfgs, adam"),
    ({"preserve_color": "lum"}, "--preserve-color must be one of"), ({"loss_scale": "foo"}, "--loss-scale"),
    ({"pooling": "min"}, "--pooling must be one of"), ({"init": None}, "--init"), ({"size": True}, "integer"),
])
def test_options_are_checked_like_the_cli_checks_them(override: dict, message: str) -> None:
    with pytest.raises(CanstyleError, match=message):
        StylizeOptions().with_overrides(**override)


def test_seeds_beyond_32_bits_are_refused_not_folded() -> None:
    from canstyle.can.generate import check_seeds

    assert torch.equal(torch.randn(3, generator=torch.Generator().manual_seed(2**32)),
                       torch.randn(3, generator=torch.Generator().manual_seed(0)))  # why: torch keeps 32 bits
    assert check_seeds([np.int64(3), torch.tensor(4), 2**32 - 1]) == [3, 4, 2**32 - 1]
    assert check_seeds(torch.tensor([0, 1])) == [0, 1]
    for bad, message in (([2**32], "between 0 and 4294967295"), ([-1], "between 0"), ([], "no seeds")):
        with pytest.raises(CanstyleError, match=message):
            check_seeds(bad)
    with pytest.raises(TypeError, match="list of integers"):
        check_seeds([0.5])


def test_pipeline_style_size_is_bounded() -> None:
    from canstyle.pipeline import check_style_size

    for bad in (0, -5, 100_000, 512.0, "512"):
        with pytest.raises(CanstyleError, match="style_size must be an int between 32 and 8192"):
            check_style_size(bad)  # type: ignore[arg-type]
    check_style_size(512)


def test_saving_a_batch_is_refused(tmp_path: Path) -> None:
    from canstyle.imageio import save_image

    with pytest.raises(CanstyleError, match="a batch of 2"):
        save_image(torch.rand(2, 3, 8, 8), tmp_path / "b.png")
    assert not (tmp_path / "b.png").exists()


def test_small_api_consistencies() -> None:
    import canstyle
    from canstyle.sr.upscaler import Upscaler

    assert {"Pipeline", "StyleTransfer", "stylize", "Upscaler"} <= set(dir(canstyle))
    with pytest.raises(CanstyleError, match="tile and tile_pad must be integers"):
        Upscaler("photo", "cpu", tile=20.5)  # type: ignore[arg-type]
    seen: list[object] = []
    out = canstyle.stylize(torch.rand(1, 3, 40, 40), torch.rand(1, 3, 40, 40), features="vgg16", device="cpu",
                           precision="fp32", preview_every=1, callback=lambda p: seen.append(p.image), **FAST)
    assert out.shape == (1, 3, 32, 32) and any(im is not None for im in seen)  # as StyleTransfer takes it


def test_numpy_numbers_and_an_avg_engine() -> None:
    from canstyle.nst.stylize import StyleTransfer

    opts = StylizeOptions().with_overrides(size=np.int64(64), iterations=np.int32(2), style_weight=np.float32(5))
    assert (type(opts.size), type(opts.iterations), type(opts.style_weight)) == (int, int, float)
    avg = StyleTransfer("vgg16", "cpu", "fp32", pooling="avg")
    assert avg(torch.rand(1, 3, 40, 40), torch.rand(1, 3, 40, 40), **FAST).shape == (1, 3, 32, 32)  # its own pooling
    with pytest.raises(CanstyleError, match="built with avg pooling"):
        avg(torch.rand(1, 3, 40, 40), torch.rand(1, 3, 40, 40), pooling="max", **FAST)  # asked for: refused
    with pytest.raises(TypeError, match="pass its .rgb"):
        from canstyle.imageio import LoadedImage

        avg(LoadedImage(torch.rand(1, 3, 40, 40), None), torch.rand(1, 3, 40, 40), **FAST)  # type: ignore[call-arg,arg-type]
    with pytest.raises(CanstyleError, match=r"\(x \+ 1\) / 2"):
        avg(torch.rand(1, 3, 40, 40) * 2 - 1, torch.rand(1, 3, 40, 40), **FAST)
