"""The SR evaluation protocol used by ``canstyle eval-sr`` and ``bench/bench_sr.py``.

For each HR image: optional centre crop, mod-crop to the scale, LR made by
**PIL's bicubic** resize (``Image.BICUBIC``; PIL widens the filter by the scale
factor when shrinking, so it is antialiased like MATLAB's ``imresize``; on Set5
x2 its bicubic baseline scores 33.67 dB against the published MATLAB 33.66 dB).
The model's output is rounded to 8 bits, as a saved image would be, and compared
with the HR image by PSNR/SSIM on Y (BT.601) with ``scale`` pixels shaved. The
baseline is PIL bicubic upscaling of the same LR image.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from canstyle.errors import CanstyleError
from canstyle.imageio import load_image, tensor_to_pil
from canstyle.progress import Progress, ProgressCallback
from canstyle.sr.metrics import psnr_y, ssim_y


@dataclass
class Score:
    name: str
    psnr: float
    ssim: float
    bicubic_psnr: float
    bicubic_ssim: float


def center_crop(im: Image.Image, size: int) -> Image.Image:
    """The central size x size square (or less on a short side)."""
    w, h = im.size
    cw, ch = min(size, w), min(size, h)
    left, top = (w - cw) // 2, (h - ch) // 2
    return im.crop((left, top, left + cw, top + ch))


def mod_crop(im: Image.Image, scale: int) -> Image.Image:
    w, h = im.size
    return im.crop((0, 0, w - w % scale, h - h % scale))


def make_lr(hr: Image.Image, scale: int) -> Image.Image:
    """PIL bicubic downscaling (antialiased), the LR half of every SR pair here."""
    return hr.resize((hr.width // scale, hr.height // scale), Image.BICUBIC)


def pil_to_tensor(im: Image.Image) -> torch.Tensor:
    arr = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(arr).permute(2, 0, 1)[None].contiguous()


def load_hr(path: Path, scale: int, crop: int = 0) -> Image.Image:
    im = tensor_to_pil(load_image(path).rgb)  # EXIF, ICC and odd modes handled as everywhere else
    if crop:
        im = center_crop(im, crop)
    im = mod_crop(im, scale)
    if min(im.size) < 4 * scale + 11:
        raise CanstyleError(f"{path} is too small to evaluate at x{scale} ({im.width}x{im.height})")
    return im


def score_pair(hr: Image.Image, sr: torch.Tensor, scale: int, name: str) -> Score:
    """Score an SR result (1x3xHxW float) and the PIL bicubic baseline against HR."""
    lr = make_lr(hr, scale)
    target = pil_to_tensor(hr)
    sr8 = sr.clamp(0, 1).mul(255).round().div(255)
    bic = pil_to_tensor(lr.resize(hr.size, Image.BICUBIC))
    return Score(name, psnr_y(sr8, target, scale), ssim_y(sr8, target, scale),
                 psnr_y(bic, target, scale), ssim_y(bic, target, scale))


def evaluate(paths: Sequence[Path], upscale: Callable[[torch.Tensor], torch.Tensor],
             scale: int = 2, crop: int = 0, on_image: Callable[[Score], None] | None = None,
             callback: ProgressCallback | None = None) -> list[Score]:
    """Score ``upscale`` (LR tensor -> SR tensor at ``scale``) on each HR image.

    ``on_image`` receives each image's scores (a result, e.g. a table row); ``callback`` gets a
    ``Progress("eval-sr", done, total)`` per image like every long call.
    """
    scores = []
    for i, path in enumerate(paths):
        hr = load_hr(Path(path), scale, crop)
        sr = upscale(pil_to_tensor(make_lr(hr, scale)))
        s = score_pair(hr, sr, scale, Path(path).name)
        scores.append(s)
        if on_image is not None:
            on_image(s)
        if callback is not None:
            callback(Progress("eval-sr", i + 1, len(paths), size=(int(sr.shape[-2]), int(sr.shape[-1]))))
    return scores


def mean_score(scores: Sequence[Score]) -> Score:
    def avg(vals: list[float]) -> float:
        finite = [v for v in vals if math.isfinite(v)]
        return sum(finite) / len(finite) if finite else math.inf

    cols = {k: avg([asdict(s)[k] for s in scores]) for k in ("psnr", "ssim", "bicubic_psnr", "bicubic_ssim")}
    return Score(name="mean", **cols)
