"""Side-by-side contact sheet of images (e.g. photo, painting, result) for the docs.

    python scripts/make_triptych.py examples/giraffe.jpg examples/starry_night.jpg out.png -o docs/stylize_triptych.jpg
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image, ImageOps


def sheet(paths: list[Path], height: int = 320, gap: int = 8) -> Image.Image:
    ims = [ImageOps.exif_transpose(Image.open(p)).convert("RGB") for p in paths]
    ims = [im.resize((round(im.width * height / im.height), height), Image.LANCZOS) for im in ims]
    out = Image.new("RGB", (sum(im.width for im in ims) + gap * (len(ims) - 1), height), "white")
    x = 0
    for im in ims:
        out.paste(im, (x, 0))
        x += im.width + gap
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("images", nargs="+", type=Path)
    ap.add_argument("-o", "--output", type=Path, required=True)
    ap.add_argument("--height", type=int, default=320)
    args = ap.parse_args()
    sheet(args.images, args.height).save(args.output, quality=90)


if __name__ == "__main__":
    main()
