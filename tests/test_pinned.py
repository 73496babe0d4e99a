"""Pinned outputs: each stage on a tiny seeded input gives these numbers, so numeric drift in a
model, a loss, the optimiser or the schedule fails here. Everything runs in fp32 on the CPU with
real weights (VGG16, waifu2x); a deliberate change re-pins the values and says why.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from canstyle.can.generate import sample, save_generator
from tests.helpers import tiny_generator


def _close(got: list[float], want: list[float], atol: float) -> None:
    assert got == pytest.approx(want, abs=atol), got


def test_can_sample() -> None:
    g, _ = tiny_generator()
    a = sample(g, [0, 1])
    _close(a[0, :, 20, 30].tolist(), [0.857579, 0.878513, 0.098829], 1e-4)
    _close(a[1, 1, 40, 10:12].tolist(), [0.908775, 0.550366], 1e-4)
    _close([float(a.mean())], [0.480189], 1e-4)


def test_sr_output() -> None:
    from canstyle.sr.upscaler import Upscaler

    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    up = Upscaler("photo", "cpu", "fp32", tile=0)(x, 2)
    assert up.shape == (1, 3, 32, 32)
    _close(up[0, :, 5, 7].tolist(), [0.006675, 0.720122, 0.349548], 1e-4)
    _close([float(up.mean())], [0.483125], 1e-4)


def test_nst_after_three_steps() -> None:
    from canstyle.nst.stylize import StyleTransfer, StylizeOptions

    engine = StyleTransfer("vgg16", "cpu", "fp32")
    gen = torch.Generator().manual_seed(1)
    content, style = torch.rand(1, 3, 40, 48, generator=gen), torch.rand(1, 3, 48, 48, generator=gen)
    opts = StylizeOptions(size=48, min_scale=48, iterations=3, plateau=0)
    out = engine(content, style, opts, generator=torch.Generator().manual_seed(0))
    _close(out[0, :, 10, 10].tolist(), [0.568037, 0.627302, 0.168508], 1e-3)
    _close([float(out.mean())], [0.496619], 1e-4)


def test_pipeline(tmp_path: Path) -> None:
    from canstyle.pipeline import Pipeline

    g, cfg = tiny_generator()
    path = save_generator(g.state_dict(), cfg.to_json(), ["A", "B", "C"], tmp_path / "tiny.safetensors")
    pipe = Pipeline.from_checkpoint(path, features="vgg16", device="cpu", precision="fp32")
    photo = torch.rand(1, 3, 40, 48, generator=torch.Generator().manual_seed(2))
    out = pipe(photo, art_seed=3, size=96, min_scale=96, iterations=2, plateau=0,
               generator=torch.Generator().manual_seed(0))
    assert out.artwork.style.shape == (1, 3, 96, 96)  # one x2 SR pass, then resized to 96
    im = out.images[0]
    _close(im[0, :, 12, 20].tolist(), [0.383201, 0.523827, 0.591239], 1e-3)
    _close([float(im.mean())], [0.496922], 1e-4)
