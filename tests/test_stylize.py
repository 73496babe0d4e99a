from __future__ import annotations

import pytest
import torch

from canstyle.errors import CanstyleError
from canstyle.imageops import resize_to
from canstyle.nst import color
from canstyle.nst.stylize import StylizeOptions, fit_size, style_size

TINY = {"size": 64, "min_scale": 32, "coarse_iterations": 15, "iterations": 15}  # 64x36 only: the 32-px scale is too thin


def test_short_stylisation_lowers_style_loss(vgg16_engine, example_images):
    content, style = example_images
    opts = StylizeOptions(size=96, min_scale=48, coarse_iterations=60, iterations=60)
    gen = torch.Generator().manual_seed(0)
    x0 = vgg16_engine._initial(content, opts, fit_size(tuple(content.shape[-2:]), 96), gen)
    before = vgg16_engine.evaluate(x0, content, [style], opts)
    out = vgg16_engine(content, style, opts, generator=torch.Generator().manual_seed(0))
    after = vgg16_engine.evaluate(out, content, [style], opts)
    assert after["style"] * 10 <= before["style"], (before, after)
    assert after["content"] < before["content"] and after["content"] < 1.0, (before, after)
    assert out.shape == (1, 3, 54, 96) and out.min() >= 0 and out.max() <= 1


def test_same_seed_same_output(vgg16_engine, example_images):
    content, style = example_images
    a = vgg16_engine(content, style, generator=torch.Generator().manual_seed(7), **TINY)
    b = vgg16_engine(content, style, generator=torch.Generator().manual_seed(7), **TINY)
    c = vgg16_engine(content, style, generator=torch.Generator().manual_seed(8), **TINY)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_luminance_preservation_keeps_content_chroma(vgg16_engine, example_images):
    content, style = example_images
    out = vgg16_engine(content, style, generator=torch.Generator().manual_seed(0),
                       preserve_color="luminance", **TINY)
    ref = resize_to(content, tuple(out.shape[-2:]))
    chroma_out, chroma_ref = color.rgb_to_yiq(out)[:, 1:], color.rgb_to_yiq(ref)[:, 1:]
    # Equal except where clamping to [0, 1] had to bend a colour.
    assert (chroma_out - chroma_ref).abs().mean().item() < 0.01
    plain = vgg16_engine(content, style, generator=torch.Generator().manual_seed(0), **TINY)
    assert (color.rgb_to_yiq(plain)[:, 1:] - chroma_ref).abs().mean().item() > 0.03


def test_histogram_matching_moves_style_colours_to_content():
    g = torch.Generator().manual_seed(0)
    style = torch.rand(1, 3, 32, 32, generator=g) * 0.3 + torch.tensor([0.6, 0.1, 0.1]).view(1, 3, 1, 1)
    content = torch.rand(1, 3, 32, 32, generator=g) * 0.2 + torch.tensor([0.1, 0.2, 0.6]).view(1, 3, 1, 1)
    out = color.match_histogram(style, content)
    assert torch.allclose(out.mean((0, 2, 3)), content.mean((0, 2, 3)), atol=0.01)


def test_yiq_roundtrip():
    x = torch.rand(1, 3, 5, 5)
    assert torch.allclose(color.yiq_to_rgb(color.rgb_to_yiq(x)), x, atol=1e-5)


def test_several_styles_and_callback(vgg16_engine, example_images):
    content, style = example_images
    seen = []
    out = vgg16_engine(content, [style, style.flip(-1)], generator=torch.Generator().manual_seed(0),
                       style_weights=[1.0, 2.0], callback=seen.append, preview_every=5,
                       size=128, min_scale=64, coarse_iterations=10, iterations=10, plateau=0)
    assert out.shape[-1] == 128
    assert seen[-1].step == seen[-1].total == 30  # 64 px: 10 x 128/64 = 20, then 10 at 128 px
    assert {(p.scale, p.size) for p in seen} == {(0, (36, 64)), (1, (72, 128))}
    assert [p.step for p in seen if p.image is not None] == [5, 10, 15, 20, 25, 30]
    with pytest.raises(CanstyleError, match="style-weights"):
        vgg16_engine(content, [style], style_weights=[1.0, 2.0], **TINY)


def test_adam_and_content_init(vgg16_engine, example_images):
    content, style = example_images
    out = vgg16_engine(content, style, optimizer="adam", init="content", **TINY)
    assert out.shape == (1, 3, 36, 64)


@pytest.mark.parametrize(
    "kw, msg",
    [({"size": 0}, "--size"), ({"iterations": 0}, "--iterations"), ({"style_scale": 0}, "style-scale"),
     ({"style_weight": -1}, "negative"), ({"min_scale": 8}, "min-scale"),
     ({"size": 64, "style_scale": 100}, "at most 8"), ({"size": 2048, "style_scale": 5}, "more than 8192 px")],
)
def test_bad_options(kw, msg):
    with pytest.raises(CanstyleError, match=msg):
        StylizeOptions(**kw).validate()


def test_scales():
    assert StylizeOptions(size=512).scales() == [64, 128, 256, 512]
    assert StylizeOptions(size=512, min_scale=128).scales() == [128, 256, 512]
    assert StylizeOptions(size=512, min_scale=512).scales() == [512]
    assert StylizeOptions(size=500, min_scale=128).scales() == [128, 250, 500]
    assert StylizeOptions(size=300, min_scale=100).scales() == [100, 150, 300]


def test_fit_size_rejects_slivers():
    assert fit_size((1, 1), 512) == (512, 512)
    with pytest.raises(CanstyleError, match="too thin"):
        fit_size((1, 1000), 512)


def test_style_size_keeps_vgg_happy():
    assert style_size((608, 768), 32) == (32, 40)
    assert style_size((100, 200), 512) == (256, 512)
    with pytest.raises(CanstyleError, match="too thin"):
        style_size((1, 1000), 512)


def test_evaluate_is_fp32_and_leaves_the_engine_alone(vgg16_engine, example_images):
    from canstyle.nst.stylize import StyleTransfer

    content, style = example_images
    opts = StylizeOptions(size=64)
    x = torch.rand(1, 3, 36, 64, generator=torch.Generator().manual_seed(1))
    before = vgg16_engine.dtype
    a = vgg16_engine.evaluate(x, content, [style], opts)
    assert vgg16_engine.dtype == before  # the precision is passed down, not swapped on the engine
    b = StyleTransfer("vgg16", "cpu", "fp32").evaluate(x, content, [style], opts)
    assert a["total"] == pytest.approx(b["total"], rel=1e-4)


def test_pair_loss_scale_weighs_the_pairs_own_fractions(vgg16_engine, example_images):
    """With --loss-scale pair the total is content_weight x content fraction + style_weight x
    style fraction: the photo itself scores style_weight, the painting itself content_weight
    plus its own style fraction, for any pair and size."""
    photo, painting = example_images
    opts = StylizeOptions(size=96, loss_scale="pair", tv_weight=0.0, style_weight=4.0, content_weight=2.0)
    hw = fit_size(tuple(photo.shape[-2:]), 96)
    t = vgg16_engine.targets(photo, [painting], [1.0], hw, 96, torch.float32, pair_scales=True)
    own, _ = vgg16_engine.losses(resize_to(photo, hw), t, opts, torch.float32)
    assert float(own) == pytest.approx(4.0, rel=1e-3)  # content 0, style fraction 1
    total, parts = vgg16_engine.losses(resize_to(painting, hw), t, opts, torch.float32)
    assert parts["content"] == pytest.approx(t.content_scale, rel=1e-3)
    assert float(total) == pytest.approx(2.0 + 4.0 * parts["style"] / t.style_scale, rel=1e-3)
    raw, _ = vgg16_engine.losses(resize_to(photo, hw), t, StylizeOptions(size=96, tv_weight=0.0), torch.float32)
    assert float(raw) == pytest.approx(3.0 * t.style_scale, rel=1e-3)  # none: Gatys' raw losses
