"""CAN training: options, run folders, the loop, checkpoints, samples, metrics.

``train()`` runs on one process, or on many under ``torchrun`` (DDP: NCCL on
CUDA, gloo on CPU) with the same arguments; only rank 0 writes files.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from canstyle import runs
from canstyle.can import checkpoint as ck
from canstyle.can import dist as dd
from canstyle.can.data import Cache, Listing, class_weights, ensure_cache, is_cache
from canstyle.can.dataset import Batches, Selection, parse_augment, select, step_generator
from canstyle.can.losses import ADV_LOSSES, AMBIGUITY_FORMS
from canstyle.can.models import PRESETS, UPSAMPLE, ModelConfig
from canstyle.can.sources import SourceArg, as_sources, parse_styles
from canstyle.can.trainer import METRICS, StopFlag, Trainer
from canstyle.device import precision_name, resolve_device, resolve_precision
from canstyle.errors import CanstyleError
from canstyle.fsutil import check_writable_folder

# Imported here, not lazily in the loop: a package upgraded under an hours-long run must not
# break its first sample grid (session 13 lost three runs' last 500 steps that way).
from canstyle.imageio import save_image
from canstyle.imageops import make_grid
from canstyle.progress import Progress, ProgressCallback
from canstyle.seeds import draw_seed

log = logging.getLogger(__name__)


def _opt(default: Any, help: str, **meta: Any) -> Any:
    return field(default=default, metadata={"help": help, **meta})


@dataclass
class TrainOptions:
    """Every training knob; the ``canstyle train`` flags are generated from these fields."""

    preset: int = _opt(64, "image size / architecture (256 = the paper's)", choices=tuple(PRESETS))
    steps: int = _opt(20000, "total training steps (D update + G update each)")
    batch_size: int = _opt(64, "global batch size, split across processes")
    lr_g: float = _opt(2e-4, "generator Adam learning rate")
    lr_d: float = _opt(2e-4, "discriminator Adam learning rate")
    beta1: float = _opt(0.5, "Adam beta1 (DCGAN/CAN use 0.5)")
    beta2: float = _opt(0.999, "Adam beta2")
    ambiguity_weight: float = _opt(1.0, "lambda for the style-ambiguity loss; 0 = plain GAN")
    ambiguity_form: str = _opt("paper", "style-ambiguity loss form", choices=AMBIGUITY_FORMS)
    adv_loss: str = _opt("nonsat", "adversarial loss", choices=ADV_LOSSES)
    style_weight: float = _opt(1.0, "weight of D's style cross-entropy on real images")
    balance_styles: bool = _opt(True, "inverse-frequency class weights for the style head")
    spectral_norm: bool = _opt(False, "spectral norm in D instead of the paper's BatchNorm D "
                                      "(at preset 64 on small data its D stays at chance and G "
                                      "collapses to tiled textures; see docs/can.md)")
    augment: str = _opt("translation,cutout", "DiffAugment ops for D's inputs (comma list or none)")
    ema_decay: float = _opt(0.999, "EMA generator decay")
    crop_min: float = _opt(0.5, "smallest random crop, as a fraction of the painting's short side")
    styles: str = _opt("", "comma list of styles to train on ('paper' = its 25), default all")
    min_images: int = _opt(0, "drop styles with fewer images than this")
    cache_size: int = _opt(0, "short side of cached images when DATA is not a cache (0 = 2 x preset)")
    width: float = _opt(1.0, "channel multiplier of both networks (1 = the preset as published)")
    upsample: str = _opt("deconv", "G's up-sampling: deconv (the paper) or resize (no checkerboard)",
                         choices=UPSAMPLE)
    channels_last: bool = _opt(True, "channels-last memory format (faster with oneDNN/cuDNN)")
    log_every: int = _opt(10, "write averaged metrics every N steps")
    sample_every: int = _opt(500, "save an EMA sample grid every N steps")
    checkpoint_every: int = _opt(500, "save a checkpoint every N steps")
    keep_checkpoints: int = _opt(3, "keep the newest N checkpoints")
    n_samples: int = _opt(64, "images in each sample grid")

    def validate(self) -> None:
        if self.preset not in PRESETS:
            raise CanstyleError(f"--preset must be one of {sorted(PRESETS)}")
        for name in ("steps", "batch_size", "log_every", "sample_every", "checkpoint_every",
                     "keep_checkpoints", "n_samples"):
            if getattr(self, name) < 1:
                raise CanstyleError(f"--{name.replace('_', '-')} must be at least 1")
        # (option, lowest, lowest allowed?, highest, highest allowed?), each checked on its own so the
        # message names it; NaN fails every comparison, so it is caught here too.
        ranges = (("lr_g", 0, False, math.inf, False), ("lr_d", 0, False, math.inf, False),
                  ("ambiguity_weight", 0, True, math.inf, False), ("style_weight", 0, True, math.inf, False),
                  ("beta1", 0, True, 1, False), ("beta2", 0, True, 1, False),
                  ("ema_decay", 0, True, 1, False), ("width", 0, False, 4, True),
                  ("crop_min", 0, False, 1, True))
        for name, lo, lo_ok, hi, hi_ok in ranges:
            v = getattr(self, name)
            if not (math.isfinite(v) and (v >= lo if lo_ok else v > lo) and (v <= hi if hi_ok else v < hi)):
                bounds = f"{'[' if lo_ok else '('}{lo:g}, {hi:g}{']' if hi_ok else ')'}"
                raise CanstyleError(f"--{name.replace('_', '-')} must be a finite number in {bounds}, got {v}")
        parse_augment(self.augment)

    def model_config(self, n_classes: int) -> ModelConfig:
        return ModelConfig(preset=self.preset, n_classes=n_classes, width=self.width,
                           spectral_norm=self.spectral_norm, upsample=self.upsample)


# Options that may change when a run is resumed; the others define the run.
RESUMABLE = ("steps", "log_every", "sample_every", "checkpoint_every", "keep_checkpoints")


def resume_options(saved: dict[str, Any], given: TrainOptions) -> TrainOptions:
    opts = TrainOptions(**{k: v for k, v in saved.items() if k in TrainOptions.__dataclass_fields__})
    default = TrainOptions()
    for f in dataclasses.fields(TrainOptions):
        new = getattr(given, f.name)
        if new == getattr(default, f.name) or new == getattr(opts, f.name):
            continue
        if f.name in RESUMABLE:
            setattr(opts, f.name, new)
        else:
            log.warning("--%s is fixed for a resumed run; keeping %r", f.name.replace("_", "-"),
                        getattr(opts, f.name))
    return opts


@dataclass
class TrainResult:
    run_dir: Path | None
    step: int
    interrupted: bool = False
    metrics: dict[str, float] = field(default_factory=dict)
    images_per_second: float = 0.0


@dataclass
class _Setup:
    opts: TrainOptions
    seed: int
    cache: Cache | Listing
    sel: Selection
    run: Path | None
    ckpt: Path | None
    resumed: bool = False


def _setup(data: SourceArg | None, out: Path, opts: TrainOptions, resume: str | None, seed: int | None,
           info: dd.DistInfo, dry_run: bool) -> _Setup:
    run = ckpt = None
    saved: dict[str, Any] = {}
    if resume:
        r = runs.resolve_resume(resume, out, "can")
        run, ckpt = r.run, r.checkpoint
        saved = runs.read_config(run, ("options", "seed", "cache", "classes"), "CAN")
        opts = resume_options(saved["options"], opts)
        seed = int(saved["seed"])
        if not data or not all(Path(d).exists() for d in as_sources(data)):
            data = saved["cache"]
    if not data:
        raise CanstyleError("DATA is required (a folder, CSV, parquet shards or a prepared cache)")
    opts.validate()
    if run is None:  # a dry run too: it promises that the real run can start
        check_writable_folder(out, target="a run folder")
    if seed is None:
        seed = int(dd.broadcast_object(draw_seed(), info))  # type: ignore[call-overload]
    styles = parse_styles(opts.styles)
    size = opts.cache_size or 2 * opts.preset
    if info.is_main and not dry_run:
        path = ensure_cache(data, size, styles)
    dd.barrier(info)  # the other ranks wait for rank 0 to build the cache
    if not info.is_main or dry_run:
        path = ensure_cache(data, size, styles, build=False)
    cache = _listing(data, path, size, styles) if dry_run and not is_cache(path) else Cache(path)
    _warn_if_enlarged(int(cache.meta.get("size", 0)), opts, info.is_main)
    sel = select(cache, styles, opts.min_images)
    if saved and sel.classes != saved["classes"]:
        raise CanstyleError(f"the data's styles {sel.classes} differ from the run's {saved['classes']}")
    if saved and isinstance(cache, Cache) and _other_pixels(Path(saved["cache"]), cache):
        raise CanstyleError(f"--resume: {run} was trained on other paintings (its cache {saved['cache']}); "
                            "give no DATA to continue on its own, or start a new run without --resume")
    if info.is_main and run is None and not dry_run:
        run = runs.new_run_dir(out, f"can-{opts.preset}")
    run = dd.broadcast_object(run, info)  # type: ignore[assignment]
    return _Setup(opts, seed, cache, sel, run, ckpt, resumed=bool(saved))


def _other_pixels(saved: Path, cache: Cache) -> bool:
    """Whether the run's own cache, if it still exists, holds other pixels than ``cache`` (the
    path alone would differ for the same paintings cached under another CANSTYLE_HOME)."""
    if not is_cache(saved):
        return False  # gone: nothing to compare with, and the data given is all there is
    old = Cache(saved).meta.get("pixels_sha1")
    return old is not None and old != cache.meta.get("pixels_sha1")


def _listing(data: SourceArg, dest: Path, size: int, styles: list[str] | None) -> Listing:
    """A dry run lists the paintings rather than build their cache: it promises to write nothing."""
    log.info("dry run: no %dpx cache yet (a real run first builds it once in %s); listing the "
             "paintings without decoding them", size, dest)
    return Listing(as_sources(data), size, styles)


def _warn_if_enlarged(cached: int, opts: TrainOptions, main: bool) -> None:
    """Crops are ``crop_min``..1 of the cached short side, resized to the preset: smaller crops
    would be enlarged, and the networks would learn blur."""
    smallest = cached * opts.crop_min
    if main and 0 < smallest < opts.preset:
        need = math.ceil(opts.preset / opts.crop_min)
        log.warning("the cache's images are %d px on the short side, so crops down to %d px will be enlarged to "
                    "--preset %d and blurred; a %d px cache avoids it (--cache-size %d, or prepare-data --size %d)",
                    cached, smallest, opts.preset, need, need, need)


def _write_run_files(s: _Setup, trainer: Trainer, info: dd.DistInfo, data: SourceArg) -> None:
    assert s.run is not None
    if s.resumed:  # config.json is the run's already; metrics past the checkpoint are void
        runs.MetricsLog(s.run / runs.METRICS).truncate(int(trainer.start_step))
        runs.remove_partial_files(s.run)
        return
    config = {
        "options": asdict(s.opts), "model": json.loads(trainer.cfg.to_json()), "seed": s.seed,
        "data": [str(p) for p in as_sources(data)], "cache": str(s.cache.root.resolve()), "classes": s.sel.classes,
        "images": int(len(s.sel.indices)), "world_size": info.world, "device": str(trainer.device),
        "precision": precision_name(trainer.dtype), "canstyle_version": _version(),
    }
    runs.write_config(s.run, config)
    runs.write_json(s.run / "classes.json", s.sel.classes)


def _version() -> str:
    from canstyle import __version__

    return __version__


def train(
    data: SourceArg | None, out: str = "runs", opts: TrainOptions | None = None, resume: str | None = None,
    device: str = "auto", precision: str = "auto", seed: int | None = None,
    callback: ProgressCallback | None = None, dry_run: bool = False,
) -> TrainResult:
    """Train (or resume) a CAN; returns where the run lives and how far it got."""
    dev = resolve_device(device)
    info = dd.init_distributed(dev)
    dev = dd.local_device(dev, info)
    dtype = resolve_precision(precision, dev)
    # Adam's second moments and tiny late-layer gradients drift into denormal floats,
    # which x86 CPUs process many times slower; flushing them to zero changes nothing visible.
    flushed = dev.type == "cpu" and torch.set_flush_denormal(True)
    try:
        s = _setup(data, Path(out), opts or TrainOptions(), resume, seed, info, dry_run)
        o = s.opts
        cw = class_weights(s.sel.labels, len(s.sel.classes)) if o.balance_styles else None
        batches = Batches(s.cache, s.sel, o.preset, o.batch_size, info.rank, info.world, s.seed, o.crop_min)
        trainer = Trainer(o, o.model_config(len(s.sel.classes)), batches, cw, s.seed, dev, dtype, info)
        trainer.start_step = 0
        if s.ckpt is not None:
            state = ck.load_checkpoint(s.ckpt)
            trainer.load_state(state)
            trainer.start_step = int(state["step"])
        if dry_run:
            return _dry_run(s, trainer)
        if trainer.start_step >= o.steps:  # resumed past the goal: say so, and leave the run as it is
            if info.is_main:
                log.warning("run %s is already at step %d (--steps %d): nothing to train; give a "
                            "larger --steps to continue it", s.run, trainer.start_step, o.steps)
            return TrainResult(s.run, trainer.start_step)
        if info.is_main:
            _write_run_files(s, trainer, info, data)
        result = _loop(s, trainer, info, callback)
        # Leave together: a rank that tears gloo down while rank 0 still writes its last
        # checkpoint aborted now and then ("terminate called without an active exception").
        dd.barrier(info)
        return result
    finally:
        dd.shutdown(info)
        if flushed:
            torch.set_flush_denormal(False)  # the process-wide default, for other stages


def _dry_run(s: _Setup, trainer: Trainer) -> TrainResult:
    """Check data, models and one timed step, writing nothing."""
    what = "images"
    if isinstance(s.cache, Listing):  # decode only what the two timed steps crop
        s.cache.load(int(s.sel.indices[p]) for step in (0, 1) for p in trainer.batches.positions(step))
        what = "image files (listed, not decoded)"
        if s.cache.unreadable:
            log.warning("dry run: %d of the paintings decoded for the timed steps are unreadable; "
                        "the real run skips such files", s.cache.unreadable)
    n_g = sum(p.numel() for p in trainer.g.parameters())
    n_d = sum(p.numel() for p in trainer.d.parameters())
    trainer.step(0)
    t0 = time.perf_counter()
    trainer.step(1)
    secs = time.perf_counter() - t0
    ips = s.opts.batch_size / secs
    log.info("dry run: %d %s in %d styles (%s); G %.2fM params, D %.2fM; %.1f images/s, "
             "%d steps would take about %.1f h", len(s.sel.indices), what, len(s.sel.classes),
             ", ".join(s.sel.classes), n_g / 1e6, n_d / 1e6, ips, s.opts.steps,
             s.opts.steps * secs / 3600)
    return TrainResult(None, 0, images_per_second=ips)


def _save(s: _Setup, trainer: Trainer, step: int) -> Path:
    assert s.run is not None
    state = trainer.state(step)
    state.update(seed=s.seed, classes=list(s.sel.classes), options=json.dumps(asdict(s.opts)))
    return ck.save_checkpoint(s.run, step, state, s.opts.keep_checkpoints)


def _sample(s: _Setup, trainer: Trainer, z: torch.Tensor, step: int) -> None:
    assert s.run is not None
    grid = make_grid(trainer.samples(z))
    save_image(grid, s.run / "samples" / f"step{step:08d}.png",
               {"command": "train", "step": step, "seed": s.seed, "run": s.run.name}, overwrite=True)


def _tensorboard(run: Path | None) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # optional: pip install 'canstyle[tensorboard]'
        return None
    return SummaryWriter(str(run / "tb")) if run is not None else None


def _loop(s: _Setup, trainer: Trainer, info: dd.DistInfo, callback: ProgressCallback | None) -> TrainResult:
    o, main = s.opts, info.is_main
    z_fixed = torch.randn(o.n_samples, trainer.cfg.z_dim, generator=step_generator(s.seed, 0, 99))
    tb = _tensorboard(s.run) if main else None
    acc, n_acc, last = torch.zeros(len(METRICS)), 0, {}
    step, interrupted, saved_at = trainer.start_step, False, -1
    t0, imgs = time.perf_counter(), 0
    with StopFlag().installed() as stop:
        while step < o.steps:
            m = trainer.step(step)
            m = dd.all_mean(torch.cat([m, torch.tensor([float(stop.requested)])]), info)
            step += 1
            acc, n_acc, imgs = acc + m[:-1], n_acc + 1, imgs + o.batch_size
            ips = imgs / (time.perf_counter() - t0)
            if step % o.log_every == 0 or step == o.steps or m[-1] > 0:
                last = {k: round(float(v), 6) for k, v in zip(METRICS, acc / n_acc, strict=True)}
                if main:
                    _log_metrics(s.run, tb, step, last, ips)
                acc, n_acc = torch.zeros(len(METRICS)), 0
            if callback is not None:
                callback(Progress(stage="train", step=step, total=o.steps, size=(o.preset, o.preset),
                                  loss=float(m[1]), losses={k: float(v) for k, v in zip(METRICS, m, strict=False)}))
            if m[-1] > 0:
                interrupted = True
                break
            if main and (step % o.sample_every == 0 or step == o.steps):
                _sample(s, trainer, z_fixed, step)
            if main and (step % o.checkpoint_every == 0 or step == o.steps):
                _save(s, trainer, step)
                saved_at = step
    if main and interrupted and saved_at != step:
        path = _save(s, trainer, step)
        log.warning("interrupted at step %d; saved %s (continue with --resume)", step, path)
    if tb is not None:
        tb.close()
    return TrainResult(s.run, step, interrupted, last, ips if imgs else 0.0)


def _log_metrics(run: Path | None, tb: Any, step: int, metrics: dict[str, float], ips: float) -> None:
    assert run is not None
    record = {"step": step, **metrics, "images_per_s": round(ips, 2), "time": round(time.time(), 3)}
    runs.MetricsLog(run / runs.METRICS).append(record)
    if tb is not None:
        for k, v in metrics.items():
            tb.add_scalar(k, v, step)
