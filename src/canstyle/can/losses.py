"""CAN losses: discriminator, generator adversarial term and style ambiguity.

D maximises log Dr(x) + log(1 - Dr(G(z))) + log Dc(c|x): a real/fake term plus
style cross-entropy on real images only. G minimises its adversarial term plus
``weight`` times the style ambiguity of its samples. Everything is computed
from logits so no probability is ever 0 or 1 in a log.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

ADV_LOSSES = ("nonsat", "hinge")
AMBIGUITY_FORMS = ("paper", "uniform-ce")


def log1mexp(x: torch.Tensor) -> torch.Tensor:
    """log(1 - exp(x)) for x <= 0, accurate at both ends (Maechler 2012)."""
    x = x.clamp(max=-1e-7)  # x == 0 would be log(0); a certain class is capped, not infinite
    return torch.where(x > -math.log(2), torch.log(-torch.expm1(x)), torch.log1p(-torch.exp(x)))


def ambiguity_loss(style_logits: torch.Tensor, form: str = "paper") -> torch.Tensor:
    """Style ambiguity of generated images, smallest when the posterior is uniform.

    ``paper``: -sum_k [1/K log p_k + (1 - 1/K) log(1 - p_k)] with p = softmax,
    the posterior Dc(c_k|G(z)) exactly as written in the paper. (The widely used
    TF1 code applies per-class sigmoids instead, which is a different model: its
    p_k need not sum to one.) ``uniform-ce``: cross-entropy from the uniform
    distribution, -1/K sum_k log p_k. Both are averaged over the batch.
    """
    logits = style_logits.float()
    k = logits.shape[1]
    logp = F.log_softmax(logits, dim=1)
    if form == "paper":
        per = -(logp / k + (1 - 1 / k) * log1mexp(logp)).sum(1)
    elif form == "uniform-ce":
        per = -logp.mean(1)
    else:
        raise ValueError(f"unknown ambiguity form {form!r}: choose from {AMBIGUITY_FORMS}")
    return per.mean()


def normalized_entropy(style_logits: torch.Tensor) -> torch.Tensor:
    """H(p(c|x)) / log K per image, in [0, 1]; 1 means maximally ambiguous."""
    logp = F.log_softmax(style_logits.float(), dim=1)
    k = style_logits.shape[1]
    return -(logp.exp() * logp).sum(1) / math.log(k) if k > 1 else torch.zeros(len(logp))


def d_adversarial(real_logit: torch.Tensor, fake_logit: torch.Tensor, kind: str) -> torch.Tensor:
    real_logit, fake_logit = real_logit.float(), fake_logit.float()
    if kind == "nonsat":
        # -log sigmoid(r) - log(1 - sigmoid(f)), i.e. the paper's log Dr terms.
        return F.softplus(-real_logit).mean() + F.softplus(fake_logit).mean()
    if kind == "hinge":
        return F.relu(1 - real_logit).mean() + F.relu(1 + fake_logit).mean()
    raise ValueError(f"unknown adversarial loss {kind!r}: choose from {ADV_LOSSES}")


def g_adversarial(fake_logit: torch.Tensor, kind: str) -> torch.Tensor:
    fake_logit = fake_logit.float()
    if kind == "nonsat":
        # The non-saturating -log D(G(z)) of Goodfellow et al., which the paper also uses.
        return F.softplus(-fake_logit).mean()
    if kind == "hinge":
        return -fake_logit.mean()
    raise ValueError(f"unknown adversarial loss {kind!r}: choose from {ADV_LOSSES}")


def style_cross_entropy(
    style_logits: torch.Tensor, labels: torch.Tensor, class_weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Class-weighted style cross-entropy on real images.

    Divided by the batch size rather than by the batch's summed weights (what
    F.cross_entropy(weight=) does), so per-rank means average to the global
    mean under DDP; the weights are normalised to average 1 over the data set.
    """
    ce = F.cross_entropy(style_logits.float(), labels, reduction="none")
    if class_weights is not None:
        ce = ce * class_weights[labels]
    return ce.mean()


def discriminator_loss(
    real_logit: torch.Tensor,
    fake_logit: torch.Tensor,
    real_style: torch.Tensor,
    labels: torch.Tensor,
    kind: str = "nonsat",
    class_weights: torch.Tensor | None = None,
    style_weight: float = 1.0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    adv = d_adversarial(real_logit, fake_logit, kind)
    style = style_cross_entropy(real_style, labels, class_weights)
    return adv + style_weight * style, {"d_adv": adv.detach(), "d_style": style.detach()}


def generator_loss(
    fake_logit: torch.Tensor,
    fake_style: torch.Tensor | None,
    kind: str = "nonsat",
    weight: float = 1.0,
    form: str = "paper",
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Adversarial term plus ``weight`` x ambiguity; weight 0 is the plain GAN.

    With weight 0 the ambiguity term is not computed at all (not multiplied by
    zero), so the style head gets no gradient path and may even be skipped.
    """
    adv = g_adversarial(fake_logit, kind)
    parts = {"g_adv": adv.detach()}
    if weight == 0 or fake_style is None:
        return adv, parts
    amb = ambiguity_loss(fake_style, form)
    parts["ambiguity"] = amb.detach()
    return adv + weight * amb, parts
