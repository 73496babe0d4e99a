"""``canstyle demo -o OUTDIR``: ``create`` on the two bundled public-domain photos.

The seeds are fixed, so the demo gives the same pictures every time (the README
shows them). Every ``create`` flag still works, e.g. ``--art-seed 3``.
"""

from __future__ import annotations

import argparse

from canstyle import create_cli
from canstyle.assets import DEMO_ART_SEED, DEMO_DIR, DEMO_PHOTOS


def add_arguments(p: argparse.ArgumentParser) -> None:
    create_cli.add_create_arguments(p)
    p.set_defaults(art_seed=DEMO_ART_SEED, seed=0)
    for action in p._actions:  # create's help says "random"; the demo's seeds are fixed
        if action.dest == "art_seed":
            action.help = "seed of the first CAN painting; the README shows this one (default: %(default)s)"
        elif action.dest == "seed":
            action.help = "noise seed of style transfer (default: %(default)s)"


def run(args: argparse.Namespace) -> int:
    args.content = [DEMO_DIR / name for name in DEMO_PHOTOS]
    return create_cli.run(args)
