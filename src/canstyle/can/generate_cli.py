"""``canstyle generate [CKPT] -n 16 [--seeds 0-15] -o DIR [--grid] [--truncation T]``."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from canstyle.cliutil import add_threads_arg, device_type
from canstyle.errors import CanstyleError

if TYPE_CHECKING:
    from canstyle.can.generate import CanGenerator

log = logging.getLogger("canstyle")


def add_arguments(p: argparse.ArgumentParser) -> None:
    from canstyle.device import DEVICES

    p.add_argument("checkpoint", type=Path, nargs="?", default=None,
                   help="a run folder, a checkpoint or an exported .safetensors (default: the embedded default CAN)")
    p.add_argument("-n", type=int, default=None, help="how many images, seeds 0..n-1 (default: 16; or --seeds)")
    p.add_argument("--seeds", default=None, help="seeds, e.g. 0-15 or 3,7,11 (default: 0..n-1)")
    p.add_argument("-o", "--output", type=Path, required=True, help="folder for seedNNNN.png files")
    p.add_argument("--grid", action="store_true", help="also write grid.png with all images")
    p.add_argument("--truncation", type=float, default=None, help="redraw noise entries beyond +-T (default: off)")
    p.add_argument("--overwrite", action="store_true", help="replace existing files")
    # cpu by default: a seed then gives the same picture on every machine (a GPU's kernels differ)
    p.add_argument("--device", default="cpu", type=device_type, metavar="DEVICE",
                   help=f"where to compute: {', '.join(DEVICES)} or cuda:N")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    add_threads_arg(p)


MAX_GRID = 1024  # a contact sheet of more is unreadable, and it is held in memory


def run(args: argparse.Namespace) -> int:
    from canstyle.can.generate import MAX_IMAGES, CanGenerator, check_truncation, parse_seeds
    from canstyle.device import resolve_device
    from canstyle.fsutil import check_writable
    from canstyle.imageio import check_output_folder

    if args.seeds is not None and args.n is not None:
        raise CanstyleError("give -n or --seeds, not both")
    n = 16 if args.n is None else args.n
    if args.seeds is None and not 1 <= n <= MAX_IMAGES:
        raise CanstyleError(f"-n must be between 1 and {MAX_IMAGES:,}")
    seeds = parse_seeds(args.seeds) if args.seeds is not None else list(range(n))
    if args.grid and len(seeds) > MAX_GRID:
        raise CanstyleError(f"--grid takes at most {MAX_GRID} images; drop --grid or ask for fewer")
    check_truncation(args.truncation)
    check_output_folder(args.output)
    paths = [args.output / f"seed{s:04d}.png" for s in seeds]
    for p in paths + ([args.output / "grid.png"] if args.grid else []):
        check_writable(p, args.overwrite)  # fail before computing anything
    gen = CanGenerator.load(args.checkpoint, resolve_device(args.device))
    base = {"command": "generate", "checkpoint": str(gen.source), "truncation": args.truncation,
            "preset": gen.config.preset, "classes": gen.classes}
    _write_images(gen, seeds, paths, base, args)
    log.info("wrote %d images to %s", len(seeds), args.output)
    return 0


def _write_images(gen: CanGenerator, seeds: list[int], paths: list[Path], base: dict, args: argparse.Namespace) -> None:
    """Paint and save batch by batch, so memory stays flat however many seeds are asked for."""
    import torch

    from canstyle.imageio import save_image
    from canstyle.imageops import make_grid
    from canstyle.progress import Progress, TqdmProgress

    kept: list[torch.Tensor] = []
    batch = 32
    with TqdmProgress("generate", disable=args.quiet or len(seeds) <= batch, unit="img") as bar:
        for i in range(0, len(seeds), batch):
            imgs = gen(seeds[i : i + batch], args.truncation, batch=batch)
            for s, img, p in zip(seeds[i : i + batch], imgs, paths[i : i + batch], strict=True):
                save_image(img[None], p, {**base, "seed": s}, overwrite=args.overwrite)
            if args.grid:
                kept.append(imgs)
            bar(Progress("generate", i + len(imgs), len(seeds)))
    if args.grid:
        save_image(make_grid(torch.cat(kept)), args.output / "grid.png", {**base, "seeds": seeds},
                   overwrite=args.overwrite)
