"""The ambiguity experiment's table from ``canstyle evaluate --json`` files, one CAN/GAN pair per seed.

    python scripts/ambiguity_table.py --pair 1 docs/can-eval-union-s1-l1.json docs/can-eval-union-s1-l0.json \\
        --pair 2 docs/can-eval-union-s2-l1.json docs/can-eval-union-s2-l0.json

Prints a Markdown table: per pair, the CAN's (lambda = 1) and the GAN's (lambda = 0) mean
normalised style entropy and style-balanced KID, and the two Done-when tests of issue 14:
CAN entropy above the GAN's, and CAN balanced KID at most 1.5x the GAN's.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

KID_LIMIT = 1.5


def row(seed: str, can: dict, gan: dict) -> str:
    ratio = can["kid_balanced"] / gan["kid_balanced"]
    entropy_ok = can["fake_entropy"] > gan["fake_entropy"]
    kid_ok = ratio <= KID_LIMIT
    return (f"| {seed} | {can['fake_entropy']:.3f} | {gan['fake_entropy']:.3f} | "
            f"{can['kid_balanced']:.3f} ± {can['kid_balanced_std']:.3f} | "
            f"{gan['kid_balanced']:.3f} ± {gan['kid_balanced_std']:.3f} | {ratio:.2f} | "
            f"{can['kid']:.3f} / {gan['kid']:.3f} | {'pass' if entropy_ok and kid_ok else 'FAIL'} "
            f"(entropy {'higher' if entropy_ok else 'not higher'}, KID ratio {'<=' if kid_ok else '>'} {KID_LIMIT}) |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pair", nargs=3, action="append", required=True, metavar=("SEED", "CAN_JSON", "GAN_JSON"))
    args = ap.parse_args()
    print("| seed | CAN entropy | GAN entropy | CAN balanced KID | GAN balanced KID | ratio | plain KID CAN / GAN | verdict |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for seed, can, gan in args.pair:
        print(row(seed, json.loads(Path(can).read_text()), json.loads(Path(gan).read_text())))


if __name__ == "__main__":
    main()
