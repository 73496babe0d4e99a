"""Fine-tune a pretrained x2 model on the user's images (``canstyle train-sr``).

Random HR crops, LR by antialiased bicubic downscaling, L1 loss, Adam with a
cosine-decayed learning rate, autocast in bf16 where the CPU has it natively.
A run lives in a numbered folder ``runs/00001-sr-<init>/`` holding
``config.json``, ``metrics.jsonl``, ``checkpoints/step-NNNNNN.pt`` (loadable with
``torch.load(weights_only=True)``) and, at the end, ``model.safetensors``,
which ``--model`` accepts. Resuming restores the network, the optimiser and the
patch sampler, so an interrupted run continues exactly where it stopped.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from canstyle.device import autocast, resolve_device, resolve_precision
from canstyle.errors import CanstyleError
from canstyle.fsutil import atomic_write, atomic_write_bytes
from canstyle.progress import Progress, ProgressCallback
from canstyle.sr.data import load_training_images, make_pairs, random_crops
from canstyle.sr.models import ARCHS
from canstyle.sr.zoo import arch_of, load_state

log = logging.getLogger(__name__)
KEEP_CHECKPOINTS = 2


def _opt(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass
class TrainOptions:
    """Fine-tuning knobs; the train-sr flags are generated from these fields."""

    steps: int = _opt(600, "total optimiser steps (a resumed run continues up to this)")
    init: str = _opt("cunet", "model to start from: a model name or a .safetensors file")
    batch_size: int = _opt(4, "patches per step")
    patch: int = _opt(96, "LR patch side in pixels, including the network's border "
                          "(training images need at least twice this)")
    lr: float = _opt(1e-4, "peak Adam learning rate (cosine-decayed to a tenth of it)")
    checkpoint_every: int = _opt(100, "save a checkpoint every N steps (and at the end)")

    def validate(self, offset: int, multiple: int) -> None:
        if self.steps < 1 or self.batch_size < 1 or self.checkpoint_every < 1:
            raise CanstyleError("--steps, --batch-size and --checkpoint-every must be >= 1")
        if self.patch <= 2 * offset or self.patch % multiple:
            raise CanstyleError(f"--patch must exceed {2 * offset} px and be a multiple of "
                                f"{multiple} for this model, got {self.patch}")
        if not (self.lr > 0 and math.isfinite(self.lr)):  # inf would train a NaN model
            raise CanstyleError(f"--lr must be a positive finite number, got {self.lr}")


def next_run_path(out: Path, tag: str) -> Path:
    """The next numbered run folder in ``out``, not created yet."""
    if out.exists() and not out.is_dir():
        raise CanstyleError(f"--out must be a folder, and {out} is a file")
    nums = [int(p.name[:5]) for p in out.iterdir() if p.is_dir() and p.name[:5].isdigit()] if out.is_dir() else []
    return out / f"{max(nums, default=0) + 1:05d}-sr-{tag}"


def next_run_dir(out: Path, tag: str) -> Path:
    """Make the next numbered run folder; a run started at the same moment takes the next one."""
    for _ in range(100):
        run = next_run_path(out, tag)
        try:
            run.mkdir(parents=True)
            return run
        except FileExistsError:
            continue
    raise CanstyleError(f"could not make a run folder in {out}")


def read_checkpoint(path: Path) -> dict[str, Any]:
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        missing = {"step", "model", "optim", "gen", "arch", "options"} - set(ckpt)
    except (OSError, RuntimeError, EOFError, TypeError) as e:
        raise CanstyleError(f"cannot read checkpoint {path}: {e}") from None
    if missing:
        raise CanstyleError(f"{path} is not a train-sr checkpoint (missing {', '.join(sorted(missing))})")
    return ckpt


def find_checkpoint(resume: str, out: Path) -> Path:
    """A checkpoint file from a path to one, to a run folder, or "latest" (newest run in out)."""
    path = Path(resume)
    if resume == "latest":
        runs = sorted(p for p in out.glob("[0-9][0-9][0-9][0-9][0-9]-sr-*") if p.is_dir()) if out.is_dir() else []
        runs = [r for r in runs if list((r / "checkpoints").glob("step-*.pt"))]
        if not runs:
            raise CanstyleError(f"--resume: no SR run with checkpoints in {out}")
        path = runs[-1]
    if path.is_dir():
        ckpts = sorted((path / "checkpoints").glob("step-*.pt"))
        if not ckpts:
            raise CanstyleError(f"--resume: no checkpoints in {path}")
        return ckpts[-1]
    if not path.is_file():
        raise CanstyleError(f"--resume: no such checkpoint or run folder: {path}")
    return path


class Trainer:
    """One fine-tuning run: call ``fit(images)``; resumable from its checkpoints."""

    def __init__(self, opts: TrainOptions, run_dir: Path, device: str = "auto",
                 precision: str = "auto", seed: int = 0, checkpoint: dict | None = None) -> None:
        from canstyle.sr.models import build

        if checkpoint is None:
            self.arch, state = load_state(opts.init)
        else:  # resuming: the checkpoint has everything, the --init weights may be gone
            self.arch, state = checkpoint["arch"], checkpoint["model"]
        self.net = build(self.arch)
        try:
            self.net.load_state_dict(state)
        except RuntimeError as e:
            source = opts.init if checkpoint is None else "the checkpoint's"
            raise CanstyleError(f"{source} weights do not fit the {self.arch} network: {e}") from None
        opts.validate(self.net.offset, self.net.pad_multiple)
        self.opts, self.run_dir, self.seed = opts, run_dir, seed
        self.device = resolve_device(device)
        self.dtype = resolve_precision(precision, self.device)
        self.net.to(self.device).train()
        self.optim = torch.optim.Adam(self.net.parameters(), lr=opts.lr)
        self.gen = torch.Generator().manual_seed(seed)
        self.step = 0
        if checkpoint is not None:
            self.optim.load_state_dict(checkpoint["optim"])
            self.gen.set_state(checkpoint["gen"])
            self.step = int(checkpoint["step"])

    # -- persistence ------------------------------------------------------
    def save_config(self, sources: list[str]) -> None:
        cfg = {"options": asdict(self.opts), "arch": self.arch, "seed": self.seed,
               "device": str(self.device), "precision": str(self.dtype).replace("torch.", ""),
               "images": sources}
        atomic_write_bytes(self.run_dir / "config.json", json.dumps(cfg, indent=1).encode())

    def save_checkpoint(self) -> Path:
        ckpt = {"step": self.step, "model": self.net.state_dict(), "optim": self.optim.state_dict(),
                "gen": self.gen.get_state(), "arch": self.arch, "options": asdict(self.opts)}
        path = self.run_dir / "checkpoints" / f"step-{self.step:06d}.pt"
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda tmp: torch.save(ckpt, tmp), overwrite=True)
        for old in sorted(path.parent.glob("step-*.pt"))[:-KEEP_CHECKPOINTS]:
            old.unlink()
        return path

    def export(self, path: Path | None = None) -> Path:
        """The current weights as safetensors that ``--model`` and ``--init`` accept."""
        path = path or self.run_dir / "model.safetensors"
        state = {k: v.detach().float().cpu().contiguous() for k, v in self.net.state_dict().items()}
        meta = {"arch": self.arch, "init": self.opts.init, "steps": str(self.step),
                "license": "derived from waifu2x (MIT)"}
        return atomic_write(path, lambda tmp: save_file(state, str(tmp), metadata=meta), overwrite=True)

    # -- training ---------------------------------------------------------
    def _lr_at(self, step: int) -> float:
        t = min(step / self.opts.steps, 1.0)
        return self.opts.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))

    def train_step(self, images: list[torch.Tensor]) -> float:
        hr = random_crops(images, self.opts.batch_size, 2 * self.opts.patch, self.gen)
        lr_img, target = make_pairs(hr.to(self.device), self.net.offset)
        for g in self.optim.param_groups:
            g["lr"] = self._lr_at(self.step)
        with autocast(self.device, self.dtype):
            out = self.net(lr_img)
        loss = F.l1_loss(out.float(), target)
        self.optim.zero_grad(set_to_none=True)
        loss.backward()
        self.optim.step()
        self.step += 1
        return float(loss.detach())

    def fit(self, images: list[torch.Tensor], callback: ProgressCallback | None = None,
            on_checkpoint: Any = None) -> Path:
        """Train up to ``opts.steps``; returns the exported ``model.safetensors``."""
        metrics = self.run_dir / "metrics.jsonl"
        while self.step < self.opts.steps:
            loss = self.train_step(images)
            with open(metrics, "a", encoding="utf-8") as f:
                f.write(json.dumps({"step": self.step, "loss": loss, "lr": self._lr_at(self.step - 1)}) + "\n")
            if callback is not None:
                callback(Progress("train-sr", self.step, self.opts.steps, loss=loss,
                                  size=(2 * self.opts.patch, 2 * self.opts.patch)))
            if self.step % self.opts.checkpoint_every == 0 or self.step == self.opts.steps:
                self.save_checkpoint()
                if on_checkpoint is not None:
                    on_checkpoint(self)
        return self.export()


def validator(paths: list[Path], crop: int = 0) -> Any:
    """An ``on_checkpoint`` hook that logs PSNR(Y) on ``paths`` (eval-sr protocol) to metrics."""
    from canstyle.sr.evaluate import evaluate, mean_score
    from canstyle.sr.upscaler import Upscaler

    def hook(trainer: Trainer) -> None:
        up = Upscaler(trainer.net, str(trainer.device), "fp32", tile=0)
        m = mean_score(evaluate(paths, up, scale=2, crop=crop))
        rec = {"step": trainer.step, "val_psnr": m.psnr, "val_ssim": m.ssim, "val_bicubic_psnr": m.bicubic_psnr}
        log.info("step %d: validation PSNR(Y) %.3f dB (bicubic %.3f)", trainer.step, m.psnr, m.bicubic_psnr)
        with open(trainer.run_dir / "metrics.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(rec) + "\n")

    return hook


def train(paths: list[Path], out: Path, opts: TrainOptions, resume: str | None = None,
          device: str = "auto", precision: str = "auto", seed: int = 0,
          callback: ProgressCallback | None = None, on_checkpoint: Any = None) -> Path:
    """Fine-tune on ``paths``; a new numbered run in ``out``, or the resumed one."""
    ckpt_path = find_checkpoint(resume, out) if resume else None
    ckpt = read_checkpoint(ckpt_path) if ckpt_path else None
    if ckpt is not None:
        opts = TrainOptions(**{**ckpt["options"], "steps": opts.steps})  # only --steps may change
    arch = ARCHS[ckpt["arch"] if ckpt else arch_of(opts.init)]
    opts.validate(arch.offset, arch.pad_multiple)  # type: ignore[attr-defined]
    images = load_training_images(paths, 2 * opts.patch)  # both before making a run folder
    if ckpt_path is not None:
        run_dir = ckpt_path.parent.parent
        trainer = Trainer(opts, run_dir, device, precision, checkpoint=ckpt)
        _truncate_metrics(run_dir / "metrics.jsonl", trainer.step)
        log.info("resuming %s at step %d", run_dir, trainer.step)
    else:
        tag = Path(opts.init).stem if opts.init.endswith(".safetensors") else opts.init
        # The trainer loads --init and resolves the device first: if either fails, no empty run is
        # left. The folder is numbered only then, so two runs started together still get their own.
        trainer = Trainer(opts, next_run_path(out, tag), device, precision, seed)
        trainer.run_dir = next_run_dir(out, tag)
        trainer.save_config([str(p) for p in paths])
    return trainer.fit(images, callback, on_checkpoint)


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop metric lines logged after the checkpoint we resume from."""
    if not path.exists():
        return
    lines = [ln for ln in path.read_text().splitlines() if ln and json.loads(ln)["step"] <= step]
    atomic_write_bytes(path, ("\n".join(lines) + "\n" if lines else "").encode())
