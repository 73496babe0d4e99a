"""``canstyle train DATA -o runs/ ...`` (also under ``torchrun --nproc_per_node=N -m canstyle train``)."""

from __future__ import annotations

import argparse
import logging

log = logging.getLogger("canstyle")


def add_arguments(p: argparse.ArgumentParser) -> None:
    from canstyle.can.train import TrainOptions
    from canstyle.cliutil import add_dataclass_args, add_runtime_args

    p.add_argument("data", nargs="*", default=None,
                   help="paintings (style folders, CSVs, parquet shards, several in any mix) or a "
                        "prepare-data cache; optional with --resume")
    p.add_argument("-o", "--output", "--out", dest="out", metavar="DIR", default="runs",
                   help="folder that holds the numbered run folders")
    p.add_argument("--resume", nargs="?", const="latest", default=None, metavar="latest|PATH",
                   help="continue the newest run under -o/--output, or the given run folder / checkpoint")
    p.add_argument("--dry-run", action="store_true",
                   help="check data and models, time one step; writes nothing (no run folder, no "
                        "cache: uncached paintings are listed, and only the timed steps' decoded)")
    add_dataclass_args(p, TrainOptions)
    add_runtime_args(p)


def run(args: argparse.Namespace) -> int:
    import os

    from canstyle.can.train import TrainOptions, train
    from canstyle.cliutil import dataclass_from_args
    from canstyle.progress import TqdmProgress
    from canstyle.runs import check_run_writable

    opts = dataclass_from_args(TrainOptions, args)
    if not args.dry_run:  # a dry run writes nothing
        check_run_writable(args.out, args.resume, "can")
    rank0 = int(os.environ.get("RANK", "0")) == 0
    with TqdmProgress("train", disable=args.quiet or not rank0 or args.dry_run) as bar:
        res = train(args.data or None, args.out, opts, resume=args.resume, device=args.device,
                    precision=args.precision, seed=args.seed, callback=bar, dry_run=args.dry_run)
    if args.dry_run:
        return 0
    if rank0:
        log.info("run %s: step %d%s", res.run_dir, res.step, " (interrupted)" if res.interrupted else "")
    return 130 if res.interrupted else 0
