"""Tiling, chaining, odd sizes and the Python API of the upscaler."""

from __future__ import annotations

import pytest
import torch

import canstyle.sr
from canstyle.errors import CanstyleError
from canstyle.progress import Progress
from canstyle.sr.tiling import plan_tiles
from canstyle.sr.upscaler import Upscaler, upscale_alpha

pytestmark = pytest.mark.usefixtures("module_home")  # a private CANSTYLE_HOME


def picture(h: int, w: int, seed: int = 0) -> torch.Tensor:
    """A smooth image with edges: upsampled noise plus a bright square."""
    g = torch.Generator().manual_seed(seed)
    x = torch.nn.functional.interpolate(torch.rand(1, 3, h // 4 + 2, w // 4 + 2, generator=g),
                                        size=(h, w), mode="bilinear", align_corners=False)
    x[..., h // 3 : h // 2, w // 4 : w // 2] = 0.95
    return x.clamp(0, 1)


@pytest.mark.parametrize(("model", "tile", "pad"), [("photo", 16, 0), ("photo", 12, 6), ("cunet", 16, 2)])
def test_tiled_output_matches_untiled(model: str, tile: int, pad: int) -> None:
    x = picture(31, 26)  # odd height: CUNet's even-size padding must agree too
    whole = Upscaler(model, "cpu", "fp32", tile=0)(x)
    tiled = Upscaler(model, "cpu", "fp32", tile=tile, tile_pad=pad)(x)
    assert len(plan_tiles(31, 26, tile, pad, 2)) >= 4
    assert tiled.shape == whole.shape == (1, 3, 62, 52)
    assert float((tiled - whole).abs().max()) < 1 / 255


def test_x4_is_two_x2_passes() -> None:
    up = Upscaler("photo", "cpu", "fp32", tile=16)
    x = picture(20, 14, seed=1)
    four = up(x, 4)
    assert four.shape == (1, 3, 80, 56)
    torch.testing.assert_close(four, up(up(x, 2), 2), atol=1e-6, rtol=0)
    assert up(x[..., :5, :3], 8).shape == (1, 3, 40, 24)


def test_tile_larger_than_image_and_one_pixel() -> None:
    x = picture(12, 10, seed=2)
    torch.testing.assert_close(Upscaler("photo", "cpu", "fp32", tile=512)(x),
                               Upscaler("photo", "cpu", "fp32", tile=0)(x))
    for model in ("photo", "cunet"):
        px = torch.tensor([0.8, 0.2, 0.4]).view(1, 3, 1, 1)
        out = Upscaler(model, "cpu", "fp32")(px)
        assert out.shape == (1, 3, 2, 2)
        assert float((out - px).abs().max()) < 0.05  # a flat patch stays flat


def test_upscale_is_close_to_the_truth_on_a_smooth_image() -> None:
    hr = picture(64, 64, seed=3)
    lr = torch.nn.functional.interpolate(hr, scale_factor=0.5, mode="bicubic", antialias=True)
    sr = canstyle.sr.upscale(lr, scale=2, sr_model="photo", device="cpu")
    bic = torch.nn.functional.interpolate(lr, scale_factor=2, mode="bicubic").clamp(0, 1)
    err_sr, err_bic = (sr - hr)[..., 4:-4, 4:-4].abs().mean(), (bic - hr)[..., 4:-4, 4:-4].abs().mean()
    assert err_sr < err_bic


def test_channels_batches_and_progress() -> None:
    up = Upscaler("photo", "cpu", "fp32", tile=8)
    seen: list[Progress] = []
    rgba = torch.cat([picture(16, 12), torch.linspace(0, 1, 12).expand(1, 1, 16, 12)], dim=1)
    out = up(rgba, 2, callback=seen.append)
    assert out.shape == (1, 4, 32, 24)
    torch.testing.assert_close(out[:, 3:], upscale_alpha(rgba[:, 3:], 2))
    assert [p.step for p in seen] == [1, 2, 3, 4] and seen[-1].total == 4  # 2x2 tiles
    assert up(torch.rand(2, 1, 5, 6)).shape == (2, 3, 10, 12)  # grey batch -> RGB
    assert up(torch.rand(3, 4, 4)).shape == (3, 8, 8)


def test_bad_arguments_are_user_errors() -> None:
    up = Upscaler("photo", "cpu", "fp32")
    for scale in (1, 3, 6):
        with pytest.raises(CanstyleError, match="power of two"):
            up(torch.rand(1, 3, 4, 4), scale)
    with pytest.raises(CanstyleError, match="2 channels; expected 1 or 3 or 4"):
        up(torch.rand(1, 2, 4, 4))
    with pytest.raises(CanstyleError, match="NaN"):
        up(torch.full((1, 3, 4, 4), float("nan")))
    with pytest.raises(CanstyleError, match="uint8"):
        up(torch.zeros(1, 3, 4, 4, dtype=torch.uint8))
    with pytest.raises(CanstyleError, match="unknown SR model"):
        Upscaler("no-such-model")
    with pytest.raises(CanstyleError, match="tile"):
        Upscaler("photo", tile=-1)


def test_plan_tiles_partitions_the_image() -> None:
    for h, w, tile, pad, mult in [(37, 50, 16, 5, 2), (8, 8, 3, 0, 1), (100, 7, 30, 16, 2)]:
        cover = torch.zeros(h, w, dtype=torch.int32)
        for (y0, y1, x0, x1), (ya, yb, xa, xb) in plan_tiles(h, w, tile, pad, mult):
            cover[y0:y1, x0:x1] += 1
            assert ya <= y0 and yb >= y1 and xa <= x0 and xb >= x1
            assert ya % mult == 0 and xa % mult == 0
        assert bool((cover == 1).all())
