"""Loss tests: ambiguity minimal at the uniform posterior, both forms agree, lambda=0 removes it."""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

from canstyle.can.losses import (
    ambiguity_loss,
    discriminator_loss,
    generator_loss,
    log1mexp,
    normalized_entropy,
    style_cross_entropy,
)

FORMS = ("paper", "uniform-ce")


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("k", [2, 5, 27])
def test_ambiguity_is_minimal_at_uniform_posterior(form: str, k: int) -> None:
    uniform = ambiguity_loss(torch.zeros(1, k), form)
    g = torch.Generator().manual_seed(k)
    for scale in (0.01, 0.3, 3.0, 30.0):
        other = ambiguity_loss(torch.randn(256, k, generator=g) * scale, form)
        assert float(other) > float(uniform)
    # a uniform posterior is a stationary point: zero gradient w.r.t. the logits
    z = torch.full((3, k), 1.7, requires_grad=True)
    ambiguity_loss(z, form).backward()
    assert z.grad is not None and z.grad.abs().max() < 1e-6


def test_paper_form_matches_its_formula() -> None:
    z = torch.randn(8, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    p = z.softmax(1)
    k = 6
    ref = -((1 / k) * p.log() + (1 - 1 / k) * (1 - p).log()).sum(1).mean()
    assert torch.allclose(ambiguity_loss(z, "paper").double(), ref, rtol=1e-5)
    assert torch.allclose(ambiguity_loss(z, "uniform-ce").double(), -p.log().mean(1).mean(), rtol=1e-5)


def test_stable_from_logits_for_confident_posteriors() -> None:
    z = torch.tensor([[200.0, -200.0, 0.0], [1e4, 0.0, 0.0]], requires_grad=True)
    for form in FORMS:
        loss = ambiguity_loss(z, form)
        (g,) = torch.autograd.grad(loss, z)
        assert torch.isfinite(loss) and torch.isfinite(g).all()
    x = torch.tensor([-1e-9, -1e-3, -0.5, -5.0, -50.0], dtype=torch.float64)
    assert torch.allclose(log1mexp(x[1:]), torch.log(1 - torch.exp(x[1:])), rtol=1e-10)
    assert torch.isfinite(log1mexp(torch.tensor([0.0, -1e-12])) ).all()


def test_both_forms_agree_in_gradient_direction() -> None:
    g = torch.Generator().manual_seed(0)
    for k in (2, 5, 10, 27):
        for scale in (0.1, 1.0, 5.0, 20.0):
            z = (torch.randn(500, k, generator=g) * scale).requires_grad_()
            (ga,) = torch.autograd.grad(ambiguity_loss(z, "paper") * 500, z)
            (gb,) = torch.autograd.grad(ambiguity_loss(z, "uniform-ce") * 500, z)
            cos = F.cosine_similarity(ga, gb, dim=1)
            assert float(cos.min()) > 0.5, (k, scale, float(cos.min()))
    # and a small step along either gradient makes the posterior more ambiguous
    z = torch.randn(64, 10, generator=g) * 3
    for form in FORMS:
        zz = z.clone().requires_grad_()
        (grad,) = torch.autograd.grad(ambiguity_loss(zz, form), zz)
        stepped = z - 0.5 * grad / grad.norm(dim=1, keepdim=True)
        assert float(normalized_entropy(stepped).mean()) > float(normalized_entropy(z).mean())


def test_lambda_zero_removes_the_term() -> None:
    logit = torch.randn(8, requires_grad=True)
    style = torch.randn(8, 5, requires_grad=True)
    loss0, parts0 = generator_loss(logit, style, "nonsat", weight=0.0)
    assert torch.equal(loss0, F.softplus(-logit).mean())
    assert "ambiguity" not in parts0
    loss0.backward()
    assert style.grad is None  # no path at all, not a zero-weighted one
    loss1, parts1 = generator_loss(logit, style, "nonsat", weight=1.0)
    assert torch.allclose(loss1, loss0 + parts1["ambiguity"])
    loss2, _ = generator_loss(logit, style, "nonsat", weight=2.5, form="uniform-ce")
    assert torch.allclose(loss2, loss0 + 2.5 * ambiguity_loss(style, "uniform-ce"))


def test_discriminator_loss_uses_real_styles_only() -> None:
    real, fake = torch.zeros(4), torch.zeros(4)
    style = torch.zeros(4, 3, requires_grad=True)
    labels = torch.tensor([0, 1, 2, 0])
    loss, parts = discriminator_loss(real, fake, style, labels, "nonsat")
    assert math.isclose(float(parts["d_adv"]), 2 * math.log(2), rel_tol=1e-6)
    assert math.isclose(float(parts["d_style"]), math.log(3), rel_tol=1e-6)
    hinge, _ = discriminator_loss(torch.ones(4) * 2, -torch.ones(4) * 2, style, labels, "hinge")
    assert math.isclose(float(hinge.detach()) - math.log(3), 0.0, abs_tol=1e-6)  # hinge satisfied: only CE left


def test_weighted_style_ce_is_a_per_image_mean() -> None:
    logits = torch.randn(6, 3, generator=torch.Generator().manual_seed(2))
    labels = torch.tensor([0, 0, 0, 0, 1, 2])
    w = torch.tensor([0.5, 2.0, 2.0])
    full = style_cross_entropy(logits, labels, w)
    halves = (style_cross_entropy(logits[:3], labels[:3], w) + style_cross_entropy(logits[3:], labels[3:], w)) / 2
    assert torch.allclose(full, halves)  # so per-rank means average to the global mean under DDP


def test_normalized_entropy_range() -> None:
    assert torch.allclose(normalized_entropy(torch.zeros(2, 7)), torch.ones(2))
    assert float(normalized_entropy(torch.tensor([[50.0, 0.0, 0.0]]))) < 1e-10 + 1e-6
