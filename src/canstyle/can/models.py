"""CAN generator and discriminator (Elgammal et al. 2017), with CPU-sized presets.

The 256 preset is the paper's architecture: G maps 100-d noise to 4x4x1024 and
up-samples six times (1024-512-256-128-64-3, tanh); D has six 4x4 stride-2
convolutions (32-64-128-256-512-512, LeakyReLU 0.2) feeding a real/fake logit
and a 1024-512-K style MLP. The 64 and 128 presets drop the first up-sampling
stages of G and the last convolutions of D so they train on a CPU.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from canstyle.can.dist import GlobalBatchNorm2d

# preset -> (G channels at 4x4, G up-sampling stage outputs, D conv channels)
PRESETS: dict[int, tuple[int, tuple[int, ...], tuple[int, ...]]] = {
    64: (256, (256, 128, 64, 3), (32, 64, 128, 256)),
    128: (512, (512, 256, 128, 64, 3), (32, 64, 128, 256, 512)),
    256: (1024, (1024, 512, 256, 128, 64, 3), (32, 64, 128, 256, 512, 512)),  # the paper's
}
STYLE_HIDDEN = (1024, 512)  # the style MLP of the paper's reproductions
UPSAMPLE = ("deconv", "resize")


@dataclass
class ModelConfig:
    """Everything needed to rebuild G and D; stored in checkpoints and exports as JSON."""

    preset: int = 64
    n_classes: int = 2
    z_dim: int = 100
    width: float = 1.0  # channel multiplier (tests use tiny models); 1.0 = the preset as published
    spectral_norm: bool = False  # False = the paper's BatchNorm D; True = spectral norm, no BatchNorm
    style_hidden: tuple[int, ...] = field(default=STYLE_HIDDEN)
    # "deconv" = the paper's 4x4 stride-2 transposed convs; "resize" = nearest x2 + 3x3 conv,
    # which avoids their checkerboard pattern (Odena et al. 2016). Style transfer copies that
    # pattern from the painting, so canstyle's default CAN uses "resize".
    upsample: str = "deconv"

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise ValueError(f"unknown preset {self.preset}: choose from {sorted(PRESETS)}")
        if self.upsample not in UPSAMPLE:
            raise ValueError(f"unknown upsample {self.upsample!r}: choose from {UPSAMPLE}")
        self.style_hidden = tuple(self.style_hidden)

    @property
    def size(self) -> int:
        return self.preset

    def scaled(self, c: int) -> int:
        return max(4, round(c * self.width))

    def g_channels(self) -> tuple[int, list[int]]:
        base, stages, _ = PRESETS[self.preset]
        return self.scaled(base), [self.scaled(c) for c in stages[:-1]] + [3]

    def d_channels(self) -> list[int]:
        return [self.scaled(c) for c in PRESETS[self.preset][2]]

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | dict) -> ModelConfig:
        d = json.loads(text) if isinstance(text, str) else dict(text)
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


class Generator(nn.Module):
    """z (N x z_dim) -> image N x 3 x S x S in [-1, 1]."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.z_dim = cfg.z_dim
        base, stages = cfg.g_channels()
        self.base = base
        # A linear projection to 4x4xC (as in DCGAN/CAN), then BN + ReLU.
        self.project = nn.Linear(cfg.z_dim, base * 16, bias=False)
        self.project_bn = GlobalBatchNorm2d(base)
        layers: list[nn.Module] = []
        c_in = base
        for i, c_out in enumerate(stages):
            last = i == len(stages) - 1
            if cfg.upsample == "resize":
                layers += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c_in, c_out, 3, 1, 1, bias=last)]
            else:
                layers.append(nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=last))
            layers += [nn.Tanh()] if last else [GlobalBatchNorm2d(c_out), nn.ReLU(inplace=True)]
            c_in = c_out
        self.body = nn.Sequential(*layers)
        init_weights(self)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.project(z.flatten(1)).view(z.shape[0], self.base, 4, 4)
        return self.body(torch.relu(self.project_bn(h)))

    def images(self, z: torch.Tensor) -> torch.Tensor:
        """The package's image convention: float32 RGB in [0, 1] (forward() is the GAN's [-1, 1])."""
        return self(z).float().add(1).div(2).clamp(0, 1)


class Discriminator(nn.Module):
    """Shared conv trunk; returns (real/fake logit N, style logits N x K)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        sn = spectral_norm if cfg.spectral_norm else (lambda m: m)
        layers: list[nn.Module] = []
        c_in = 3
        for i, c_out in enumerate(cfg.d_channels()):
            # DCGAN/CAN: no normalisation on the first layer; BN after the others
            # unless spectral norm is used (SN makes BN unnecessary and keeps
            # D's output independent of the other images in the batch).
            use_bn = not cfg.spectral_norm and i > 0
            layers.append(sn(nn.Conv2d(c_in, c_out, 4, 2, 1, bias=not use_bn)))
            if use_bn:
                layers.append(GlobalBatchNorm2d(c_out))  # plain BatchNorm unless synced under DDP
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            c_in = c_out
        self.trunk = nn.Sequential(*layers)
        feat = c_in * 16  # the trunk always ends at 4x4
        self.real_fake = sn(nn.Linear(feat, 1))
        head: list[nn.Module] = []
        d = feat
        for h in cfg.style_hidden:
            head += [nn.Linear(d, h), nn.LeakyReLU(0.2, inplace=True)]
            d = h
        # The style head is not spectrally normalised: it is a classifier trained
        # with cross-entropy, and SN would cap how confident it can become.
        self.style = nn.Sequential(*head, nn.Linear(d, cfg.n_classes))
        init_weights(self)

    def forward(self, x: torch.Tensor, style: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        f = self.trunk(x).flatten(1)
        logit = self.real_fake(f).squeeze(1)
        return logit, (self.style(f) if style else None)


def init_weights(module: nn.Module) -> None:
    """DCGAN initialisation: N(0, 0.02) weights, BN gamma N(1, 0.02)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            w = m.parametrizations.weight.original if hasattr(m, "parametrizations") else m.weight
            nn.init.normal_(w, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


def build(cfg: ModelConfig) -> tuple[Generator, Discriminator]:
    return Generator(cfg), Discriminator(cfg)


@torch.no_grad()
def refresh_bn_stats(g: Generator, n_batches: int = 4, batch: int = 64, seed: int = 0) -> None:
    """Recompute G's BatchNorm running statistics for its current weights.

    The EMA generator's averaged weights do not match the running statistics
    it copied from the trained G, so before sampling in eval mode (which makes
    each seed's image independent of the rest of the batch) the statistics are
    re-estimated as a plain average over random noise ("standing statistics").
    """
    bns = [m for m in g.modules() if isinstance(m, nn.BatchNorm2d)]
    if not bns:
        return
    was_training = g.training
    gen = torch.Generator().manual_seed(seed)
    device = next(g.parameters()).device
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    g.train()
    for _ in range(n_batches):
        z = torch.randn(batch, g.z_dim, generator=gen).to(device)
        g(z)
    for m in bns:
        m.momentum = 0.1
    g.train(was_training)
