"""``canstyle create CONTENT... -o OUTDIR``: CAN painting -> SR -> style transfer, with run.json.

``canstyle demo`` (``demo_cli``) is this command on the bundled photos.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from canstyle.cliutil import (
    MAX_SEED,
    add_dataclass_args,
    add_features_arg,
    add_runtime_args,
    dataclass_from_args,
    seed_type,
)
from canstyle.errors import CanstyleError
from canstyle.fsutil import check_writable
from canstyle.nst.plan import MAX_SIDE, MIN_SIDE
from canstyle.seeds import draw_seed

if TYPE_CHECKING:  # annotations only; the heavy imports stay lazy
    import torch

    from canstyle.imageio import LoadedImage
    from canstyle.nst.stylize import StylizeOptions
    from canstyle.pipeline import Pipeline

log = logging.getLogger("canstyle")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("content", type=Path, nargs="+", help="photos to paint")
    add_create_arguments(p)


def add_create_arguments(p: argparse.ArgumentParser) -> None:
    """Every flag of ``create`` except the photos (``demo`` shares them)."""
    from canstyle.nst.stylize import StylizeOptions
    from canstyle.pipeline import CAN_SR_MODEL

    p.add_argument("-o", "--output", type=Path, required=True, help="output folder (created if needed)")
    p.add_argument("--checkpoint", type=Path, default=None,
                   help="CAN run folder, checkpoint or exported .safetensors "
                        "(default: the embedded CAN trained on public-domain paintings)")
    p.add_argument("--art-seed", type=seed_type, default=None,
                   help="seed of the first CAN painting (default: random, recorded in run.json)")
    p.add_argument("--n-arts", type=int, default=1, help="paintings to make: art seeds S, S+1, ...")
    p.add_argument("--art-size", type=int, default=None,
                   help="expected CAN painting size; must match the checkpoint's preset (default: the preset's)")
    p.add_argument("--style-size", type=int, default=None,
                   help="side of the upscaled painting used as the style (default: --size)")
    p.add_argument("--truncation", type=float, default=None, help="CAN noise truncation (redraw beyond +-T) (default: off)")
    p.add_argument("--sr-model", default=CAN_SR_MODEL,
                   help="super-resolution model name or .safetensors (the denoising CUNet smooths the "
                        "CAN's pixel grid into brush shapes; see docs/pipeline.md)")
    add_features_arg(p)
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    add_dataclass_args(p, StylizeOptions)
    add_runtime_args(p)


def _names(paths: list[Path]) -> list[str]:
    """Output stems for the photos, unique, and never "art" (that would be the CAN's file name)."""
    taken, names = {"art"}, []
    for p in paths:
        name, k = p.stem, 2
        while name in taken:
            name, k = f"{p.stem}-{k}", k + 1
        taken.add(name)
        names.append(name)
    return names


def _check_args(args: argparse.Namespace) -> None:
    if args.n_arts < 1:
        raise CanstyleError("--n-arts must be at least 1")
    # seed_type bounds each seed; the last of the --n-arts art seeds S, S+1, ... must fit too.
    if args.art_seed is not None and args.art_seed + args.n_arts - 1 > MAX_SEED:
        raise CanstyleError(f"--art-seed must be at most {MAX_SEED - args.n_arts + 1} with --n-arts {args.n_arts}")
    if args.style_size is not None and not MIN_SIDE <= args.style_size <= MAX_SIDE:
        raise CanstyleError(f"--style-size must be between {MIN_SIDE} and {MAX_SIDE}, got {args.style_size}")
    from canstyle.can.generate import check_truncation

    check_truncation(args.truncation)
    # Fail now, before loading models, if OUTDIR cannot be a folder we can write in.
    from canstyle.imageio import check_output_folder

    check_output_folder(args.output)
    check_writable(args.output / "run.json", args.overwrite)


def run(args: argparse.Namespace) -> int:
    from canstyle.fsutil import atomic_write_bytes
    from canstyle.imageio import load_image
    from canstyle.nst.stylize import StylizeOptions, fit_size
    from canstyle.pipeline import Pipeline, sr_passes

    t_start = time.perf_counter()
    opts = dataclass_from_args(StylizeOptions, args)
    opts.validate()
    _check_args(args)
    photos = [load_image(c) for c in args.content]  # a bad photo fails now, not after an hour
    for photo in photos:
        fit_size(tuple(photo.rgb.shape[-2:]), opts.size)  # too thin to stylise: fail now too
    seed = args.seed if args.seed is not None else draw_seed()
    art0 = args.art_seed if args.art_seed is not None else draw_seed(args.n_arts)
    art_seeds = list(range(art0, art0 + args.n_arts))
    pipe = Pipeline.from_checkpoint(args.checkpoint, features=args.features, sr_model=args.sr_model,
                                    device=args.device, precision=args.precision, pooling=opts.pooling,
                                    art_size=args.art_size)
    style_size = args.style_size or opts.size
    factor = 2 ** sr_passes(pipe.generator.size, style_size)
    out, names = args.output, _names(args.content)
    # The painting as used for the style: enlarged xN by SR, or (no SR pass) only resized.
    tag = f"x{factor}" if factor > 1 else f"{style_size}px"
    plan = {s: {"art": out / f"art_seed{s:04d}.png", "style": out / f"art_seed{s:04d}_{tag}.png",
                "results": [out / f"{n}_seed{s:04d}.png" for n in names]} for s in art_seeds}
    files = [p for v in plan.values() for p in (v["art"], v["style"], *v["results"])]
    assert len(set(files)) == len(files), "planned output names must be unique"
    for p in [*files, out / "contact_sheet.jpg", out / "run.json"]:
        check_writable(p, args.overwrite, args.content)  # never clobber, and fail before computing
    record: dict[str, Any] = {
        "command": "create", "contents": [str(c) for c in args.content], "art_seeds": art_seeds,
        "seed": seed, "style_size": style_size, "truncation": args.truncation, "sr_factor": factor,
        **pipe.describe(), "weights": pipe.weights_info(), "stylize": dataclasses.asdict(opts),
    }
    timing = {"load": round(time.perf_counter() - t_start, 2), "paint": [], "stylize": []}
    rows = _make_all(pipe, photos, plan, opts, seed, args, record, timing)
    _save_sheet(rows, out / "contact_sheet.jpg", record, args.overwrite)
    timing["total"] = round(time.perf_counter() - t_start, 2)
    record["timing"] = timing
    record["outputs"] = [str(p.relative_to(out)) for p in files] + ["contact_sheet.jpg"]
    atomic_write_bytes(out / "run.json", (json.dumps(record, indent=1) + "\n").encode(), overwrite=args.overwrite)
    print(f"canstyle: {len(art_seeds) * len(photos)} painted photo(s), the CAN art and a contact sheet "
          f"are in {out}/ (see {out / 'contact_sheet.jpg'}, parameters in {out / 'run.json'})")
    return 0


def _make_all(pipe: Pipeline, photos: list[LoadedImage], plan: dict[int, dict[str, Any]],
              opts: StylizeOptions, seed: int, args: argparse.Namespace, record: dict[str, Any],
              timing: dict[str, Any]) -> list[list[torch.Tensor]]:
    """Paint every (art seed, photo) pair; returns the contact sheet rows."""
    import torch

    from canstyle.imageio import alpha_for, save_image
    from canstyle.nst.stylize import plan_record
    from canstyle.progress import TqdmProgress

    base = {k: record[k] for k in ("checkpoint", "preset", "sr_model", "features", "truncation", "style_size")}
    rows = []
    with TqdmProgress("create", disable=args.quiet) as bar:
        for art_seed, paths in plan.items():
            t0 = time.perf_counter()
            artwork = pipe.paint(art_seed, record["style_size"], args.truncation, bar)
            timing["paint"].append(round(time.perf_counter() - t0, 2))
            meta = {"command": "create", **base, "art_seed": art_seed}
            save_image(artwork.art, paths["art"], {**meta, "stage": "can"}, overwrite=args.overwrite)
            save_image(artwork.style, paths["style"], {**meta, "stage": "sr", "sr_factor": artwork.sr_factor},
                       overwrite=args.overwrite)
            for photo, path in zip(photos, paths["results"], strict=True):
                t0 = time.perf_counter()
                # A fresh generator per result: any one output is reproducible from (art seed, seed).
                result = pipe(photo.rgb, artwork=artwork, options=opts, callback=bar,
                              generator=torch.Generator().manual_seed(seed)).images[0]
                timing["stylize"].append(round(time.perf_counter() - t0, 2))
                save_image(result, path, {**meta, "stage": "stylize", "seed": seed, "content": str(photo.path),
                                          **record["stylize"], "plan": plan_record(opts, tuple(photo.rgb.shape[-2:]))},
                           alpha=alpha_for(photo, result), overwrite=args.overwrite)
                log.debug("wrote %s", path)
                rows.append([photo.rgb, artwork.style, result])
    return rows


SHEET_ROWS = 40  # JPEG stops at 65,500 px; 40 rows of 320 px stay far below it


def _save_sheet(rows: list[list[torch.Tensor]], path: Path, record: dict[str, Any], overwrite: bool) -> None:
    from canstyle.imageio import save_image
    from canstyle.imageops import contact_sheet

    meta = {"command": "create", "layout": "photo | CAN painting (upscaled) | result",
            "art_seeds": record["art_seeds"], "seed": record["seed"],
            "rows": f"the first {min(len(rows), SHEET_ROWS)} of {len(rows)} results"}
    save_image(contact_sheet(rows[:SHEET_ROWS]), path, meta, overwrite=overwrite)
