"""VGG feature extractors for style transfer.

Callers always pass RGB in [0, 1]; each network applies its own input
convention here (Caffe BGR 0-255 mean-subtracted for the Oxford VGG16 weights,
ImageNet mean/std for torchvision's VGG19).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import torch
from torch import nn
from torch.nn import functional as F

from canstyle import weights
from canstyle.errors import CanstyleError
from canstyle.nst.vgg_arch import CFGS, conv_names

log = logging.getLogger(__name__)

CONTENT_LAYERS = ("relu4_2",)
STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
FEATURE_CHOICES = ("auto", "vgg19", "vgg16")
DEFAULT_FEATURES = "auto"  # VGG19 when its weights are on disk, else the bundled-offline VGG16

_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


class VGGFeatures(nn.Module):
    """VGG conv trunk that returns named ReLU activations, truncated at the deepest layer needed."""

    def __init__(self, arch: str, convention: str, pooling: str = "max") -> None:
        super().__init__()
        if convention not in ("caffe", "torch"):
            raise ValueError(f"unknown input convention {convention!r}")
        self.arch, self.convention, self.pooling = arch, convention, pooling
        self.convs = nn.ModuleDict()
        self._plan: list[str] = []  # "convX_Y" or "pool"
        in_ch = 3
        names = iter(conv_names(arch))
        for v in CFGS[arch]:
            if v == 0:
                self._plan.append("pool")
            else:
                name = next(names)
                self.convs[name] = nn.Conv2d(in_ch, v, 3, padding=1)
                self._plan.append(name)
                in_ch = v
        if convention == "caffe":
            mean = torch.tensor(_CAFFE_MEAN_BGR)[[2, 1, 0]] / 255.0  # per RGB channel, in [0, 1] units
            std = torch.full((3,), 1 / 255.0)
        else:
            mean, std = torch.tensor(_IMAGENET_MEAN), torch.tensor(_IMAGENET_STD)
        self.register_buffer("mean", mean.view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", std.view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean) / self.std
        if self.convention == "caffe":
            x = x.flip(1)  # the Oxford weights expect BGR
        return x

    def forward(self, x: torch.Tensor, layers: Iterable[str]) -> dict[str, torch.Tensor]:
        wanted = set(layers)
        out: dict[str, torch.Tensor] = {}
        h = self.normalize(x)
        for step in self._plan:
            if not wanted - out.keys():
                break  # nothing deeper is needed
            if step == "pool":
                h = F.max_pool2d(h, 2) if self.pooling == "max" else F.avg_pool2d(h, 2)
                continue
            h = F.relu(self.convs[step](h))
            relu = "relu" + step[4:]
            if relu in wanted:
                out[relu] = h
        missing = wanted - out.keys()
        if missing:
            raise ValueError(f"{self.arch} has no layers {sorted(missing)}")
        return out


def load_features(name: str = DEFAULT_FEATURES, pooling: str = "max") -> VGGFeatures:
    """Build a feature network with pretrained weights ('auto', 'vgg19' or 'vgg16')."""
    if name not in FEATURE_CHOICES:
        raise CanstyleError(f"unknown --features {name!r}: choose from {', '.join(FEATURE_CHOICES)}")
    if name == "auto":
        from canstyle.nst.vgg_weights import vgg19_available

        name = "vgg19" if vgg19_available() else "vgg16"
        log.debug("feature network: %s (auto%s)", name, "" if name == "vgg19" else ": VGG19 weights not found locally")
    import canstyle.nst.vgg_weights  # noqa: F401  (registers the weight specs)

    state, meta = weights.load_weights(name)
    net = VGGFeatures(name, meta.get("convention", "torch"), pooling=pooling)
    try:
        net.convs.load_state_dict(state)
    except RuntimeError as e:
        raise CanstyleError(f"cached {name} weights do not fit the network: {e}") from None
    return net
