"""waifu2x networks in PyTorch: upconv_7 and CUNet (both x2).

The networks use unpadded ("valid") convolutions, as upstream does: the caller
pads the input by ``offset`` pixels on every side (see ``upscale.py``) and gets
back exactly twice the unpadded size. Inputs and outputs are RGB in [0, 1].

``ncnn_order()`` lists the weighted layers in the order of the ncnn files, so
``load_ncnn_layers`` can map the wheel's weights onto the modules and check
every shape, kernel and stride on the way.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from canstyle.errors import CanstyleError
from canstyle.sr.ncnn import Layer

SLOPE = 0.1  # waifu2x's LeakyReLU slope


def _crop(x: torch.Tensor, n: int) -> torch.Tensor:
    return x[..., n:-n, n:-n]


class UpConv7(nn.Module):
    """waifu2x upconv_7: six 3x3 convs then a 4x4 stride-2 transposed conv."""

    offset = 7  # input border consumed: 6 convs x 1 px + 1 px from the deconv's cropping
    pad_multiple = 1

    def __init__(self) -> None:
        super().__init__()
        chans = [3, 16, 32, 64, 128, 128, 256]
        self.convs = nn.ModuleList(nn.Conv2d(a, b, 3) for a, b in zip(chans[:-1], chans[1:], strict=True))
        self.up = nn.ConvTranspose2d(256, 3, 4, stride=2, padding=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in self.convs:
            x = F.leaky_relu(conv(x), SLOPE, inplace=True)
        return self.up(x)

    def ncnn_order(self) -> list[nn.Module]:
        return [*self.convs, self.up]


class SECollected(Exception):  # noqa: N818 (a control-flow signal, not an error)
    """Raised by an SEBlock in collect mode: the channel sums of a box of its input."""

    def __init__(self, sums: torch.Tensor, count: int, shape: tuple[int, int]) -> None:
        super().__init__("SE statistics collected")
        self.sums, self.count, self.shape = sums, count, shape


class SEBlock(nn.Module):
    """Squeeze-and-excitation; the ncnn graph spells it Pooling+InnerProduct+Scale.

    Its channel means are global, so tiled inference would see different means
    in every tile. ``tiling.sync_se`` instead gathers the whole image's means
    tile by tile (``collect``) and then imposes them (``fixed_mean``).
    """

    def __init__(self, ch: int, reduction: int = 8) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(ch, ch // reduction, 1)
        self.fc2 = nn.Conv2d(ch // reduction, ch, 1)
        self.fixed_mean: torch.Tensor | None = None  # 1xCx1x1 means to use instead of this input's
        # (r0, r1, c0, c1) box of the input to sum before stopping the run; r1/c1 None = to the end
        self.collect: tuple[int, int | None, int, int | None] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.collect is not None:
            r0, r1, c0, c1 = self.collect
            box = x[..., r0:r1, c0:c1].float()
            raise SECollected(box.sum(dim=(2, 3), keepdim=True), box.shape[-2] * box.shape[-1],
                              (x.shape[-2], x.shape[-1]))
        s = x.mean(dim=(2, 3), keepdim=True) if self.fixed_mean is None else self.fixed_mean.to(x.dtype)
        s = torch.sigmoid(self.fc2(F.relu(self.fc1(s), inplace=True)))
        return x * s


class UNetConv(nn.Module):
    def __init__(self, cin: int, cmid: int, cout: int, se: bool) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cmid, 3)
        self.conv2 = nn.Conv2d(cmid, cout, 3)
        self.se = SEBlock(cout) if se else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.leaky_relu(self.conv1(x), SLOPE, inplace=True)
        x = F.leaky_relu(self.conv2(x), SLOPE, inplace=True)
        return x if self.se is None else self.se(x)

    def ncnn_order(self) -> list[nn.Module]:
        se = [] if self.se is None else [self.se.fc1, self.se.fc2]
        return [self.conv1, self.conv2, *se]


class UNet1(nn.Module):
    """First CUNet stage: a one-level U-Net ending in the x2 transposed conv."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = UNetConv(3, 32, 64, se=False)
        self.down1 = nn.Conv2d(64, 64, 2, stride=2)
        self.conv2 = UNetConv(64, 128, 64, se=True)
        self.up2 = nn.ConvTranspose2d(64, 64, 2, stride=2)
        self.conv3 = nn.Conv2d(64, 64, 3)
        self.bottom = nn.ConvTranspose2d(64, 3, 4, stride=2, padding=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.conv1(x)
        x2 = self.conv2(F.leaky_relu(self.down1(x1), SLOPE))
        x2 = F.leaky_relu(self.up2(x2), SLOPE)
        x3 = F.leaky_relu(self.conv3(_crop(x1, 4) + x2), SLOPE)
        return self.bottom(x3)

    def ncnn_order(self) -> list[nn.Module]:
        return [*self.conv1.ncnn_order(), self.down1, *self.conv2.ncnn_order(), self.up2,
                self.conv3, self.bottom]


class UNet2(nn.Module):
    """Second CUNet stage: a two-level U-Net that refines the x2 output."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = UNetConv(3, 32, 64, se=False)
        self.down1 = nn.Conv2d(64, 64, 2, stride=2)
        self.conv2 = UNetConv(64, 64, 128, se=True)
        self.down2 = nn.Conv2d(128, 128, 2, stride=2)
        self.conv3 = UNetConv(128, 256, 128, se=True)
        self.up3 = nn.ConvTranspose2d(128, 128, 2, stride=2)
        self.conv4 = UNetConv(128, 64, 64, se=True)
        self.up4 = nn.ConvTranspose2d(64, 64, 2, stride=2)
        self.conv5 = nn.Conv2d(64, 64, 3)
        self.bottom = nn.Conv2d(64, 3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.conv1(x)
        x2 = self.conv2(F.leaky_relu(self.down1(x1), SLOPE))
        x3 = self.conv3(F.leaky_relu(self.down2(x2), SLOPE))
        x3 = F.leaky_relu(self.up3(x3), SLOPE)
        x4 = F.leaky_relu(self.up4(self.conv4(_crop(x2, 4) + x3)), SLOPE)
        x5 = F.leaky_relu(self.conv5(_crop(x1, 16) + x4), SLOPE)
        return self.bottom(x5)

    def ncnn_order(self) -> list[nn.Module]:
        return [*self.conv1.ncnn_order(), self.down1, *self.conv2.ncnn_order(), self.down2,
                *self.conv3.ncnn_order(), self.up3, *self.conv4.ncnn_order(), self.up4,
                self.conv5, self.bottom]


class CUNet(nn.Module):
    """waifu2x CUNet x2: UNet1 upsamples, UNet2 predicts a residual on top of it."""

    offset = 18  # UNet1 + UNet2 consume 36 output px = 18 input px per side
    pad_multiple = 2  # the stride-2 convs need an even input size

    def __init__(self) -> None:
        super().__init__()
        self.unet1 = UNet1()
        self.unet2 = UNet2()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.unet1(x)
        return _crop(z, 20) + self.unet2(z)

    def ncnn_order(self) -> list[nn.Module]:
        return [*self.unet1.ncnn_order(), *self.unet2.ncnn_order()]


ARCHS: dict[str, type[nn.Module]] = {"upconv_7": UpConv7, "cunet": CUNet}


def build(arch: str) -> nn.Module:
    if arch not in ARCHS:
        raise CanstyleError(f"unknown SR architecture {arch!r}: known are {', '.join(ARCHS)}")
    return ARCHS[arch]()


def _check(layer: Layer, mod: nn.Module) -> None:
    """Refuse a layer whose kernel, stride or padding differs from the module's."""
    p = layer.get
    if isinstance(mod, nn.ConvTranspose2d | nn.Conv2d) and layer.type != "InnerProduct":
        want_type = "Deconvolution" if isinstance(mod, nn.ConvTranspose2d) else "Convolution"
        got = (layer.type, int(p(0, 0)), int(p(1, 1)), int(p(3, 1)), int(p(4, 0)))
        want = (want_type, mod.out_channels, mod.kernel_size[0], mod.stride[0], mod.padding[0])
    else:
        got = (layer.type, int(p(0, 0)))
        want = ("InnerProduct", mod.weight.shape[0])
    if got != want:
        raise CanstyleError(f"ncnn layer {layer.name} is {got}, the network expects {want}")


def load_ncnn_layers(model: nn.Module, layers: list[Layer]) -> dict[str, torch.Tensor]:
    """A state dict for ``model`` from the weighted ncnn layers (in file order)."""
    mods = model.ncnn_order()  # type: ignore[operator]
    if len(mods) != len(layers):
        raise CanstyleError(f"ncnn model has {len(layers)} weighted layers, expected {len(mods)}")
    names = {id(m): n for n, m in model.named_modules()}
    state: dict[str, torch.Tensor] = {}
    for layer, mod in zip(layers, mods, strict=True):
        _check(layer, mod)
        w = np.asarray(layer.weights["weight"], dtype=np.float32)
        if isinstance(mod, nn.ConvTranspose2d):
            # ncnn stores deconvolution weights out-major; PyTorch wants (in, out, kh, kw).
            o, i, kh, kw = mod.weight.shape[1], mod.weight.shape[0], *mod.kernel_size
            t = torch.from_numpy(w.reshape(o, i, kh, kw)).transpose(0, 1)
        else:
            t = torch.from_numpy(w).reshape(mod.weight.shape)
        prefix = names[id(mod)]
        state[f"{prefix}.weight"] = t.contiguous()
        state[f"{prefix}.bias"] = torch.from_numpy(layer.weights["bias"].astype(np.float32))
    return state
