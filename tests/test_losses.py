from __future__ import annotations

import pytest
import torch

from canstyle.nst.losses import blend_grams, content_loss, gram, relative_mse, style_loss, tv_loss


def test_gram_hand_computed():
    # One image, 2 channels, 1x2 positions: f = [[1, 2], [3, 4]]
    f = torch.tensor([[[[1.0, 2.0]], [[3.0, 4.0]]]])
    expected = torch.tensor([[1 * 1 + 2 * 2, 1 * 3 + 2 * 4], [3 * 1 + 4 * 2, 3 * 3 + 4 * 4]]) / 2
    assert torch.allclose(gram(f)[0], expected)


def test_gram_under_autocast_returns_fp32_close_to_exact():
    f = torch.rand(1, 4, 3, 3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        g = gram(f.bfloat16())
    assert g.dtype == torch.float32
    assert torch.allclose(g, gram(f), rtol=1e-2)


def test_gram_backward_matches_autograd():
    f = torch.rand(2, 3, 4, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: gram(t.float()).double(), (f,), eps=1e-3, atol=1e-2)
    m = torch.rand(1, 3, 7, requires_grad=True)
    w = torch.rand(1, 3, 3)
    (gram(m.view(1, 3, 7, 1)) * w).sum().backward()
    ref = m.detach().clone().requires_grad_(True)
    ((ref @ ref.transpose(1, 2) / 7) * w).sum().backward()
    assert torch.allclose(m.grad, ref.grad, atol=1e-6)


def test_relative_mse_hand_computed():
    t = torch.tensor([1.0, 2.0, 2.0])
    x = torch.tensor([1.0, 0.0, 3.0])
    assert relative_mse(x, t).item() == pytest.approx((0 + 4 + 1) / (1 + 4 + 4))
    assert relative_mse(t, t).item() == 0.0


def test_content_and_style_loss_values():
    ft = torch.ones(1, 1, 1, 2)
    fx = torch.tensor([[[[1.0, 3.0]]]])
    assert content_loss({"a": fx}, {"a": ft}).item() == pytest.approx(4 / 2)
    # grams: target 1, x (1 + 9) / 2 = 5 -> (5 - 1)^2 / 1^2 = 16, averaged over two layers
    g = {"a": gram(ft), "b": gram(ft)}
    assert style_loss({"a": fx, "b": ft}, g).item() == pytest.approx((16 + 0) / 2)


def test_tv_loss_hand_computed():
    x = torch.tensor([[[[0.0, 1.0], [1.0, 1.0]]]])
    # horizontal diffs: 1, 0 -> mean 0.5; vertical diffs: 1, 0 -> mean 0.5
    assert tv_loss(x).item() == pytest.approx(1.0)
    assert tv_loss(torch.ones(1, 3, 4, 4)).item() == 0.0


def test_blend_grams_weighted_mean():
    a, b = {"l": torch.zeros(1, 2, 2)}, {"l": torch.ones(1, 2, 2)}
    out = blend_grams([a, b], [1.0, 3.0])
    assert torch.allclose(out["l"], torch.full((1, 2, 2), 0.75))
