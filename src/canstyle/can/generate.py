"""Sampling from a trained CAN, and the small exported generator format.

``export_generator`` writes the EMA generator as safetensors whose metadata
holds the model config, class names and training summary as JSON.
``load_generator`` reads that file, a training checkpoint or a run folder and
returns ``(G, config, classes)``. ``CanGenerator`` wraps that triple as the
pipeline's first component: ``CanGenerator.load(path)(seeds)`` paints; ``generate``
is the one-shot form (``canstyle.generate``) and ``sample`` the loop over a bare network.
"""

from __future__ import annotations

import json
import math
import numbers
import operator
import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from canstyle.can.checkpoint import find_checkpoint, load_checkpoint
from canstyle.can.models import Generator, ModelConfig
from canstyle.errors import CanstyleError, first_line
from canstyle.fsutil import atomic_write
from canstyle.progress import Progress, ProgressCallback
from canstyle.seeds import MAX_SEED

EXPORT_FORMAT = "canstyle-can-generator/1"


def load_generator(src: str | os.PathLike[str], device: str | torch.device = "cpu"
                   ) -> tuple[Generator, ModelConfig, list[str]]:
    """An eval-mode generator from an export (.safetensors), a checkpoint or a run folder."""
    p = Path(src)
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file

        from canstyle.weights import read_metadata

        if not p.is_file():
            raise CanstyleError(f"no such generator: {p}")
        meta = read_metadata(p)
        if meta.get("format") != EXPORT_FORMAT:
            kind = f"format {meta['format']!r}" if meta.get("format") else "other weights, without a CAN's metadata"
            raise CanstyleError(f"{p} is not a canstyle CAN generator ({kind})")
        cfg, classes = ModelConfig.from_json(meta["config"]), json.loads(meta["classes"])
        try:
            state = {k: v.float() for k, v in load_file(str(p)).items()}
        except Exception as e:  # noqa: BLE001  (safetensors raises its own types for a cut-off file)
            raise CanstyleError(f"{p} is damaged or incomplete ({first_line(e)})") from None
    else:
        ckpt = load_checkpoint(find_checkpoint(p))
        cfg, classes, state = ModelConfig.from_json(ckpt["model"]), list(ckpt["classes"]), ckpt["G_ema"]
    g = Generator(cfg)
    try:
        g.load_state_dict(state)
    except RuntimeError:  # weights that do not fit the stored config: a damaged or edited file
        raise CanstyleError(f"{p}: the generator weights do not match its preset-{cfg.preset} config") from None
    return g.to(device).eval().requires_grad_(False), cfg, classes


@dataclass
class CanGenerator:
    """A trained CAN generator as a pipeline component: the network, its config and style names."""

    model: Generator
    config: ModelConfig
    classes: list[str]
    source: Path  # the weights file (a run folder resolves to its newest checkpoint)

    @classmethod
    def load(cls, src: str | os.PathLike[str] | None = None, device: str | torch.device = "cpu") -> CanGenerator:
        """The embedded default CAN (``src=None``), an export, a checkpoint or a run folder."""
        from canstyle.assets import DEFAULT_CAN
        from canstyle.device import resolve_device

        if src is None and not DEFAULT_CAN.is_file():
            raise CanstyleError(f"canstyle is missing its default CAN {DEFAULT_CAN.name}; reinstall canstyle")
        path = Path(src) if src is not None else DEFAULT_CAN
        if path.is_dir():  # record which checkpoint of the run was used
            path = find_checkpoint(path)
        model, config, classes = load_generator(path, resolve_device(str(device)))
        return cls(model, config, classes, path)

    @property
    def size(self) -> int:
        return self.config.size

    def __call__(self, seeds: list[int], truncation: float | None = None, *, batch: int = 32,
                 callback: ProgressCallback | None = None) -> torch.Tensor:
        """N x 3 x S x S paintings in [0, 1] (on the CPU), one per seed."""
        return sample(self.model, seeds, truncation, batch, callback)


def export_generator(src: str | os.PathLike[str], out: str | os.PathLike[str], half: bool = False,
                     overwrite: bool = False) -> Path:
    """Write the EMA generator of a checkpoint (or run) as a small safetensors file."""
    path = find_checkpoint(src)
    ckpt = load_checkpoint(path)
    extra = {"step": str(ckpt["step"]), "seed": str(ckpt.get("seed", "")),
             "options": ckpt.get("options", "{}"), "source": str(path.resolve())}
    return save_generator(ckpt["G_ema"], ckpt["model"], list(ckpt["classes"]), out, half=half,
                          overwrite=overwrite, extra=extra)


def save_generator(state: dict[str, torch.Tensor], config: str, classes: list[str],
                   out: str | os.PathLike[str], half: bool = False, overwrite: bool = False,
                   extra: dict[str, str] | None = None) -> Path:
    """Write generator weights plus their config (JSON) and class names as safetensors."""
    from safetensors.torch import save_file

    dtype = torch.float16 if half else torch.float32
    state = {k: (v.to(dtype) if v.is_floating_point() else v).contiguous() for k, v in state.items()}
    meta = {"format": EXPORT_FORMAT, "config": config, "classes": json.dumps(classes), **(extra or {})}
    return atomic_write(out, lambda tmp: save_file(state, str(tmp), metadata=meta), overwrite=overwrite)


MAX_IMAGES = 1_000_000  # a typo such as 0-99999999 should fail at once, not fill the disk


def parse_seeds(text: str) -> list[int]:
    """'0-15', '3,7,9' or '0-3,10' -> a list of distinct non-negative seeds, in order."""
    seeds: dict[int, None] = {}  # ordered set: '1,1' or '0-5,3' paint each seed once
    for part in (p.strip() for p in text.split(",") if p.strip()):
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        lo, hi = (int(m.group(1)), int(m.group(2) or m.group(1))) if m else (0, -1)
        if m is None or hi < lo:
            raise CanstyleError(f"bad --seeds {text!r}: use e.g. 0-15 or 1,5,9")
        if hi > MAX_SEED:
            raise CanstyleError(f"seed {hi} is too large (at most {MAX_SEED})")
        if hi - lo + 1 > MAX_IMAGES:  # checked before the range is built
            raise CanstyleError(f"--seeds {text!r} asks for more than {MAX_IMAGES:,} images")
        seeds.update(dict.fromkeys(range(lo, hi + 1)))
        if len(seeds) > MAX_IMAGES:
            raise CanstyleError(f"--seeds {text!r} asks for more than {MAX_IMAGES:,} images")
    if not seeds:
        raise CanstyleError("--seeds is empty")
    return list(seeds)


def check_truncation(truncation: float | None) -> None:
    if truncation is not None and not (math.isfinite(truncation) and truncation > 0):
        raise CanstyleError("--truncation must be a positive number")  # NaN would paint black


def check_seeds(seeds: object) -> list[int]:
    """A non-empty list of seeds in 0..MAX_SEED (numpy and 0-d tensor integers welcome)."""
    if isinstance(seeds, torch.Tensor):
        seeds = seeds.tolist()
    try:
        out = [operator.index(s) for s in seeds]  # type: ignore[attr-defined]
    except TypeError:
        raise TypeError(f"seeds must be a list of integers, got {seeds!r}") from None
    if not out:
        raise CanstyleError("no seeds given")
    bad = [s for s in out if not 0 <= s <= MAX_SEED]
    if bad:
        raise CanstyleError(f"seeds must be between 0 and {MAX_SEED}, got {bad[0]}")
    return out


def seed_noise(seed: int, z_dim: int, truncation: float | None = None) -> torch.Tensor:
    """The noise vector for ``seed``; with truncation T, entries beyond +-T are redrawn."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(z_dim, generator=g)
    if truncation is not None:
        check_truncation(truncation)
        for _ in range(1000):  # the expected number of rounds is tiny for any sane T
            bad = z.abs() > truncation
            if not bad.any():
                break
            z[bad] = torch.randn(int(bad.sum()), generator=g)
        z = z.clamp(-truncation, truncation)
    return z


@torch.no_grad()
def sample(g: Generator, seeds: list[int], truncation: float | None = None, batch: int = 32,
           callback: ProgressCallback | None = None) -> torch.Tensor:
    """Images N x 3 x S x S in [0, 1], one per seed; each depends only on its seed.

    ``callback`` gets one ``Progress("generate", done, total)`` per batch, like every long call.
    """
    seeds = check_seeds(seeds)
    if isinstance(batch, bool) or not isinstance(batch, numbers.Integral) or batch < 1:
        raise CanstyleError(f"batch must be a positive integer, got {batch!r}")
    device = next(g.parameters()).device
    g.eval()
    out = []
    for i in range(0, len(seeds), batch):
        z = torch.stack([seed_noise(s, g.z_dim, truncation) for s in seeds[i : i + batch]]).to(device)
        out.append(g.images(z).cpu())
        if callback is not None:
            callback(Progress("generate", min(i + batch, len(seeds)), len(seeds), size=tuple(out[-1].shape[-2:])))
    return torch.cat(out)


def generate(seeds: list[int], checkpoint: str | os.PathLike[str] | None = None, *,
             truncation: float | None = None, device: str = "auto",
             callback: ProgressCallback | None = None) -> torch.Tensor:
    """One-shot CAN paintings, N x 3 x S x S in [0, 1], from the embedded default CAN or ``checkpoint``.

    Like every one-shot function it keeps the model of its last call (``canstyle.oneshot``).
    """
    from canstyle.oneshot import reuse

    # The run folder resolved to its checkpoint, and keyed by the file's state: a run that gains
    # a newer checkpoint, or a replaced export, is loaded again rather than served stale.
    path = None if checkpoint is None else Path(checkpoint).resolve()
    if path is not None and path.is_dir():
        path = find_checkpoint(path)
    st = path.stat() if path is not None and path.exists() else None
    state = None if st is None else (st.st_size, st.st_mtime_ns)
    gen = reuse("generate", (path, state, device), lambda: CanGenerator.load(path, device))
    return gen(list(seeds), truncation, callback=callback)
