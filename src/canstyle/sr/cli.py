"""``canstyle upscale INPUT... -o OUT [--scale 2|4|8] [--sr-model NAME]``."""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from canstyle.cliutil import add_runtime_args
from canstyle.errors import CanstyleError

log = logging.getLogger("canstyle")
MAX_OUTPUT_PIXELS = 400_000_000  # 20k x 20k: beyond this the PNG alone would be gigabytes
GREY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F")


def add_model_args(p: argparse.ArgumentParser) -> None:
    """--sr-model/--tile/--tile-pad, shared with eval-sr."""
    from canstyle.sr.zoo import DEFAULT_MODEL, MODELS

    # One name for the SR model everywhere (the API's sr_model, create's --sr-model); --model
    # stays accepted because earlier versions documented it.
    p.add_argument("--sr-model", "--model", dest="sr_model", default=DEFAULT_MODEL, metavar="NAME",
                   help=f"one of {', '.join(MODELS)}, or a .safetensors file from train-sr")
    p.add_argument("--tile", type=int, default=256,
                   help="tile side in input pixels, bounding memory (0 = whole image at once)")
    p.add_argument("--tile-pad", type=int, default=0,
                   help="extra overlap around each tile. Tiles always include the network's own "
                        "border and CUNet's SE means are shared, so tiled output already equals "
                        "untiled output and this only costs time; kept for experiments")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", type=Path, nargs="+", metavar="INPUT", help="image files or folders")
    p.add_argument("-o", "--output", type=Path, required=True,
                   help="output folder (created); each result is {stem}_x{scale}.png. "
                        "With one input, a .png/.jpg path names the file itself")
    p.add_argument("--scale", type=int, default=2, choices=(2, 4, 8), help="upscaling factor")
    add_model_args(p)
    p.add_argument("--overwrite", action="store_true", help="replace outputs that exist")
    add_runtime_args(p, seed=False)


def output_paths(inputs: list[Path], output: Path, scale: int, overwrite: bool) -> list[Path]:
    """Where each input goes; checked before any computation."""
    from canstyle.fsutil import check_writable
    from canstyle.imageio import FOREIGN_IMAGE_SUFFIXES, IMAGE_SUFFIXES

    if output.suffix.lower() in (".png", ".jpg", ".jpeg"):
        if len(inputs) != 1:
            raise CanstyleError(f"-o {output} names one file but there are {len(inputs)} inputs; "
                                "give a folder instead")
        outs = [output]
    elif output.suffix.lower() in IMAGE_SUFFIXES + FOREIGN_IMAGE_SUFFIXES and not output.is_dir():
        # Without this, "-o out.webp" would quietly become a folder of PNGs.
        raise CanstyleError(f"unsupported output format {output.suffix!r}: use .png or .jpg, or a folder")
    else:
        if output.exists() and not output.is_dir():
            raise CanstyleError(f"output folder is a file: {output}")
        outs = [output / f"{p.stem}_x{scale}.png" for p in inputs]
        dupes = sorted({o.name for o in outs if outs.count(o) > 1})
        if dupes:
            raise CanstyleError(f"several inputs would be written to the same file: {', '.join(dupes)}")
    for o in outs:
        check_writable(o, overwrite, inputs)
    return outs


def check_inputs(paths: list[Path], scale: int) -> None:
    """Read every header first (cheap), so a file that is not an image, or too large, fails before
    any output is made (a file cut off after a valid header still fails when it is decoded)."""
    from canstyle.imageio import image_size

    for src in paths:
        w, h = image_size(src)
        if w * h * scale**2 > MAX_OUTPUT_PIXELS:
            raise CanstyleError(f"{src}: {w}x{h} x{scale} would be {w * h * scale**2 / 1e6:.0f} MP, "
                                f"limit {MAX_OUTPUT_PIXELS / 1e6:.0f} MP")


def check_model(name: str) -> None:
    from canstyle.sr.zoo import check_model_name, is_weights_file

    if not is_weights_file(name):
        check_model_name(name)  # fail before loading anything


def run(args: argparse.Namespace) -> int:
    from canstyle.imageio import load_image, save_image, tensor_to_pil
    from canstyle.progress import TqdmProgress
    from canstyle.sr.data import list_images
    from canstyle.sr.upscaler import Upscaler, upscale_alpha

    check_model(args.sr_model)
    inputs = list_images(args.inputs)
    outs = output_paths(inputs, args.output, args.scale, args.overwrite)
    if args.output.resolve() in {p.resolve() for p in args.inputs if p.is_dir()}:
        raise CanstyleError(f"-o {args.output} is an input folder, so a later run would enlarge the results "
                            "again; choose another folder")
    check_inputs(inputs, args.scale)
    up = Upscaler(args.sr_model, args.device, args.precision, args.tile, args.tile_pad)
    for src, dst in zip(inputs, outs, strict=True):
        img = load_image(src)
        t0 = time.perf_counter()
        with TqdmProgress(f"upscale {src.name}", disable=args.quiet) as bar:
            rgb = up(img.rgb, args.scale, callback=bar)
        alpha = None if img.alpha is None else upscale_alpha(img.alpha, args.scale)
        im = tensor_to_pil(rgb, alpha)
        if img.mode in GREY_MODES:  # grey in, grey out (the network itself works in RGB)
            im = im.convert("LA" if alpha is not None else "L")
        params = {"command": "upscale", "input": str(src), "scale": args.scale, "sr_model": up.sr_model,
                  "tile": args.tile, "tile_pad": args.tile_pad, "device": str(up.device),
                  "precision": str(up.dtype).replace("torch.", ""),
                  "seconds": round(time.perf_counter() - t0, 3)}
        path = save_image(im, dst, params, overwrite=args.overwrite)
        log.info("wrote %s (%dx%d) in %.2f s", path, im.width, im.height, params["seconds"])
    return 0
