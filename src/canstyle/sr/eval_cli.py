"""``canstyle eval-sr DIR... [--scale 2] [--sr-model NAME] [--crop N]``.

Prints PSNR/SSIM (Y, BT.601, ``scale`` px shaved) of the model and of PIL
bicubic for every image and their mean; LR images are made with PIL bicubic.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import asdict
from pathlib import Path

from canstyle.cliutil import add_runtime_args
from canstyle.errors import CanstyleError
from canstyle.sr.cli import add_model_args, check_model

log = logging.getLogger("canstyle")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", type=Path, nargs="+", metavar="DIR", help="HR image folders or files")
    p.add_argument("--scale", type=int, default=2, choices=(2, 4, 8), help="evaluation factor")
    add_model_args(p)
    p.add_argument("--crop", type=int, default=0, metavar="N",
                   help="score the central NxN crop of each image (0 = whole image)")
    p.add_argument("--json", type=Path, default=None, help="also write all scores to this file")
    p.add_argument("--overwrite", action="store_true", help="replace the --json file if it exists")
    add_runtime_args(p, seed=False)


def _row(name: str, psnr: float, ssim: float, bpsnr: float, bssim: float) -> str:
    return f"{name[:40]:<40} {psnr:8.3f} {ssim:7.4f} {bpsnr:9.3f} {bssim:7.4f} {psnr - bpsnr:+7.3f}"


def run(args: argparse.Namespace) -> int:
    from canstyle.fsutil import atomic_write_bytes, check_writable
    from canstyle.sr.data import list_images
    from canstyle.sr.evaluate import Score, evaluate, mean_score
    from canstyle.sr.upscaler import Upscaler

    if args.crop < 0:
        raise CanstyleError("--crop must be >= 0")
    check_model(args.sr_model)
    if args.json:
        check_writable(args.json, args.overwrite)  # before scoring, not after
    paths = list_images(args.inputs)
    up = Upscaler(args.sr_model, args.device, args.precision, args.tile, args.tile_pad)
    print(f"model {up.sr_model}, x{args.scale}, LR by PIL bicubic, Y (BT.601), "
          f"{args.scale} px shaved{f', {args.crop}px centre crops' if args.crop else ''}")
    print(f"{'image':<40} {'PSNR':>8} {'SSIM':>7} {'bicPSNR':>9} {'bicSSIM':>7} {'gain':>7}")

    def show(s: Score) -> None:
        print(_row(s.name, s.psnr, s.ssim, s.bicubic_psnr, s.bicubic_ssim), flush=True)

    scores = evaluate(paths, lambda x: up(x, args.scale), args.scale, args.crop, on_image=show)
    mean = mean_score(scores)
    print("-" * 83)
    show(Score(f"mean of {len(scores)}", mean.psnr, mean.ssim, mean.bicubic_psnr, mean.bicubic_ssim))
    sys.stdout.flush()
    if args.json:
        data = {"sr_model": up.sr_model, "scale": args.scale, "crop": args.crop,
                "mean": asdict(mean), "images": [asdict(s) for s in scores]}
        atomic_write_bytes(args.json, json.dumps(data, indent=1).encode(), overwrite=args.overwrite)
    return 0
