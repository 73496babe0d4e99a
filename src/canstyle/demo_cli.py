"""``canstyle demo -o OUTDIR``: ``create`` on the two bundled public-domain photos.

The seeds are fixed, so the demo gives the same pictures every time (the README
shows them). Every ``create`` flag still works, e.g. ``--art-seed 3``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from canstyle import create_cli

DEMO_DIR = Path(__file__).resolve().parent / "assets" / "demo"
DEMO_PHOTOS = ("astronaut.jpg", "chelsea.jpg")  # credits: assets/demo/CREDITS.md
DEMO_ART_SEED = 20  # picked by eye (colourful, strong shapes) from the default CAN's seeds 0-63, docs/can-default-128.png


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
