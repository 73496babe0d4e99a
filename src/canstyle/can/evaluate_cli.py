"""``canstyle evaluate SAMPLES_OR_CKPT --data DATA``: style ambiguity, diversity, KID, memorisation."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from canstyle.cliutil import add_dataclass_args, add_threads_arg, dataclass_from_args, device_type

log = logging.getLogger("canstyle")


def add_arguments(p: argparse.ArgumentParser) -> None:
    from canstyle.can.evaluate import EvalOptions
    from canstyle.device import DEVICES, PRECISIONS

    p.add_argument("samples", type=Path,
                   help="a run folder, checkpoint or exported generator (samples are drawn), "
                        "or a folder of sample images")
    p.add_argument("--data", required=True, nargs="+",
                   help="the training paintings (one or more sources, any layout) or their cache")
    p.add_argument("-n", type=int, default=256, help="samples to draw from a generator (seeds 0..n-1)")
    p.add_argument("--styles", default="", help="styles for a folder of samples (a generator knows its own)")
    p.add_argument("--min-images", type=int, default=0, help="drop styles with fewer images (folder of samples)")
    add_dataclass_args(p, EvalOptions)
    p.add_argument("--json", type=Path, default=None, help="also write the metrics to this file (default: none)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --json file")
    p.add_argument("--device", default="auto", type=device_type, metavar="DEVICE",
                   help=f"where to compute: {', '.join(DEVICES)} or cuda:N")
    p.add_argument("--precision", default="auto", choices=PRECISIONS, help="autocast precision")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    add_threads_arg(p)


def run(args: argparse.Namespace) -> int:
    from canstyle.can.evaluate import EvalOptions, evaluate, summary
    from canstyle.can.sources import parse_styles
    from canstyle.errors import CanstyleError
    from canstyle.fsutil import atomic_write_bytes, check_writable

    if args.n < 2:
        raise CanstyleError("-n must be at least 2")
    opts = dataclass_from_args(EvalOptions, args)
    opts.validate()
    if args.json:
        check_writable(args.json, args.overwrite)  # before the minutes of work, not after
    from canstyle.progress import TqdmProgress

    with TqdmProgress("evaluate", disable=args.quiet) as bar:
        res = evaluate(args.samples, args.data, n=args.n, styles=parse_styles(args.styles),
                       min_images=args.min_images, opts=opts, device=args.device, precision=args.precision,
                       callback=bar)
    text = json.dumps(res, indent=1)
    print(text)
    if args.json:
        atomic_write_bytes(args.json, (text + "\n").encode(), overwrite=args.overwrite)
    log.info("%s", summary(res))
    return 0
