"""``canstyle stylize CONTENT STYLE [STYLE...] -o OUT``."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

from canstyle.cliutil import (
    add_dataclass_args,
    add_features_arg,
    add_runtime_args,
    dataclass_from_args,
)
from canstyle.errors import CanstyleError
from canstyle.seeds import draw_seed

if TYPE_CHECKING:
    from canstyle.nst.stylize import StylizeOptions

log = logging.getLogger("canstyle")


def add_arguments(p: argparse.ArgumentParser) -> None:
    from canstyle.nst.stylize import StylizeOptions

    p.add_argument("content", type=Path, help="the photo whose structure is kept")
    p.add_argument("styles", type=Path, nargs="+", metavar="STYLE", help="one or more style paintings")
    p.add_argument("-o", "--output", type=Path, required=True, help="result file (.png or .jpg)")
    p.add_argument("--overwrite", action="store_true", help="replace the output if it exists")
    add_features_arg(p)
    p.add_argument("--save-every", type=int, default=0, metavar="N",
                   help="also save the current image every N iterations (0 = never)")
    add_dataclass_args(p, StylizeOptions)
    add_runtime_args(p)


def run(args: argparse.Namespace) -> int:
    import torch

    from canstyle.fsutil import check_writable
    from canstyle.imageio import alpha_for, check_output_format, load_image, save_image
    from canstyle.nst.stylize import StyleTransfer, StylizeOptions, plan_record
    from canstyle.progress import TqdmProgress

    opts = dataclass_from_args(StylizeOptions, args)
    opts.validate()
    if args.save_every < 0:
        raise CanstyleError("--save-every must be >= 0")
    inputs = [args.content, *args.styles] + ([] if opts.init in ("noise", "content") else [Path(opts.init)])
    check_writable(args.output, args.overwrite, inputs)
    check_output_format(args.output)  # fail before the long computation, not after it
    content = load_image(args.content)
    styles = [load_image(s).rgb for s in args.styles]
    opts.weights_for(len(styles))  # these two fail before the network loads, not after
    _note_small_styles(args.styles, styles, opts)
    if opts.init not in ("noise", "content"):
        load_image(opts.init)
    for snap in _snapshot_paths(args.output, tuple(content.rgb.shape[-2:]), opts, args.save_every):
        check_writable(snap, args.overwrite, inputs)  # a snapshot is an output too: never clobbered silently
    seed = args.seed if args.seed is not None else draw_seed()
    engine = StyleTransfer(args.features, args.device, args.precision, pooling=opts.pooling)
    log.info("stylize: %s features on %s (%s), seed %d", engine.features, engine.device,
             str(engine.dtype).replace("torch.", ""), seed)
    params = {
        "command": "stylize", "content": str(args.content), "styles": [str(s) for s in args.styles],
        "seed": seed, "features": engine.features, "device": str(engine.device),
        "precision": str(engine.dtype).replace("torch.", ""), **dataclasses.asdict(opts),
        "plan": plan_record(opts, tuple(content.rgb.shape[-2:])),
    }
    t0 = time.perf_counter()
    with TqdmProgress("stylize", disable=args.quiet) as bar:
        callback = _with_snapshots(bar, args.output, args.save_every, params, args.overwrite)
        out = engine(content.rgb, styles, opts, generator=torch.Generator().manual_seed(seed),
                     callback=callback, preview_every=args.save_every)
    params["seconds"] = round(time.perf_counter() - t0, 2)
    # keep the photo's transparency, at the size of the result
    path = save_image(out, args.output, params, alpha=alpha_for(content, out), overwrite=args.overwrite)
    log.info("wrote %s (%dx%d) in %.1f s", path, out.shape[-1], out.shape[-2], params["seconds"])
    return 0


def _note_small_styles(paths: list[Path], styles: list, opts: StylizeOptions) -> None:  # type: ignore[type-arg]
    """A tip when a painting is enlarged more than 2x to be analysed at --size x --style-scale:
    its strokes then come out large and soft (a 224 px painting at --size 1024 gave blotches)."""
    analysed = opts.size * opts.style_scale
    for path, s in zip(paths, styles, strict=True):
        long = max(s.shape[-2:])
        if analysed > 2 * long:
            log.info("%s is %d px: analysed at %d px it is enlarged %.1fx, so its strokes come out large and "
                     "soft; --style-scale %.2g analyses it at its own size, or use a larger image",
                     path.name, long, round(analysed), analysed / long, long / opts.size)


def _snapshot_path(output: Path, step: int) -> Path:
    return output.with_name(f"{output.stem}.step{step:05d}{output.suffix}")


def _snapshot_paths(output: Path, content_hw: tuple[int, int], opts: StylizeOptions, every: int) -> list[Path]:
    """Every file ``--save-every`` will write, known before any optimisation step."""
    from canstyle.nst.stylize import fit_size, preview_steps

    if every <= 0:
        return []
    return [_snapshot_path(output, s) for s in preview_steps(opts, fit_size(content_hw, opts.size), every)]


def _with_snapshots(bar, output: Path, every: int, params: dict, overwrite: bool):  # type: ignore[no-untyped-def]
    if every <= 0:
        return bar
    from canstyle.imageio import save_image

    def callback(p):  # type: ignore[no-untyped-def]
        bar(p)
        if p.image is not None:
            save_image(p.image, _snapshot_path(output, p.step), {**params, "step": p.step}, overwrite=overwrite)

    return callback
