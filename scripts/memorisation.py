"""Memorisation check of a CAN: nearest training painting of each sample, in the judge's space.

    python scripts/memorisation.py RUN_OR_EXPORT --data ../shared/art ../shared/art-styles \\
        -n 512 --pairs docs/can-memorisation.png --json docs/can-memorisation.json

The judge, the samples (seeds 0..n-1) and the feature space are those of ``canstyle evaluate``
(the hidden layer that KID uses). Prints the distance statistics; writes the closest
sample/painting pairs side by side.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from canstyle.can.evaluate import judged_samples
from canstyle.can.memorisation import memorisation, pairs_sheet
from canstyle.imageio import save_image


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", help="CAN run, checkpoint or export")
    ap.add_argument("--data", nargs="+", required=True, help="the paintings it trained on")
    ap.add_argument("-n", type=int, default=512, help="samples (seeds 0..n-1), as in evaluate")
    ap.add_argument("-k", type=int, default=8, help="closest pairs to show")
    ap.add_argument("--pairs", type=Path, default=None, help="image of the closest pairs")
    ap.add_argument("--json", type=Path, default=None, help="also write the statistics here")
    args = ap.parse_args()
    j = judged_samples(args.run, args.data, args.n)
    stats, pairs = memorisation(j, args.k)
    stats["run"] = args.run
    text = json.dumps(stats, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    if args.pairs:
        save_image(pairs_sheet(j, pairs), args.pairs, {"script": "memorisation", "run": args.run}, overwrite=True)


if __name__ == "__main__":
    main()
