"""Model tests: shapes of every preset, the paper-faithful 256 architecture, BN statistics."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from canstyle.can.models import ModelConfig, build, refresh_bn_stats


@pytest.mark.parametrize(("preset", "upsample"), [(64, "deconv"), (128, "deconv"), (64, "resize")])
def test_shapes(preset: int, upsample: str) -> None:
    cfg = ModelConfig(preset=preset, n_classes=5, width=0.25, upsample=upsample)
    g, d = build(cfg)
    z = torch.randn(3, 100)
    x = g(z)
    assert x.shape == (3, 3, preset, preset) and float(x.detach().abs().max()) <= 1
    logit, style = d(x)
    assert logit.shape == (3,) and style is not None and style.shape == (3, 5)
    assert d(x, style=False)[1] is None


def test_paper_256_architecture() -> None:
    cfg = ModelConfig(preset=256, n_classes=25, spectral_norm=False)
    g, d = build(cfg)
    convs = [m for m in d.trunk if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [32, 64, 128, 256, 512, 512]
    assert all(c.kernel_size == (4, 4) and c.stride == (2, 2) for c in convs)
    assert all(m.negative_slope == 0.2 for m in d.trunk if isinstance(m, nn.LeakyReLU))
    ups = [m for m in g.body if isinstance(m, nn.ConvTranspose2d)]
    assert g.base == 1024 and [u.out_channels for u in ups] == [1024, 512, 256, 128, 64, 3]
    assert isinstance(g.body[-1], nn.Tanh)
    head = [m for m in d.style if isinstance(m, nn.Linear)]
    assert [h.out_features for h in head] == [1024, 512, 25]
    with torch.no_grad():
        x = g(torch.randn(2, 100))
        assert x.shape == (2, 3, 256, 256)
        assert d(x)[1].shape == (2, 25)


def test_spectral_norm_option() -> None:
    _, d_sn = build(ModelConfig(n_classes=3, width=0.25, spectral_norm=True))
    _, d_bn = build(ModelConfig(n_classes=3, width=0.25))  # the paper's D is the default
    assert not any(isinstance(m, nn.BatchNorm2d) for m in d_sn.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in d_bn.modules())
    assert any(hasattr(m, "parametrizations") for m in d_sn.trunk)


def test_config_round_trip() -> None:
    cfg = ModelConfig(preset=128, n_classes=7, width=0.5, spectral_norm=False)
    assert ModelConfig.from_json(cfg.to_json()) == cfg


def test_eval_samples_do_not_depend_on_batch() -> None:
    torch.manual_seed(0)
    g, _ = build(ModelConfig(n_classes=3, width=0.25))
    refresh_bn_stats(g, n_batches=2, batch=16)
    g.eval()
    z = torch.randn(4, 100)
    with torch.no_grad():
        assert torch.allclose(g(z)[1:2], g(z[1:2]), atol=1e-5)
    assert g.project_bn.momentum == 0.1


def test_resize_upsampling_has_no_transposed_convs_and_round_trips() -> None:
    cfg = ModelConfig(preset=64, n_classes=3, width=0.25, upsample="resize")
    g, _ = build(cfg)
    assert not any(isinstance(m, nn.ConvTranspose2d) for m in g.modules())
    assert sum(isinstance(m, nn.Upsample) for m in g.modules()) == 4
    assert ModelConfig.from_json(cfg.to_json()) == cfg
    # Configs written before the option existed load as the paper's deconv generator.
    old = {k: v for k, v in json.loads(cfg.to_json()).items() if k != "upsample"}
    assert ModelConfig.from_json(old).upsample == "deconv"
    with pytest.raises(ValueError):
        ModelConfig(upsample="pixelshuffle")
