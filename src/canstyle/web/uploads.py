"""Uploaded photos and style paintings: checks, content-hash names, thumbnails, deletion.

An upload is checked from its header first (pixel limit, usable shape), then decoded once
with PIL at the smallest scale that still makes a good thumbnail (JPEG ``draft``), in 8-bit,
never as a full-size float tensor. The same bytes uploaded again are found by their hash
and cost nothing. The original bytes are kept only for jobs to decode; never served back.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import re
import threading
import time
import unicodedata
import warnings
from pathlib import Path
from typing import Any

from canstyle.errors import CanstyleError
from canstyle.fsutil import atomic_write_bytes

UPLOAD_ID = re.compile(r"[0-9a-f]{20}")
THUMB = 256  # long side of thumbnails
VIEW = 1280  # long side of the photo shown in the before/after viewer
MIN_SIDE = 32  # VGG needs this much; smaller images cannot be painted at any size
MAX_RATIO = 64  # long side / short side: beyond this no output size keeps both sides >= MIN_SIDE
HIGH_BIT = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")


class UploadTooLarge(CanstyleError):
    """An upload over the byte or pixel limit (HTTP 413)."""


def clean_name(name: str | None) -> str:
    """A file name for display only (alt text, messages); never used as a path."""
    text = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    # Control and format characters go, bidirectional overrides (U+202E) among them: they can make
    # "gpj.exe" display as "exe.jpg".
    text = "".join(c for c in text if unicodedata.category(c) not in ("Cc", "Cf")).strip()
    return text[:120]


def usable_shape_problem(w: int, h: int) -> str | None:
    """Why an image of w x h cannot be painted at any output size, or None."""
    if min(w, h) < MIN_SIDE:
        return f"is {w}×{h} pixels: both sides must be at least {MIN_SIDE} px"
    if max(w, h) > MAX_RATIO * min(w, h):
        return f"is {w}×{h} pixels: too thin (the long side may be at most {MAX_RATIO}× the short side)"
    return None


def _oriented_size(im: Any) -> tuple[int, int]:
    """The header's size after the EXIF rotation that loading applies."""
    w, h = im.size
    with contextlib.suppress(Exception):  # a broken EXIF block: loading ignores it too
        if im.getexif().get(0x0112) in (5, 6, 7, 8):
            return h, w
    return w, h


def jpeg_of(im: Any, long_side: int, quality: int = 85) -> bytes:
    """A small sRGB JPEG of a decoded PIL image (any mode), shrunk in 8 bits before conversion."""
    from canstyle.imageio import pil_to_loaded, tensor_to_pil

    if im.mode not in HIGH_BIT:
        im = im.copy()
        im.thumbnail((long_side, long_side))  # uses reduce() first: cheap for big images
    img = pil_to_loaded(im).rgb  # the same colour handling (ICC, 16-bit) as a job's load
    out = tensor_to_pil(img)
    out.thumbnail((long_side, long_side))
    buf = io.BytesIO()
    out.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


class Uploads:
    """Photos and style paintings under ``folder`` plus read-only bundled photos."""

    def __init__(self, folder: Path, bundled: dict[str, Path], max_pixels: int) -> None:
        self.dir = folder
        self.dir.mkdir(parents=True, exist_ok=True)
        self.bundled = bundled
        self.max_pixels = max_pixels
        self._decode_lock = threading.Lock()  # one decode at a time bounds memory

    def add(self, data: bytes, kind: str, name: str | None = None) -> dict[str, Any]:
        """Check, store and return the metadata; the same bytes again return the stored entry."""
        uid = hashlib.sha256(kind.encode() + b"\0" + data).hexdigest()[:20]
        known = self._meta(uid)
        if known is not None and (self.dir / f"{uid}.img").is_file() and (self.dir / f"{uid}.thumb.jpg").is_file():
            return known
        label = clean_name(name) or "the upload"
        with self._decode_lock:
            w, h, mode, thumb = self._decode(data, label)
        meta = {"id": uid, "kind": kind, "name": clean_name(name), "width": w, "height": h, "bytes": len(data),
                "mode": mode, "created": time.time()}
        atomic_write_bytes(self.dir / f"{uid}.img", data)
        atomic_write_bytes(self.dir / f"{uid}.thumb.jpg", thumb)
        atomic_write_bytes(self.dir / f"{uid}.json", json.dumps(meta).encode())  # last: marks it complete
        return meta

    def _decode(self, data: bytes, label: str) -> tuple[int, int, str, bytes]:
        from PIL import Image, ImageOps, UnidentifiedImageError

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                im = Image.open(io.BytesIO(data))  # reads the header only
        except Image.DecompressionBombError:
            raise UploadTooLarge(f"{label} is too large to decode safely") from None
        except UnidentifiedImageError:
            raise CanstyleError(f"{label} is not an image (or an unsupported format)") from None
        except OSError as e:
            raise CanstyleError(f"cannot read {label}: {e}") from None
        with im:
            w, h = _oriented_size(im)
            if w * h > self.max_pixels:
                raise UploadTooLarge(f"{label} is too large: {w}×{h} = {w * h / 1e6:.1f} MP, "
                                     f"the limit is {self.max_pixels / 1e6:.1f} MP")
            problem = usable_shape_problem(w, h)
            if problem is not None:
                raise CanstyleError(f"{label} {problem}")
            mode = im.mode
            try:
                im.draft(mode, (THUMB, THUMB))  # JPEG: decode at 1/2..1/8 scale
                im.load()  # decodes every byte, so truncated files fail here
                im = ImageOps.exif_transpose(im)
                thumb = jpeg_of(im, THUMB)
            except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
                raise CanstyleError(f"cannot decode {label}: {e}") from None
        return w, h, mode, thumb

    def _meta(self, uid: str) -> dict[str, Any] | None:
        try:
            meta = json.loads((self.dir / f"{uid}.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return meta if isinstance(meta, dict) and meta.get("id") == uid else None

    def list(self, kind: str) -> list[dict[str, Any]]:
        """Uploaded images of one kind, newest first; bundled photos after them."""
        out = []
        for p in self.dir.glob("*.json"):
            meta = self._meta(p.stem)
            if meta is not None and meta.get("kind") == kind and UPLOAD_ID.fullmatch(p.stem):
                out.append(meta)
        out.sort(key=lambda m: m.get("created", 0), reverse=True)
        if kind == "photo":
            out += [{"id": k, "kind": "photo", "bundled": True, "name": p.name} for k, p in self.bundled.items()]
        return out

    def get(self, source_id: str) -> dict[str, Any]:
        """Metadata of an upload or bundled photo (KeyError if unknown)."""
        if source_id in self.bundled:
            from canstyle.imageio import image_size

            w, h = image_size(self.bundled[source_id])
            return {"id": source_id, "kind": "photo", "bundled": True, "name": self.bundled[source_id].name,
                    "width": w, "height": h}
        self.path(source_id)
        meta = self._meta(source_id)
        if meta is None:
            raise KeyError(source_id)
        return meta

    def path(self, source_id: str) -> Path:
        """The stored image of an upload or bundled photo id (KeyError if unknown)."""
        if source_id in self.bundled:
            return self.bundled[source_id]
        if UPLOAD_ID.fullmatch(source_id) and (self.dir / f"{source_id}.img").is_file():
            return self.dir / f"{source_id}.img"
        raise KeyError(source_id)

    def thumb_path(self, source_id: str) -> Path:
        if source_id in self.bundled:
            return self.bundled[source_id]
        self.path(source_id)  # validates the id
        return self.dir / f"{source_id}.thumb.jpg"

    def view_path(self, source_id: str) -> Path:
        """A JPEG of the photo at viewing size (made once, on first use), for before/after."""
        if source_id in self.bundled:
            return self.bundled[source_id]
        src = self.path(source_id)
        out = self.dir / f"{source_id}.view.jpg"
        if not out.is_file():
            from PIL import Image, ImageOps

            with self._decode_lock, Image.open(src) as im:
                im.draft(im.mode, (VIEW, VIEW))
                im.load()
                atomic_write_bytes(out, jpeg_of(ImageOps.exif_transpose(im), VIEW, quality=90))
        return out

    def delete(self, source_id: str) -> None:
        """Remove an upload and every file made from it (bundled photos cannot be deleted)."""
        if source_id in self.bundled:
            raise CanstyleError("bundled photos cannot be deleted")
        self.path(source_id)
        for suffix in (".json", ".img", ".thumb.jpg", ".view.jpg"):  # .json first: no half-listed entry
            with contextlib.suppress(FileNotFoundError):
                (self.dir / f"{source_id}{suffix}").unlink()
