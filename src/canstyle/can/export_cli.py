"""``canstyle export CKPT [-o generator.safetensors]``: the small generator the pipeline loads."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

log = logging.getLogger("canstyle")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", type=Path, help="a run folder (newest checkpoint) or a checkpoint file")
    p.add_argument("-o", "--output", type=Path, default=None,
                   help="output .safetensors (default: generator.safetensors in the run folder)")
    p.add_argument("--half", action="store_true", help="store fp16 weights (half the size)")
    p.add_argument("--overwrite", action="store_true", help="replace the output if it exists")


def run(args: argparse.Namespace) -> int:
    from canstyle.can.checkpoint import find_checkpoint
    from canstyle.can.generate import export_generator, load_generator
    from canstyle.errors import CanstyleError
    from canstyle.fsutil import check_writable

    ckpt = find_checkpoint(args.checkpoint)
    out = args.output or ckpt.parent.parent / "generator.safetensors"
    if out.suffix != ".safetensors":
        raise CanstyleError(f"the output must end in .safetensors, got {out}")
    check_writable(out, args.overwrite)  # before the checkpoint loads
    path = export_generator(ckpt, out, half=args.half, overwrite=args.overwrite)
    _, cfg, classes = load_generator(path)  # prove it loads before reporting success
    log.info("wrote %s (%.1f MB): preset %d, %d styles", path, path.stat().st_size / 1e6, cfg.preset, len(classes))
    return 0
