"""Creativity metrics for a CAN, judged by a separate style classifier.

The classifier is the frozen Oxford VGG16 of the style-transfer stage (already
shipped offline) summarised by per-channel means and standard deviations of
relu1_1..relu4_1 (the statistics style transfer matches), plus a small MLP
head trained on the training paintings with a stratified held-out split. It
never saw the CAN's discriminator, so it is an independent judge. Reals and
samples pass through the same path: the generator's resolution, then the
classifier's input size.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from canstyle.can.data import Cache, class_weights
from canstyle.can.dataset import Selection, crop_square
from canstyle.can.metrics import balanced_pick, kid, nn_distance, norm_entropy
from canstyle.can.sources import SourceArg
from canstyle.device import autocast
from canstyle.errors import CanstyleError
from canstyle.imageops import resize_to
from canstyle.progress import Progress, ProgressCallback

log = logging.getLogger(__name__)
LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1")
FEATURE_VERSION = 1
MIN_PER_STYLE = 3  # paintings per style: one to hold out, one to calibrate, one to train on


def _opt(default: Any, help: str, **meta: Any) -> Any:
    return field(default=default, metadata={"help": help, **meta})


@dataclass
class EvalOptions:
    """The judge's knobs; the ``canstyle evaluate`` flags are generated from the fields with help."""

    image_size: int = 64  # the generator's resolution (set from the samples); reals are brought to it first
    holdout: float = _opt(0.2, "fraction of each style held out from the classifier")
    classifier_size: int = _opt(128, "classifier input side in pixels")
    crops_per_image: int = 3  # random multi-scale crops per training painting for the head
    epochs: int = 300  # full-batch Adam steps for the head
    seed: int = _opt(0, "seed of the held-out split and classifier", kind="seed")

    def validate(self) -> None:
        if not 0 < self.holdout < 1:
            raise CanstyleError("--holdout must be in (0, 1)")
        if not 32 <= self.classifier_size <= 1024:
            raise CanstyleError("--classifier-size must be between 32 and 1024 pixels")


class StyleHead(nn.Module):
    def __init__(self, d_in: int, n_classes: int, hidden: int = 256) -> None:
        super().__init__()
        self.hidden = nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU(), nn.Dropout(0.3))
        self.out = nn.Linear(hidden, n_classes)

    def forward(self, f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.hidden(f)
        return self.out(h), h


class StyleFeatures:
    """VGG16 channel statistics of images in [0, 1]."""

    def __init__(self, opts: EvalOptions, device: torch.device, dtype: torch.dtype) -> None:
        from canstyle.nst.features import load_features

        self.net = load_features("vgg16").to(device)
        self.opts, self.device, self.dtype = opts, device, dtype

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, batch: int = 32) -> torch.Tensor:
        out = []
        for i in range(0, len(images), batch):
            x = resize_to(resize_to(images[i : i + batch], self.opts.image_size, "bilinear"), self.opts.classifier_size,
                          "bilinear")
            with autocast(self.device, self.dtype):
                acts = self.net(x.to(self.device), LAYERS)
            stats = []
            for name in LAYERS:
                a = acts[name].float().flatten(2)
                stats += [a.mean(2), a.std(2)]
            out.append(torch.cat(stats, 1).cpu())
        return torch.cat(out)


def split(sel: Selection, frac: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified (train, held-out) positions into ``sel``; singleton styles stay in train."""
    rng = np.random.default_rng(seed)
    train, held = [], []
    for c in range(len(sel.classes)):
        pos = rng.permutation(np.nonzero(sel.labels == c)[0])
        k = min(len(pos) - 1, max(1, round(frac * len(pos)))) if len(pos) > 1 else 0
        held += pos[:k].tolist()
        train += pos[k:].tolist()
    return np.array(sorted(train)), np.array(sorted(held))


def center_views(cache: Cache, sel: Selection, pos: np.ndarray, size: int) -> torch.Tensor:
    """The whole short side of each painting, centred, at ``size`` (a deterministic view)."""
    u = torch.tensor([1.0, 0.5, 0.5, 1.0])  # full short side, centred, not flipped
    views = [crop_square(cache.image(int(sel.indices[p])), u, size, 1.0) for p in pos]
    return torch.cat(views) if views else torch.zeros(0, 3, size, size)


def random_views(cache: Cache, sel: Selection, pos: np.ndarray, size: int, n: int, seed: int
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    imgs, labels, owner = [], [], []
    for p in pos:
        arr = cache.image(int(sel.indices[p]))
        for _ in range(n):
            imgs.append(crop_square(arr, torch.rand(4, generator=g), size, 0.5))
            labels.append(int(sel.labels[p]))
            owner.append(int(p))
    return torch.cat(imgs), torch.tensor(labels), torch.tensor(owner)


def train_head(feats: torch.Tensor, labels: torch.Tensor, n_classes: int, opts: EvalOptions
               ) -> tuple[StyleHead, torch.Tensor, torch.Tensor]:
    """Full-batch Adam on standardised features, class-balanced like the CAN's style head."""
    torch.manual_seed(opts.seed)
    mu, sd = feats.log1p().mean(0), feats.log1p().std(0)
    sd = sd.clamp_min(0.05 * float(sd.median()) + 1e-8)  # near-constant dims must not explode
    x = standardize(feats, mu, sd)
    head = StyleHead(x.shape[1], n_classes)
    opt = torch.optim.Adam(head.parameters(), lr=1e-3, weight_decay=1e-4)
    w = class_weights(labels.numpy(), n_classes)
    for _ in range(opts.epochs):
        logits, _ = head(x)
        loss = F.cross_entropy(logits, labels, weight=w, label_smoothing=0.1)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return head.eval(), mu, sd


def standardize(feats: torch.Tensor, mu: torch.Tensor, sd: torch.Tensor) -> torch.Tensor:
    """log1p of the (non-negative) activation statistics, then z-scores clipped at +-6.

    The log tames the heavy right tail of VGG statistics on odd images, and
    the clip keeps one wildly off-distribution statistic of a poor sample from
    deciding its posterior on its own.
    """
    return ((feats.log1p() - mu) / sd).clamp(-6, 6)


def classifier_key(cache: Cache, sel: Selection, opts: dict[str, Any]) -> str:
    # The cache's pixels, not its path, so a copied CANSTYLE_HOME or a cache rebuilt on another
    # machine finds the features it already computed. Caches from before the digest keep their path.
    content = cache.meta.get("pixels_sha1") or str(cache.root.resolve())
    text = json.dumps([content, cache.meta.get("count"), sel.classes, opts, FEATURE_VERSION], sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def summary(metrics: dict[str, Any]) -> str:
    keys = ("fake_entropy", "real_entropy", "fake_marginal_entropy", "kid", "kid_balanced", "nn_distance_fake",
            "nn_distance_real", "heldout_accuracy")
    return ", ".join(f"{k} {metrics[k]:.4g}" for k in keys if k in metrics)


@dataclass
class Judge:
    head: StyleHead
    mu: torch.Tensor
    sd: torch.Tensor
    train_feats: torch.Tensor  # centre views of the training split
    held_feats: torch.Tensor
    held_labels: torch.Tensor
    accuracy: float
    temperature: float = 1.0
    balanced_accuracy: float = 0.0  # mean of per-style recalls: what matters with 362:10 styles
    train_labels: torch.Tensor | None = None  # styles of train_feats (for the style-balanced KID)

    def standardize(self, feats: torch.Tensor) -> torch.Tensor:
        return standardize(feats, self.mu, self.sd)

    @torch.no_grad()
    def __call__(self, feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, hidden = self.head(self.standardize(feats))
        return (logits / self.temperature).softmax(1), hidden


def _real_features(cache: Cache, sel: Selection, opts: EvalOptions, feat: StyleFeatures, store: Path
                   ) -> dict[str, torch.Tensor]:
    """VGG statistics of the real paintings (the slow part), cached in ``store``."""
    from safetensors.torch import load_file, save_file

    from canstyle.fsutil import atomic_write

    view_opts = {k: v for k, v in asdict(opts).items() if k not in ("epochs",)}
    path = store / f"features-{classifier_key(cache, sel, view_opts)}.safetensors"
    if path.exists():
        return load_file(str(path))
    tr, held = split(sel, opts.holdout, opts.seed)
    log.info("computing VGG style statistics of %d paintings (once; cached in %s)", len(sel.indices), store)
    views, labels, owner = random_views(cache, sel, tr, opts.image_size, opts.crops_per_image, opts.seed)
    t = {"view_feats": feat(views), "view_labels": labels, "view_owner": owner,
         "train_pos": torch.as_tensor(tr), "train_feats": feat(center_views(cache, sel, tr, opts.image_size)),
         "held_feats": feat(center_views(cache, sel, held, opts.image_size)),
         "held_labels": torch.as_tensor(sel.labels[held], dtype=torch.long)}
    t = {k: v.contiguous() for k, v in t.items()}
    atomic_write(path, lambda tmp: save_file(t, str(tmp)), overwrite=True)
    return t


def build_judge(cache: Cache, sel: Selection, opts: EvalOptions, feat: StyleFeatures, store: Path,
                rare_fix: str = "drop rare styles with --min-images") -> Judge:
    """Train the style classifier on cached real features (deterministic, a few seconds).

    A tenth of the training paintings (stratified) is kept out of the head's
    training to fit a softmax temperature (Guo et al. 2017): an uncalibrated
    head is over-confident, which would pin every entropy near 0 and hide
    the difference between a CAN and a GAN. ``rare_fix`` tells the user what to do about a style
    with too few paintings.
    """
    counts = np.bincount(sel.labels, minlength=len(sel.classes))
    if counts.min() < MIN_PER_STYLE:
        rare = sel.classes[int(counts.argmin())]
        raise CanstyleError(f"style {rare} has {counts.min()} paintings; the judge needs at least "
                            f"{MIN_PER_STYLE} per style ({rare_fix})")
    t = _real_features(cache, sel, opts, feat, store)
    k = len(sel.classes)
    tr = t["train_pos"].numpy()
    sub = Selection(indices=sel.indices[tr], labels=sel.labels[tr], classes=sel.classes)
    fit, calib = split(sub, 0.1, opts.seed + 1)
    keep = torch.isin(t["view_owner"], torch.as_tensor(tr[fit]))
    head, mu, sd = train_head(t["view_feats"][keep], t["view_labels"][keep], k, opts)
    judge = Judge(head, mu, sd, t["train_feats"], t["held_feats"], t["held_labels"], 0.0,
                  train_labels=torch.as_tensor(sel.labels[tr], dtype=torch.long))
    judge.temperature = fit_temperature(judge, t["train_feats"][calib],
                                        torch.as_tensor(sel.labels[tr[calib]], dtype=torch.long))
    if len(t["held_labels"]):
        hit = (judge(t["held_feats"])[0].argmax(1) == t["held_labels"]).float()
        judge.accuracy = float(hit.mean())
        per_class = [hit[t["held_labels"] == c].mean() for c in t["held_labels"].unique()]
        judge.balanced_accuracy = float(torch.stack(per_class).mean())
    return judge


def fit_temperature(judge: Judge, feats: torch.Tensor, labels: torch.Tensor) -> float:
    """The softmax temperature minimising NLL on calibration paintings (a 1-D grid search)."""
    if len(labels) < 2:
        return 1.0
    with torch.no_grad():
        logits, _ = judge.head(judge.standardize(feats))
    grid = torch.logspace(-1, 2, 61)
    nll = torch.stack([F.cross_entropy(logits / T, labels) for T in grid])
    return float(grid[int(nll.argmin())])


def load_samples(src: Path, n: int, device: torch.device, callback: ProgressCallback | None = None
                 ) -> tuple[torch.Tensor, list[str] | None, int | None]:
    """Images in [0, 1] from a folder of images, or generated (seeds 0..n-1) from a CAN."""
    from canstyle.can.checkpoint import checkpoints
    from canstyle.can.generate import CanGenerator
    from canstyle.imageio import load_rgb

    if src.is_dir() and not checkpoints(src):
        files = sorted(p for p in src.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg")
                       and p.name != "grid.png")
        if len(files) < 2:  # KID and the marginal entropy need at least two samples
            raise CanstyleError(f"{src} holds {len(files)} sample images; evaluate needs at least 2")
        imgs = [load_rgb(f) for f in files]
        side = min(min(i.shape[-2:]) for i in imgs)
        return torch.cat([resize_to(i, side, "bilinear") for i in imgs]), None, None
    gen = CanGenerator.load(src, device)
    return gen(list(range(n)), callback=callback), gen.classes, gen.config.preset


def metrics(judge: Judge, fake_feats: torch.Tensor, fake_px: torch.Tensor, train_px: torch.Tensor,
            held_px: torch.Tensor, classes: list[str]) -> dict[str, Any]:
    pf, hf = judge(fake_feats)
    ph, hh = judge(judge.held_feats)
    _, ht = judge(judge.train_feats)
    reals = torch.cat([ht, hh])
    kid_mean, kid_std = kid(hf, reals)
    # Style-balanced KID: a reference with every style equally often, so a CAN that steers away
    # from the style the data over-represents is not counted as worse for it.
    bal = torch.empty(0, dtype=torch.long)
    if judge.train_labels is not None:
        bal = balanced_pick(torch.cat([judge.train_labels, judge.held_labels]))
    kid_bal, kid_bal_std = kid(hf, reals[bal]) if len(bal) > 1 else (float("nan"), float("nan"))
    kid_ref, _ = kid(hh, ht) if len(hh) > 1 else (float("nan"), 0.0)
    nn_fake, nn_real = nn_distance(fake_px, train_px), nn_distance(held_px, train_px)
    top = torch.bincount(pf.argmax(1), minlength=len(classes))
    return {
        "n_samples": len(pf), "n_heldout": len(ph), "n_train": len(ht), "classes": classes,
        "heldout_accuracy": judge.accuracy, "heldout_balanced_accuracy": judge.balanced_accuracy,
        "judge_temperature": judge.temperature,
        "fake_entropy": float(norm_entropy(pf).mean()), "real_entropy": float(norm_entropy(ph).mean()),
        "fake_marginal_entropy": float(norm_entropy(pf.mean(0))),
        "real_marginal_entropy": float(norm_entropy(ph.mean(0))) if len(ph) else float("nan"),
        "kid": kid_mean, "kid_std": kid_std, "kid_heldout_vs_train": kid_ref,
        "kid_balanced": kid_bal, "kid_balanced_std": kid_bal_std, "kid_balanced_reals": len(bal),
        "nn_distance_fake": float(nn_fake.mean()), "nn_distance_fake_min": float(nn_fake.min()),
        "nn_distance_real": float(nn_real.mean()) if len(nn_real) else float("nan"),
        "fake_style_counts": {c: int(v) for c, v in zip(classes, top, strict=True) if v},
        # how the samples spread over the judge's styles: the mean posterior per style
        "fake_style_share": {c: round(float(v), 4) for c, v in zip(classes, pf.mean(0), strict=True)},
    }


@dataclass
class Judged:
    """A CAN's samples beside the judge and the real paintings it was built from."""

    judge: Judge
    feat: StyleFeatures
    fake: torch.Tensor  # the samples in [0, 1], at their own resolution
    cache: Cache
    sel: Selection
    opts: EvalOptions


def judged_samples(src: str | Path, data: SourceArg, n: int = 256, styles: list[str] | None = None,
                   min_images: int = 0, opts: EvalOptions | None = None, device: str = "auto",
                   precision: str = "auto", store: Path | None = None,
                   callback: ProgressCallback | None = None) -> Judged:
    """Load (or generate) the samples and build (or load) the judge for ``data``.

    ``callback`` gets the ``generate`` stage's Progress, then ``Progress("judge", 1, 1)`` once the
    judge is ready (fitting it the first time is the slow part).
    """
    from canstyle.can.data import ensure_cache
    from canstyle.can.dataset import select
    from canstyle.device import resolve_device, resolve_precision
    from canstyle.errors import CanstyleError
    from canstyle.weights import home

    opts = opts or EvalOptions()
    opts.validate()
    dev = resolve_device(device)
    dtype = resolve_precision(precision, dev)
    fake, gen_classes, preset = load_samples(Path(src), n, dev, callback)
    opts.image_size = preset or fake.shape[-1]
    cache = Cache(ensure_cache(data, 2 * opts.image_size, None))
    sel = select(cache, gen_classes or styles, 0 if gen_classes else min_images)
    if gen_classes and sel.classes != gen_classes:
        raise CanstyleError(f"the data lacks some of the generator's styles {gen_classes}")
    feat = StyleFeatures(opts, dev, dtype)
    # --min-images cannot drop a generator's own style, so a rare one needs other data.
    fix = "evaluate on the data the generator was trained on" if gen_classes else "drop rare styles with --min-images"
    judge = build_judge(cache, sel, opts, feat, store or home() / "can-eval", rare_fix=fix)
    if callback is not None:
        callback(Progress("judge", 1, 1))
    return Judged(judge, feat, fake, cache, sel, opts)


def evaluate(src: str | Path, data: SourceArg, n: int = 256, styles: list[str] | None = None,
             min_images: int = 0, opts: EvalOptions | None = None, device: str = "auto",
             precision: str = "auto", store: Path | None = None,
             callback: ProgressCallback | None = None) -> dict[str, Any]:
    """All creativity metrics for a CAN (checkpoint, run, export) or a folder of its samples."""
    j = judged_samples(src, data, n, styles, min_images, opts, device, precision, store, callback)
    tr, held = split(j.sel, j.opts.holdout, j.opts.seed)
    train_px = center_views(j.cache, j.sel, tr, j.opts.image_size)
    held_px = center_views(j.cache, j.sel, held, j.opts.image_size)
    return metrics(j.judge, j.feat(j.fake), resize_to(j.fake, j.opts.image_size, "bilinear"), train_px, held_px,
                   j.sel.classes)
