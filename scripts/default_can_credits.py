"""Write docs/default-can-paintings.csv: the provenance of every painting the default CAN saw.

    python scripts/default_can_credits.py ../shared/art --min-images 10

The selection is the one ``canstyle train --min-images N`` makes: styles with at
least N images. The columns come from the collection's labels.csv.
"""

from __future__ import annotations

import argparse
import collections
import csv
from pathlib import Path

COLUMNS = ("file", "style", "artist", "title", "year", "source", "license")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("art", type=Path, help="the folder holding labels.csv")
    ap.add_argument("--min-images", type=int, default=10)
    ap.add_argument("-o", "--output", type=Path,
                    default=Path(__file__).resolve().parents[1] / "docs" / "default-can-paintings.csv")
    args = ap.parse_args()
    with open(args.art / "labels.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    counts = collections.Counter(r["style"] for r in rows)
    kept = sorted((r for r in rows if counts[r["style"]] >= args.min_images), key=lambda r: (r["style"], r["file"]))
    with open(args.output, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        w.writeheader()
        w.writerows(kept)
    artists = {r["artist"] for r in kept}
    print(f"{len(kept)} paintings by {len(artists)} artists in {len({r['style'] for r in kept})} styles -> {args.output}")


if __name__ == "__main__":
    main()
