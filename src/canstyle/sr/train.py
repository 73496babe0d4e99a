"""Fine-tune a pretrained x2 model on the user's images (``canstyle train-sr``).

Random HR crops, LR by antialiased bicubic downscaling, L1 loss, Adam with a
cosine-decayed learning rate, autocast in bf16 where the CPU has it natively.
A run lives in a numbered folder ``runs/00000-sr-<init>/`` (see ``canstyle.runs``)
holding ``config.json``, ``metrics.jsonl``, ``checkpoints/stepNNNNNNNN.pt`` (loadable
with ``torch.load(weights_only=True)``; older runs' ``step-NNNNNN.pt`` load too) and,
at the end, ``model.safetensors``, which ``--sr-model`` accepts. Resuming restores the
network, the optimiser and the patch sampler, so an interrupted run continues exactly
where it stopped.
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

from canstyle import runs
from canstyle.device import autocast, resolve_device, resolve_precision
from canstyle.errors import CanstyleError
from canstyle.fsutil import atomic_write, content_fingerprint
from canstyle.progress import Progress, ProgressCallback
from canstyle.sr.data import load_training_images, make_pairs, random_crops
from canstyle.sr.models import ARCHS, build
from canstyle.sr.zoo import arch_of, load_state

log = logging.getLogger(__name__)
KEEP_CHECKPOINTS = 2
CONFIG_KEYS = ("options", "arch", "seed", "images")  # what tells an SR run's config.json


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


def read_checkpoint(path: Path) -> dict[str, Any]:
    ckpt = runs.load_checkpoint(path)
    missing = {"step", "model", "optim", "gen", "arch", "options"} - set(ckpt)
    if missing:
        raise CanstyleError(f"{path} is not a train-sr checkpoint (missing {', '.join(sorted(missing))})")
    return ckpt


def run_config(resume: str, out: Path) -> dict[str, Any]:
    """The config.json of the SR run that ``--resume`` means (see ``runs.resolve_resume``)."""
    run = runs.resolve_resume(resume, out, "sr").run
    return runs.read_config(run, CONFIG_KEYS, "train-sr")  # refuses a CAN run's config.json


class Trainer:
    """One fine-tuning run: call ``fit(images)``; resumable from its checkpoints."""

    def __init__(self, opts: TrainOptions, run_dir: Path, device: str = "auto",
                 precision: str = "auto", seed: int = 0, checkpoint: dict | None = None) -> None:
        """``run_dir`` exists already; the trainer writes only into it, and only from ``fit``
        and the ``save_*`` methods."""
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
        runs.write_config(self.run_dir, cfg)

    def save_checkpoint(self) -> Path:
        ckpt = {"step": self.step, "model": self.net.state_dict(), "optim": self.optim.state_dict(),
                "gen": self.gen.get_state(), "arch": self.arch, "options": asdict(self.opts)}
        return runs.save_checkpoint(self.run_dir, self.step, ckpt, KEEP_CHECKPOINTS)

    def export(self, path: Path | None = None) -> Path:
        """The current weights as safetensors that ``--sr-model`` and ``--init`` accept."""
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
        metrics = runs.MetricsLog(self.run_dir / runs.METRICS)
        while self.step < self.opts.steps:
            loss = self.train_step(images)
            metrics.append({"step": self.step, "loss": loss, "lr": self._lr_at(self.step - 1)})
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
        runs.MetricsLog(trainer.run_dir / runs.METRICS).append(rec)

    return hook


def train(paths: list[Path], out: Path, opts: TrainOptions, resume: str | None = None,
          device: str = "auto", precision: str = "auto", seed: int = 0,
          callback: ProgressCallback | None = None, on_checkpoint: Any = None) -> Path:
    """Fine-tune on ``paths``; a new numbered run in ``out``, or the resumed one."""
    if resume:
        r = runs.resolve_resume(resume, out, "sr")
        paths = _run_images(r.run, paths)
        ckpt = read_checkpoint(r.checkpoint) if r.checkpoint is not None else None
        opts, seed = _resumed_options(r.run, ckpt, opts.steps)
        images = _load_images(paths, opts, ckpt["arch"] if ckpt else arch_of(opts.init))
        trainer = Trainer(opts, r.run, device, precision, seed, checkpoint=ckpt)
        runs.MetricsLog(r.run / runs.METRICS).truncate(trainer.step)
        runs.remove_partial_files(r.run)
        log.info("resuming %s at step %d", r.run, trainer.step)
        if trainer.step >= opts.steps:  # only the export is left to do
            log.warning("run %s is already at step %d (--steps %d): nothing to train; give a "
                        "larger --steps to continue it", r.run, trainer.step, opts.steps)
    else:
        images = _load_images(paths, opts, arch_of(opts.init))  # a bad image makes no run folder
        tag = Path(opts.init).stem if opts.init.endswith(".safetensors") else opts.init
        # The trainer loads --init and resolves the device: if either fails, the folder goes again.
        with runs.new_run(out, f"sr-{tag}") as run:
            trainer = Trainer(opts, run, device, precision, seed)
        trainer.save_config([str(p.resolve()) for p in paths])  # resumable from any folder
    return trainer.fit(images, callback, on_checkpoint)


def _run_images(run: Path, paths: list[Path]) -> list[Path]:
    """``paths`` in the run's own order, refused unless they are the images it was trained on:
    its checkpoints' sampler and its config.json assume them, as a CAN run assumes its styles."""
    try:
        saved = json.loads((run / runs.CONFIG).read_text()).get("images")
    except (OSError, ValueError, AttributeError):
        return paths  # no readable image list to hold them to
    if not isinstance(saved, list) or not all(isinstance(p, str) for p in saved):
        return paths
    old = [Path(p) for p in saved]
    refuse = CanstyleError(f"--resume: {run} was trained on other images (the {len(saved)} in its "
                           f"{runs.CONFIG}, not these {len(paths)}); give none to continue on its own, "
                           "or start a new run without --resume")
    if not all(p.is_file() for p in old):  # moved since: only the number can be checked
        if len(old) != len(paths):
            raise refuse
        log.warning("--resume: the run's images are no longer where its %s says; continuing on the "
                    "%d given", runs.CONFIG, len(paths))
        return paths
    # Compared by content, not path: the same files named from another folder are the same images.
    given = {content_fingerprint(p): p for p in paths}
    ordered = [given.get(content_fingerprint(p)) for p in old]
    if len(given) != len(paths) or None in ordered or len(ordered) != len(paths):
        raise refuse
    return [p for p in ordered if p is not None]  # the run's own order


def _load_images(paths: list[Path], opts: TrainOptions, arch_name: str) -> list[torch.Tensor]:
    arch = ARCHS[arch_name]
    opts.validate(arch.offset, arch.pad_multiple)  # type: ignore[attr-defined]
    return load_training_images(paths, 2 * opts.patch)


def _resumed_options(run: Path, ckpt: dict[str, Any] | None, steps: int) -> tuple[TrainOptions, int]:
    """The run's own options (only --steps may change) and seed."""
    if ckpt is not None:  # the patch sampler's state comes from the checkpoint, not the seed
        saved, seed = ckpt["options"], 0
    else:  # killed before its first checkpoint: the same run again from step 0
        cfg = runs.read_config(run, CONFIG_KEYS, "train-sr")
        saved, seed = cfg["options"], int(cfg["seed"])
    known = {k: v for k, v in saved.items() if k in TrainOptions.__dataclass_fields__}
    return TrainOptions(**{**known, "steps": steps}), seed
