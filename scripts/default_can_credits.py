"""Write docs/default-can-paintings.csv: the provenance of every painting the default CAN saw.

    python scripts/default_can_credits.py ../shared/art ../shared/art-styles --min-images 100

The selection is the one ``canstyle train SOURCES --min-images N`` makes: styles with at
least N images over all the sources together. The columns come from each collection's
labels.csv, with the collection's folder name first.
"""

from __future__ import annotations

import argparse
import collections
import csv
from pathlib import Path

COLUMNS = ("collection", "file", "style", "artist", "title", "year", "source", "license")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("art", type=Path, nargs="+", help="folders, each holding a labels.csv")
    ap.add_argument("--min-images", type=int, default=100)
    ap.add_argument("-o", "--output", type=Path,
                    default=Path(__file__).resolve().parents[1] / "docs" / "default-can-paintings.csv")
    args = ap.parse_args()
    rows = []
    for folder in args.art:
        with open(folder / "labels.csv", newline="", encoding="utf-8") as f:
            rows += [{"collection": folder.resolve().name, **r} for r in csv.DictReader(f)]
    counts = collections.Counter(r["style"] for r in rows)
    kept = sorted((r for r in rows if counts[r["style"]] >= args.min_images),
                  key=lambda r: (r["style"], r["collection"], r["file"]))
    with open(args.output, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        w.writeheader()
        w.writerows(kept)
    artists = {r["artist"] for r in kept}
    print(f"{len(kept)} paintings by {len(artists)} artists in {len({r['style'] for r in kept})} styles -> {args.output}")


if __name__ == "__main__":
    main()
