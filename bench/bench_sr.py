"""Benchmark: canstyle's SR models against PIL bicubic, on Set5 and held-out paintings.

All numbers come from ``canstyle.sr.evaluate`` (the ``eval-sr`` protocol): LR by
PIL bicubic downscaling, PSNR/SSIM on Y (BT.601), ``scale`` pixels shaved, SR
output rounded to 8 bits. Baseline = PIL bicubic upscaling of the same LR image.

Held-out paintings (fixed, documented in docs/sr.md): from ``../shared/art``,
every painting by an artist whose ``sha1(artist) % 10 == 0``, keeping those
whose short side is >= 384 px and which are not flagged as drawings, scored on
their 384-px centre crop. Splitting by artist keeps every painting of a held-out
artist (and any crop of it) out of fine-tuning. ``--make-train-dir`` links the
fine-tuning set: every non-drawing painting by the other artists.

    OMP_NUM_THREADS=1 python bench/bench_sr.py --models photo,cunet --timing
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import platform
import time
from dataclasses import asdict
from pathlib import Path

import torch

from canstyle.sr.data import list_images
from canstyle.sr.evaluate import evaluate, mean_score
from canstyle.sr.upscaler import Upscaler

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
HELDOUT_MOD = 10
CROP = 384


def _rows(art: Path) -> list[dict[str, str]]:
    with open(art / "labels.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def is_heldout_artist(artist: str) -> bool:
    return int(hashlib.sha1(artist.encode("utf-8")).hexdigest(), 16) % HELDOUT_MOD == 0


def painting_split(art: Path) -> tuple[list[Path], list[Path]]:
    """(held-out evaluation images, fine-tuning images), both sorted."""
    held, train = [], []
    for r in _rows(art):
        if "drawing" in r["note"]:
            continue
        path = art / r["file"]
        if is_heldout_artist(r["artist"]):
            if min(int(r["width"]), int(r["height"])) >= CROP:
                held.append(path)
        else:
            train.append(path)
    return sorted(held), sorted(train)


def link_dir(paths: list[Path], folder: Path) -> Path:
    """A flat folder of symlinks (names made unique by their style folder)."""
    folder.mkdir(parents=True, exist_ok=True)
    for p in paths:
        link = folder / f"{p.parent.name}__{p.name}"
        if not link.exists():
            link.symlink_to(p)
    return folder


def score_model(up: Upscaler, paths: list[Path], crop: int) -> dict:
    t0 = time.perf_counter()
    scores = evaluate(paths, lambda x: up(x, 2), scale=2, crop=crop)
    mean = mean_score(scores)
    return {"mean": asdict(mean), "seconds": round(time.perf_counter() - t0, 1),
            "images": [asdict(s) for s in scores]}


def timing(model: str, precision: str, size: int = 256, repeats: int = 5) -> dict:
    """Seconds for one size x size -> 2*size upscale (weights loaded, one warm-up run)."""
    up = Upscaler(model, "cpu", precision)
    x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    up(x)
    walls, cpus = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        up(x)
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    # On a shared machine wall time includes waiting for a core; with one thread the
    # process CPU time is what the same run takes on an idle core.
    return {"model": model, "precision": str(up.dtype).replace("torch.", ""), "size": size,
            "threads": torch.get_num_threads(), "median_s": sorted(walls)[len(walls) // 2],
            "min_s": min(walls), "median_cpu_s": sorted(cpus)[len(cpus) // 2]}


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="photo,cunet", help="comma-separated model names or .safetensors")
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "1")))
    ap.add_argument("--skip-set5", action="store_true")
    ap.add_argument("--skip-paintings", action="store_true")
    ap.add_argument("--timing", action="store_true", help="also time 256->512 per model")
    ap.add_argument("--make-train-dir", type=Path, help="link the fine-tuning paintings here and exit")
    ap.add_argument("--make-heldout-dir", type=Path, help="link the held-out paintings here and exit")
    ap.add_argument("--out", type=Path, default=Path("/tmp/canstyle-bench/sr.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    held, train = painting_split(SHARED / "art")
    if args.make_train_dir or args.make_heldout_dir:
        for paths, folder in ((train, args.make_train_dir), (held, args.make_heldout_dir)):
            if folder:
                print(f"{len(paths)} images linked in {link_dir(paths, folder)}")
        return
    set5 = list_images([SHARED / "sr-bench/Set5"])
    results: dict = {"machine": {"cpu": cpu_name(),
                                 "threads": args.threads, "torch": torch.__version__},
                     "heldout": [str(p.relative_to(SHARED / "art")) for p in held], "models": {}}
    for model in args.models.split(","):
        up = Upscaler(model, "cpu", args.precision)
        res: dict = {}
        if not args.skip_set5:
            res["set5"] = score_model(up, set5, crop=0)
        if not args.skip_paintings:
            res["paintings"] = score_model(up, held, crop=CROP)
        if args.timing:
            res["timing"] = timing(model, args.precision)
        results["models"][model] = res
        line = " | ".join(f"{k} {v['mean']['psnr']:.3f} dB / {v['mean']['ssim']:.4f} "
                          f"(bicubic {v['mean']['bicubic_psnr']:.3f} / {v['mean']['bicubic_ssim']:.4f})"
                          for k, v in res.items() if k != "timing")
        if "timing" in res:
            t = res["timing"]
            line += f" | 256->512 {t['median_s']:.3f} s wall, {t['median_cpu_s']:.3f} s CPU"
        print(f"{model} [{args.precision}]: {line}", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
