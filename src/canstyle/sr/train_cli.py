"""``canstyle train-sr IMAGES... -o runs/ [--steps N] [--init cunet] [--resume [RUN]]``."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from canstyle.cliutil import add_dataclass_args, add_runtime_args, dataclass_from_args
from canstyle.errors import CanstyleError
from canstyle.seeds import draw_seed

log = logging.getLogger("canstyle")


def add_arguments(p: argparse.ArgumentParser) -> None:
    from canstyle.sr.train import TrainOptions

    p.add_argument("images", type=Path, nargs="*", metavar="IMAGES",
                   help="training image files or folders (optional with --resume, which continues on "
                        "the run's own images and refuses others)")
    p.add_argument("-o", "--output", "--out", dest="out", metavar="DIR", type=Path, default=Path("runs"),
                   help="folder for numbered run folders")
    p.add_argument("--resume", nargs="?", const="latest", default=None, metavar="RUN",
                   help="continue a run: a run folder, a checkpoint, or nothing for the newest in -o/--output")
    p.add_argument("--val", type=Path, nargs="+", default=None, metavar="DIR",
                   help="HR images scored (PSNR on Y) at every checkpoint (default: none)")
    p.add_argument("--val-crop", type=int, default=384, metavar="N",
                   help="score the central NxN crop of each --val image (0 = whole image)")
    add_dataclass_args(p, TrainOptions)
    add_runtime_args(p)


def _images_of_run(resume: str, out: Path) -> list[Path]:
    from canstyle.sr.train import run_config

    images = run_config(resume, out)["images"]
    if not isinstance(images, list) or not all(isinstance(p, str) for p in images):
        raise CanstyleError(f"--resume {resume}: the run's config.json has no image list")
    return [Path(p) for p in images]


def _check_val(paths: list[Path], crop: int) -> None:
    """Load every --val image now: a bad one must fail before the run folder is made, not at step 1."""
    from canstyle.sr.evaluate import load_hr

    if crop < 0:
        raise CanstyleError("--val-crop must be >= 0")
    for p in paths:
        load_hr(p, 2, crop)  # not an image, or too small (after the crop) to score


def run(args: argparse.Namespace) -> int:
    from canstyle.progress import TqdmProgress
    from canstyle.runs import check_run_writable
    from canstyle.sr.data import list_images
    from canstyle.sr.train import TrainOptions, train, validator
    from canstyle.sr.zoo import check_model_name, is_weights_file

    opts = dataclass_from_args(TrainOptions, args)
    check_run_writable(args.out, args.resume, "sr")
    if not is_weights_file(opts.init):
        check_model_name(opts.init)
    if args.images:
        paths = list_images(args.images)
    elif args.resume:
        paths = _images_of_run(args.resume, args.out)
    else:
        raise CanstyleError("give training images (files or folders), or --resume a run")
    hook = None
    if args.val:
        val = list_images(args.val)
        _check_val(val, args.val_crop)
        hook = validator(val, args.val_crop)
    seed = args.seed if args.seed is not None else draw_seed()
    with TqdmProgress("train-sr", disable=args.quiet) as bar:
        model = train(paths, args.out, opts, args.resume, args.device, args.precision, seed,
                      callback=bar, on_checkpoint=hook)
    log.info("wrote %s (use it with: canstyle upscale --sr-model %s ...)", model, model)
    return 0
