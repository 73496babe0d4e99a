"""Image loading and saving shared by every stage.

Inside the package an image is a float32 tensor shaped 1x3xHxW, RGB, in [0, 1].
Loading applies EXIF orientation, converts embedded ICC profiles to sRGB,
handles every common PIL mode and refuses decompression bombs with a clear
error. Saving writes PNG (parameters in text chunks) or JPEG (quality 95)
atomically and never overwrites silently.
"""

from __future__ import annotations

import io
import json
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageCms, ImageOps, PngImagePlugin, UnidentifiedImageError

from canstyle.errors import CanstyleError
from canstyle.fsutil import atomic_write

MAX_PIXELS = 100_000_000  # 10k x 10k; larger inputs are almost surely a mistake or a bomb
METADATA_KEY = "canstyle"
log = logging.getLogger("canstyle")
_SRGB = ImageCms.createProfile("sRGB")


@dataclass
class LoadedImage:
    rgb: torch.Tensor  # 1x3xHxW float32 in [0, 1]
    alpha: torch.Tensor | None  # 1x1xHxW float32 in [0, 1], or None
    path: Path | None = None
    mode: str = "RGB"  # the file's original PIL mode


def _open_header(src: str | os.PathLike[str] | bytes, max_pixels: int) -> tuple[Image.Image, Path | None, str]:
    """Open lazily (the header only) and check the size, so huge or foreign files fail cheaply."""
    path = None if isinstance(src, bytes) else Path(src)
    if path is not None:
        if not path.exists():
            raise CanstyleError(f"no such file: {path}")
        if path.is_dir():
            raise CanstyleError(f"expected an image file, got a folder: {path}")
    name = str(path) if path is not None else "<upload>"
    fp: Any = io.BytesIO(src) if isinstance(src, bytes) else path
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(fp)
    except UnidentifiedImageError:
        raise CanstyleError(f"not an image (or an unsupported format): {name}") from None
    except Image.DecompressionBombError:
        raise CanstyleError(f"image is too large to load safely: {name}") from None
    except OSError as e:
        raise CanstyleError(f"cannot read image {name}: {e}") from None
    w, h = im.size
    if w * h > max_pixels:
        im.close()
        raise CanstyleError(
            f"image is too large: {name} is {w}x{h} = {w * h / 1e6:.0f} MP, limit {max_pixels / 1e6:.0f} MP"
        )
    if w < 1 or h < 1:
        im.close()
        raise CanstyleError(f"image has no pixels: {name}")
    return im, path, name


def image_size(src: str | os.PathLike[str], max_pixels: int = MAX_PIXELS) -> tuple[int, int]:
    """(width, height) of a loadable image, read from its header without decoding the pixels."""
    im, _, _ = _open_header(src, max_pixels)
    with im:
        return im.size


def _open(src: str | os.PathLike[str] | bytes, max_pixels: int) -> tuple[Image.Image, Path | None]:
    im, path, name = _open_header(src, max_pixels)
    try:
        im.load()  # decode now, so truncated files fail here with a clear message
        im = ImageOps.exif_transpose(im)
    except (OSError, SyntaxError, ValueError) as e:
        raise CanstyleError(f"cannot decode image {name}: {e}") from None
    return im, path


def _to_srgb(im: Image.Image) -> Image.Image:
    """Apply an embedded ICC profile so colours are right (CMYK, Adobe RGB, ...)."""
    icc = im.info.get("icc_profile")
    if not icc or im.mode not in ("RGB", "RGBA", "CMYK", "L", "LA"):
        return im
    try:
        src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        out_mode = "RGBA" if im.mode in ("RGBA", "LA") else "RGB"
        if im.mode in ("L", "LA"):
            return im  # grey ICC profiles are rare and harmless to ignore
        return ImageCms.profileToProfile(im, src, _SRGB, outputMode=out_mode)
    except (ImageCms.PyCMSError, OSError, ValueError):
        return im  # a broken profile should not make the image unusable


def _high_bit_to_array(im: Image.Image) -> np.ndarray:
    """16-bit / 32-bit / float single-channel modes to an HxW float array in [0, 1]."""
    arr = np.asarray(im)
    if im.mode == "F":
        lo, hi = float(arr.min()), float(arr.max())
        return (arr - lo) / (hi - lo) if hi > lo else np.zeros_like(arr, dtype=np.float32)
    arr = arr.astype(np.float32)
    # "I" from a 16-bit PNG holds 0..65535; genuine 32-bit data is rescaled by its range.
    top = 65535.0 if arr.max() <= 65535 else float(arr.max())
    return np.clip(arr / top, 0.0, 1.0)


def pil_to_loaded(im: Image.Image, path: Path | None = None) -> LoadedImage:
    mode = im.mode
    alpha = None
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        grey = _high_bit_to_array(im)
        rgb = np.repeat(grey[:, :, None], 3, axis=2)
    else:
        if mode == "P":
            im = im.convert("RGBA" if "transparency" in im.info else "RGB")
        elif mode in ("PA", "La", "RGBa"):
            im = im.convert("RGBA")
        im = _to_srgb(im)
        if im.mode in ("RGBA", "LA"):
            alpha = np.asarray(im.getchannel("A"), dtype=np.float32) / 255.0
            if alpha.min() >= 1.0:
                alpha = None  # fully opaque: no need to carry it around
        rgb = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
    t = torch.from_numpy(np.ascontiguousarray(rgb, dtype=np.float32)).permute(2, 0, 1)[None]
    a = None if alpha is None else torch.from_numpy(np.ascontiguousarray(alpha))[None, None]
    return LoadedImage(rgb=t.contiguous(), alpha=a, path=path, mode=mode)


def load_image(
    src: str | os.PathLike[str] | bytes, max_pixels: int = MAX_PIXELS
) -> LoadedImage:
    """Load an image file (or bytes) as RGB in [0, 1], keeping alpha separately."""
    im, path = _open(src, max_pixels)
    return pil_to_loaded(im, path)


def load_rgb(src: str | os.PathLike[str] | bytes, max_pixels: int = MAX_PIXELS) -> torch.Tensor:
    return load_image(src, max_pixels).rgb


def alpha_for(loaded: LoadedImage, result: torch.Tensor) -> torch.Tensor | None:
    """The loaded image's transparency at the size of ``result`` (made from it), or None.

    Bicubic, antialiased when shrinking, clamped to [0, 1]: the resampling style transfer
    uses for its images, so the mask lines up with the painted photo.
    """
    from canstyle.imageops import resize_to

    return None if loaded.alpha is None else resize_to(loaded.alpha, (result.shape[-2], result.shape[-1]))


def tensor_to_pil(img: torch.Tensor, alpha: torch.Tensor | None = None) -> Image.Image:
    """1x3xHxW (or 3xHxW) float in [0, 1] to an 8-bit PIL image, rounding to nearest."""
    if img.dim() == 4:
        if img.shape[0] != 1:
            raise CanstyleError(f"one image at a time: got a batch of {img.shape[0]}")
        img = img[0]
    if img.dim() != 3 or img.shape[0] != 3:
        raise CanstyleError(f"expected a 1x3xHxW image tensor, got shape {tuple(img.shape)}")
    arr = img.detach().float().clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).cpu().numpy()
    im = Image.fromarray(arr, "RGB")
    if alpha is not None:
        a = alpha.reshape(alpha.shape[-2:]).detach().float().clamp(0, 1).mul(255).round().byte()
        im.putalpha(Image.fromarray(a.cpu().numpy(), "L"))
    return im


def encode_metadata(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True, default=str)


# The files a folder given as input is searched for, by every command that takes folders.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif")
# Image names canstyle cannot read or write, which still must not name an output folder.
FOREIGN_IMAGE_SUFFIXES = (".avif", ".heic")


def check_output_folder(folder: str | os.PathLike[str]) -> Path:
    """Refuse an image file's name where an output folder is wanted: "-o sample.png" would
    otherwise become a folder called sample.png."""
    p = Path(folder)
    if p.suffix.lower() in IMAGE_SUFFIXES + FOREIGN_IMAGE_SUFFIXES and not p.is_dir():
        raise CanstyleError(f"-o {p} names an image file, but this command writes a folder of images; "
                            "give a folder name")
    return p


def check_output_format(path: str | os.PathLike[str]) -> str:
    """The lower-case suffix of an output path, if canstyle can write it."""
    ext = Path(path).suffix.lower()
    if ext not in (".png", ".jpg", ".jpeg"):
        raise CanstyleError(f"unsupported output format {ext or '(none)'!r}: use .png or .jpg")
    return ext


def save_image(
    img: torch.Tensor | Image.Image,
    path: str | os.PathLike[str],
    params: dict[str, Any] | None = None,
    alpha: torch.Tensor | None = None,
    overwrite: bool = False,
) -> Path:
    """Save atomically as PNG (params in a text chunk) or JPEG (quality 95)."""
    out = Path(path)
    ext = check_output_format(out)
    im = img if isinstance(img, Image.Image) else tensor_to_pil(img, alpha)
    meta = encode_metadata(params or {})

    def write(tmp: Path) -> None:
        if ext == ".png":
            info = PngImagePlugin.PngInfo()
            info.add_text("Software", "canstyle")
            info.add_itxt(METADATA_KEY, meta)
            im.save(tmp, format="PNG", pnginfo=info)
        else:
            _flatten(im, out).save(tmp, format="JPEG", quality=95, comment=meta.encode())

    return atomic_write(out, write, overwrite=overwrite)


def _flatten(im: Image.Image, out: Path) -> Image.Image:
    """RGB for a JPEG. Transparent parts go on white: dropping the alpha would show whatever
    colour the transparent pixels happened to hold (often black)."""
    bands = im.getbands()
    if "A" in bands or "a" in bands or "transparency" in im.info:  # RGBA, LA, PA, RGBa, tRNS
        try:
            rgba = im.convert("RGBA")
        except ValueError:  # e.g. premultiplied "La", which Pillow cannot convert
            raise CanstyleError(f"cannot write a {im.mode} image as JPEG: save it as .png") from None
        if rgba.getchannel("A").getextrema()[0] < 255:
            log.warning("%s: JPEG has no transparency; transparent parts are white (save as .png to keep them)", out)
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        flat = Image.alpha_composite(white, rgba)
        return flat.convert("L" if bands[0] == "L" else "RGB")  # grey in, grey out
    return im.convert("RGB") if im.mode != "RGB" else im


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The parameters canstyle stored in a PNG or JPEG it wrote ({} if none)."""
    with Image.open(path) as im:
        raw = im.info.get(METADATA_KEY) or im.info.get("comment")
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", "replace")
    try:
        return json.loads(raw) if raw else {}
    except json.JSONDecodeError:
        return {}
