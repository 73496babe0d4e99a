"""``canstyle prepare-data SRC -o CACHE``: paintings -> a compact uint8 training cache."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from canstyle.cliutil import add_threads_arg

log = logging.getLogger("canstyle")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", type=Path, nargs="+",
                   help="one or more sources, in any mix: a folder of style sub-folders, a CSV of "
                        "path,style, or a folder of huggan/wikiart parquet shards")
    p.add_argument("-o", "--output", type=Path, default=None,
                   help="cache folder (default: under CANSTYLE_HOME, where train finds it)")
    p.add_argument("--size", type=int, default=128,
                   help="short side of cached images in pixels (2 x the training size keeps detail for crops)")
    p.add_argument("--styles", default="", help="comma list of styles to keep ('paper' = its 25), default all")
    p.add_argument("--overwrite", action="store_true", help="rebuild an existing cache")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    add_threads_arg(p)


def run(args: argparse.Namespace) -> int:
    from canstyle.can.data import check_dest, default_cache_dir, prepare
    from canstyle.can.sources import parse_styles
    from canstyle.progress import TqdmProgress

    styles = parse_styles(args.styles)
    dest = args.output or default_cache_dir(args.source, args.size, styles)
    check_dest(dest, args.overwrite)  # before the progress bar: a refusal is one line
    with TqdmProgress("prepare-data", disable=args.quiet) as bar:
        rep = prepare(args.source, dest, size=args.size, styles=styles, overwrite=args.overwrite, callback=bar)
    skipped = ", ".join(f"{k} {v}" for k, v in sorted(rep.skipped.items())) or "none"
    dups = f"{rep.duplicates}" + (f" ({rep.relabelled} with another style; kept the first)" if rep.relabelled else "")
    log.info("wrote %s: %d images in %d styles; skipped: %s; duplicates dropped: %s",
             dest, rep.count, len(rep.counts), skipped, dups)
    for name, n in sorted(rep.counts.items(), key=lambda kv: -kv[1]):
        log.info("  %6d  %s", n, name)
    return 0
