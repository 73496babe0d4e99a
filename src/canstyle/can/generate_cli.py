"""``canstyle generate CKPT -n 16 [--seeds 0-15] -o DIR [--grid] [--truncation T]``."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from canstyle.errors import CanstyleError

log = logging.getLogger("canstyle")


def add_arguments(p: argparse.ArgumentParser) -> None:
    from canstyle.device import DEVICES

    p.add_argument("checkpoint", type=Path, help="a run folder, a checkpoint or an exported .safetensors")
    p.add_argument("-n", type=int, default=16, help="how many images (seeds 0..n-1 unless --seeds)")
    p.add_argument("--seeds", default=None, help="seeds, e.g. 0-15 or 3,7,11 (default: 0..n-1)")
    p.add_argument("-o", "--output", type=Path, required=True, help="folder for seedNNNN.png files")
    p.add_argument("--grid", action="store_true", help="also write grid.png with all images")
    p.add_argument("--truncation", type=float, default=None, help="redraw noise entries beyond +-T (default: off)")
    p.add_argument("--overwrite", action="store_true", help="replace existing files")
    # cpu by default: a seed then gives the same picture on every machine (a GPU's kernels differ)
    p.add_argument("--device", default="cpu", choices=DEVICES, help="where to compute")


def run(args: argparse.Namespace) -> int:
    from canstyle.can.generate import generate, load_generator, make_grid, parse_seeds
    from canstyle.device import resolve_device
    from canstyle.fsutil import check_writable
    from canstyle.imageio import save_image

    if args.n < 1 and args.seeds is None:
        raise CanstyleError("-n must be at least 1")
    seeds = parse_seeds(args.seeds) if args.seeds else list(range(args.n))
    paths = [args.output / f"seed{s:04d}.png" for s in seeds]
    for p in paths + ([args.output / "grid.png"] if args.grid else []):
        check_writable(p, args.overwrite)  # fail before computing anything
    g, cfg, classes = load_generator(args.checkpoint, resolve_device(args.device))
    imgs = generate(g, seeds, args.truncation)
    base = {"command": "generate", "checkpoint": str(args.checkpoint), "truncation": args.truncation,
            "preset": cfg.preset, "classes": classes}
    for s, img, p in zip(seeds, imgs, paths, strict=True):
        save_image(img[None], p, {**base, "seed": s}, overwrite=args.overwrite)
    if args.grid:
        save_image(make_grid(imgs), args.output / "grid.png", {**base, "seeds": seeds}, overwrite=args.overwrite)
    log.info("wrote %d images to %s", len(seeds), args.output)
    return 0
