"""Benchmark: CAN training images/s at preset 64, canstyle's step vs a plain fp32 DCGAN-style loop.

Both loops train the same architecture (preset 64: G, D and the 1024-512-K style
head) with the same CAN losses (lambda = 1, paper form), on
the same batches from the same uint8 cache, in one process. The baseline is
the textbook PyTorch loop: fp32, NCHW, D called separately on the real and the
fake batch, D's weight gradients computed during the G update too, default
denormal handling. canstyle's step: bf16 autocast where the CPU has native
bf16 (else fp32), channels-last, one D forward on real+fake, no D weight
gradients in the G update, denormals flushed, plus DiffAugment (extra work the
baseline does not do). Timed blocks alternate between the two loops so a
shared machine's load hits both alike; the median block is reported. Each D is
measured: the paper's BatchNorm D (the default) and the spectral-norm D.

    OMP_NUM_THREADS=1 python bench/bench_can.py              # prints the ratio, writes bench/results/can.json
    OMP_NUM_THREADS=1 python bench/bench_can.py --doc        # also writes its section of docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from PIL import Image
from torch.nn import functional as F

from canstyle.can.data import Cache, class_weights, prepare
from canstyle.can.dataset import Batches, global_noise, select
from canstyle.can.dist import DistInfo
from canstyle.can.losses import ambiguity_loss, style_cross_entropy
from canstyle.can.models import build
from canstyle.can.train import TrainOptions
from canstyle.can.trainer import Trainer
from canstyle.device import precision_name, resolve_precision

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from report import machine, write_section  # noqa: E402


def synthetic_cache(root: Path, n: int = 160, k: int = 10) -> Path:
    rng = np.random.default_rng(0)
    for i in range(n):
        d = root / "src" / f"style{i % k:02d}"
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (160, 200, 3), dtype=np.uint8)).save(d / f"{i}.png")
    prepare(root / "src", root / "cache", size=128)
    return root / "cache"


class Baseline:
    """The plain loop, written the way most DCGAN examples are."""

    def __init__(self, opts: TrainOptions, n_classes: int, cw: torch.Tensor, seed: int) -> None:
        torch.manual_seed(seed)
        self.g, self.d = build(opts.model_config(n_classes))
        self.opt_g = torch.optim.Adam(self.g.parameters(), opts.lr_g, betas=(opts.beta1, opts.beta2))
        self.opt_d = torch.optim.Adam(self.d.parameters(), opts.lr_d, betas=(opts.beta1, opts.beta2))
        self.cw = cw

    def step(self, real: torch.Tensor, labels: torch.Tensor, z: torch.Tensor) -> None:
        real = real * 2 - 1
        fake = self.g(z)
        self.opt_d.zero_grad()
        lr, sr = self.d(real)
        lf, _ = self.d(fake.detach())
        loss_d = (F.binary_cross_entropy_with_logits(lr, torch.ones_like(lr))
                  + F.binary_cross_entropy_with_logits(lf, torch.zeros_like(lf))
                  + style_cross_entropy(sr, labels, self.cw))
        loss_d.backward()
        self.opt_d.step()
        self.opt_g.zero_grad()
        lg, sg = self.d(fake)
        loss_g = F.binary_cross_entropy_with_logits(lg, torch.ones_like(lg)) + ambiguity_loss(sg, "paper")
        loss_g.backward()
        self.opt_g.step()


def time_block(fn, steps: int, start: int) -> float:  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    for s in range(start, start + steps):
        fn(s)
    return time.perf_counter() - t0


def measure(args: argparse.Namespace, cache: Cache, spectral_norm: bool) -> dict:
    """Median images/s of the baseline loop and canstyle's Trainer for one discriminator."""
    sel = select(cache)
    opts = TrainOptions(batch_size=args.batch_size, spectral_norm=spectral_norm)
    cw = class_weights(sel.labels, len(sel.classes))
    dev = torch.device("cpu")
    dtype = resolve_precision(args.precision, dev)
    batches = Batches(cache, sel, 64, args.batch_size, seed=0, crop_min=opts.crop_min)
    fast = Trainer(opts, opts.model_config(len(sel.classes)), batches, cw, 0, dev, dtype, DistInfo())
    base = Baseline(opts, len(sel.classes), cw, 0)

    def base_step(s: int) -> None:
        real, labels = batches.get(s)
        base.step(real, labels, global_noise(0, s, args.batch_size, 100, 0, 1))

    def fast_step(s: int) -> None:
        fast.step(s)

    state = SimpleNamespace(flush=False)

    def run(fn, flush: bool, steps: int, start: int) -> float:  # type: ignore[no-untyped-def]
        if flush != state.flush:
            torch.set_flush_denormal(flush)
            state.flush = flush
        return time_block(fn, steps, start)

    run(base_step, False, 2, 0)  # warm-up: oneDNN primitive creation, allocator
    run(fast_step, True, 2, 0)
    tb, tf = [], []
    name = "spectral-norm D" if spectral_norm else "BatchNorm D"
    for b in range(args.blocks):
        start = 2 + b * args.steps
        tb.append(args.steps * args.batch_size / run(base_step, False, args.steps, start))
        tf.append(args.steps * args.batch_size / run(fast_step, True, args.steps, start))
        print(f"{name} block {b}: baseline {tb[-1]:.1f} img/s, canstyle {tf[-1]:.1f} img/s", flush=True)
    torch.set_flush_denormal(False)
    res = {
        "discriminator": name, "spectral_norm": spectral_norm,
        "baseline_images_per_s": statistics.median(tb), "canstyle_images_per_s": statistics.median(tf),
        "blocks_baseline": tb, "blocks_canstyle": tf, "precision": precision_name(dtype),
    }
    res["ratio"] = res["canstyle_images_per_s"] / res["baseline_images_per_s"]
    print(f"{name}: baseline {res['baseline_images_per_s']:.1f} img/s, canstyle "
          f"{res['canstyle_images_per_s']:.1f} img/s ({res['precision']}): ratio {res['ratio']:.2f}x")
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=None, help="a prepared cache (default: a synthetic one, timing only)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=5, help="steps per timed block")
    ap.add_argument("--blocks", type=int, default=5, help="timed blocks per loop, interleaved")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--out", default=str(ROOT / "bench/results/can.json"))
    ap.add_argument("--doc", action="store_true", help="write the can section of docs/benchmarks.md")
    ap.add_argument("--note", default="", help="conditions to record with the figures (e.g. other load)")
    ap.add_argument("--from-json", default=None, help="write the doc section from an earlier result file")
    args = ap.parse_args()
    if args.from_json:
        write_section("can", markdown(json.loads(Path(args.from_json).read_text()), args.note))
        return
    torch.set_num_threads(args.threads)
    tmp = tempfile.TemporaryDirectory()
    cache = Cache(args.data or synthetic_cache(Path(tmp.name)))
    res = {"runs": [measure(args, cache, sn) for sn in (False, True)],
           "batch_size": args.batch_size, "threads": args.threads, "machine": machine()}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=1))
    if args.doc:
        write_section("can", markdown(res, args.note))


def markdown(r: dict, note: str = "") -> str:
    rows = "\n".join(
        f"| {x['discriminator']} | {x['baseline_images_per_s']:.1f} | {x['canstyle_images_per_s']:.1f} "
        f"| **{x['ratio']:.2f}x** |" for x in r["runs"])
    return f"""## CAN training throughput, preset 64 (`bench/bench_can.py`)

Machine: {r["machine"]}. Batch {r["batch_size"]}, {r["threads"]} thread(s). Both loops train the same
architecture (G, D, 1024-512-K style head) with the same CAN losses (lambda 1) on the same batches;
timed blocks interleaved, median reported. Baseline: the plain fp32 DCGAN-style loop (NCHW, two D
forwards, D weight gradients in the G update). canstyle: `Trainer.step` ({r["runs"][0]["precision"]},
channels-last, one D forward, DiffAugment on top). The BatchNorm D is the default; its G update
judges fakes inside a real+fake batch, which costs canstyle (not the baseline) extra work.

| discriminator | baseline images/s | canstyle images/s | speed-up |
| --- | ---: | ---: | ---: |
{rows}

{note}
"""


if __name__ == "__main__":
    main()
