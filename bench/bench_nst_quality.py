"""Quality harness: the default stylisation at every size, on several content/style pairs.

For each pair (a row) and size (a column) it runs ``StyleTransfer`` with the default options,
saves the result as PNG, reloads it and measures in fp32:

- content fraction = content loss of the result / content loss of the painting itself against
  the photo (the painting resized to the result's size): how much of the photo's structure
  the result keeps (0 = all of it, 1 = no more than an unrelated painting);
- style fraction = style loss of the result / style loss of the photo itself against the
  painting: how much of the gap in style statistics is left (0 = none).

Columns: long side 64, 128, 256, 512 and 768 at the photo's own aspect ratio, and centre crops
of the photo to 2:1 and 1:2 at 384. Writes a contact sheet and a table to docs/.

    python bench/bench_nst_quality.py                 # about 20 min on 2 cores with bf16
    python bench/bench_nst_quality.py --pairs 2 --sizes 64,128   # quicker look

Reference runs, which leave docs/ alone (use --out to keep their results apart):

    python bench/bench_nst_quality.py --plain 500 --sizes 512 --out /tmp/plain   # plain Gatys
    python bench/bench_nst_quality.py --set quality=fine --set loss_scale=pair --set style_weight=5
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

from canstyle.errors import CanstyleError
from canstyle.imageio import load_rgb, save_image
from canstyle.imageops import contact_sheet
from canstyle.nst.quality import fractions
from canstyle.nst.stylize import StyleTransfer, StylizeOptions, fit_size, scale_plan

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import machine, write_section  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
ART = SHARED / "art" / "images"
# (name, photo, painting): animal photos, the demo photos, a hazy Impressionist painting, a
# high-contrast one, a Ukiyo-e print and a CAN painting.
PAIRS = [
    ("giraffe / Monet, hazy", SHARED / "photos/giraffe.jpg",
     ART / "Impressionism/claude_monet__houses_of_parliament.jpg"),
    ("kingfisher / Caravaggio, high contrast", SHARED / "photos/kingfisher.jpg",
     ART / "Baroque/caravaggio__saint_jerome_writing.jpg"),
    ("meerkats / Hokusai, Ukiyo-e", SHARED / "photos/meerkats.jpg",
     ART / "Ukiyo_e/katsushika_hokusai__the_great_wave_off_kanagawa.jpg"),
    ("astronaut / CAN painting", ROOT / "src/canstyle/assets/demo/astronaut.jpg",
     ROOT / "examples/can_painting.png"),
    ("chelsea / Van Gogh", ROOT / "src/canstyle/assets/demo/chelsea.jpg", ROOT / "examples/starry_night.jpg"),
    ("toucan / Sisley, hazy river", SHARED / "photos/toucan.jpg",
     ART / "Impressionism/alfred_sisley__the_bridge_at_villeneuve_la_garenne.jpg"),
]
SIZES = ("64", "128", "256", "512", "768", "384@2:1", "384@1:2")
LIMITS = {"content": 0.5, "style": 0.05}


def crop_aspect(x: torch.Tensor, aspect: float) -> torch.Tensor:
    """Centre crop to width / height = ``aspect``."""
    h, w = x.shape[-2:]
    if w / h > aspect:
        nw = round(h * aspect)
        return x[..., :, (w - nw) // 2 : (w - nw) // 2 + nw]
    nh = round(w / aspect)
    return x[..., (h - nh) // 2 : (h - nh) // 2 + nh, :]


def cell_input(photo: torch.Tensor, column: str) -> tuple[torch.Tensor, int]:
    if "@" not in column:
        return photo, int(column)
    size, ratio = column.split("@")
    a, b = (int(v) for v in ratio.split(":"))
    return crop_aspect(photo, a / b), int(size)


def cell_options(size: int, plain: int, changes: dict[str, Any] | None = None) -> StylizeOptions:
    """The default options with ``changes``, or with ``plain`` > 0 plain Gatys: one scale from
    noise, ``plain`` evaluations, no plateau stop and no start-scale TV term (the speed
    benchmark's baseline)."""
    changes = changes or {}
    if plain > 0:
        changes = {"min_scale": size, "iterations": plain, "plateau": 0.0, "start_tv_weight": 0.0, **changes}
    return StylizeOptions().with_overrides(size=size, **changes)


def parse_changes(pairs: list[str]) -> dict[str, Any]:
    """--set KEY=VALUE options: numbers as numbers, anything else as text."""
    out: dict[str, Any] = {}
    for item in pairs:
        key, eq, value = item.partition("=")
        if not eq or key == "size":
            raise SystemExit(f"--set {item}: give KEY=VALUE for a StylizeOptions field other than size "
                             "(the columns set it)")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def run_cell(engine: StyleTransfer, photo: torch.Tensor, painting: torch.Tensor, column: str,
             out: Path, seed: int, plain: int = 0, changes: dict[str, Any] | None = None) -> dict:
    content, size = cell_input(photo, column)
    opts = cell_options(size, plain, changes)
    n = [0]

    def count(p) -> None:  # type: ignore[no-untyped-def]
        n[0] += p.loss is not None

    t0 = time.perf_counter()
    x = engine(content, painting, opts, generator=torch.Generator().manual_seed(seed), callback=count)
    secs = time.perf_counter() - t0
    save_image(x, out, {"bench": "nst_quality", "size": column, "seed": seed}, overwrite=True)
    saved = load_rgb(out)  # measured on the saved 8-bit image, as a user gets it
    plan = scale_plan(opts, fit_size(tuple(content.shape[-2:]), size))
    return {"size": column, "hw": list(saved.shape[-2:]), "seconds": round(secs, 2), "evaluations": n[0],
            "plan": [[st.long, st.iterations] for st in plan],
            **{k: round(v, 4) for k, v in fractions(engine, saved, content, painting, opts).items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=len(PAIRS), help="use the first N pairs")
    ap.add_argument("--skip", type=int, default=0, help="leave out the first K of those (implies --no-doc)")
    ap.add_argument("--sizes", default=",".join(SIZES), help="columns, e.g. 64,128,384@2:1")
    ap.add_argument("--precision", default="auto", help="precision of the runs (measurement is fp32)")
    ap.add_argument("--features", default="vgg16")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "bench/results/nst_quality"))
    ap.add_argument("--no-doc", action="store_true", help="do not update docs/")
    ap.add_argument("--plain", type=int, default=0, metavar="N",
                    help="run plain single-scale Gatys with N evaluations instead of the default "
                         "(a reference for the limits; implies --no-doc)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="change a StylizeOptions field, e.g. --set quality=fine (implies --no-doc)")
    args = ap.parse_args()
    changes = parse_changes(args.set)
    try:
        cell_options(64, args.plain, changes)  # a bad --set fails now, not after the network loads
    except (TypeError, CanstyleError) as e:
        raise SystemExit(f"--set: {e}") from None
    if not 0 <= args.skip < min(args.pairs, len(PAIRS)):
        raise SystemExit("--skip must leave at least one pair")
    args.no_doc = args.no_doc or args.plain > 0 or bool(changes) or args.skip > 0
    if not SHARED.is_dir():
        raise SystemExit(f"needs ../shared beside the clone ({SHARED})")
    columns = [c for c in args.sizes.split(",") if c]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    engine = StyleTransfer(args.features, "cpu", args.precision, pooling=changes.get("pooling", "max"))
    rows, images = [], []  # images: one list per pair
    for name, photo_path, paint_path in PAIRS[args.skip : args.pairs]:
        photo, painting = load_rgb(photo_path), load_rgb(paint_path)
        cells = []
        images.append([])
        for col in columns:
            path = out / f"{photo_path.stem}_{col.replace('@', '_').replace(':', 'x')}.png"
            cell = run_cell(engine, photo, painting, col, path, args.seed, args.plain, changes)
            print(f"{name:42s} {col:8s} content {cell['content']:.3f} style {cell['style']:.4f} "
                  f"{cell['seconds']:.1f} s", flush=True)
            cells.append(cell)
            images[-1].append(load_rgb(path))
        rows.append({"pair": name, "photo": str(photo_path.relative_to(ROOT.parent)),
                     "painting": str(paint_path.relative_to(ROOT.parent)), "cells": cells})
    result = {"machine": machine(), "precision": str(engine.dtype), "features": engine.features,
              "seed": args.seed, "plain": args.plain, "options": changes, "columns": columns, "rows": rows,
              "limits": LIMITS}
    (out / "quality.json").write_text(json.dumps(result, indent=1))
    sheet = contact_sheet(images, height=200)
    save_image(sheet, out / "contact_sheet.jpg", overwrite=True)
    if not args.no_doc:
        save_image(sheet, ROOT / "docs/nst-quality-sheet.jpg", overwrite=True)
        write_section("nst-quality", markdown(result))


def markdown(r: dict) -> str:
    cols = r["columns"]
    head = "| pair | " + " | ".join(cols) + " |\n| --- |" + " ---: |" * len(cols)
    lines = []
    fails = 0
    for row in r["rows"]:
        cells = []
        for c in row["cells"]:
            bad = c["content"] > LIMITS["content"] or c["style"] > LIMITS["style"]
            fails += bad
            cells.append(f"{'**' if bad else ''}{c['content']:.2f} / {c['style']:.3f}{'**' if bad else ''}")
        lines.append(f"| {row['pair']} | " + " | ".join(cells) + " |")
    n = sum(len(row["cells"]) for row in r["rows"])
    return f"""## Style transfer quality at every size (`bench/bench_nst_quality.py`)

Machine: {r["machine"]}. Runs in {r["precision"].replace("torch.", "")}, features {r["features"]},
seed {r["seed"]}, default options; each cell is measured in fp32 on the saved PNG. A cell shows
the **content fraction / style fraction**: the result's content loss over the painting's own
content loss against the photo, and the result's style loss over the photo's own style loss
against the painting. Limits: content at most {LIMITS["content"]}, style at most
{LIMITS["style"]}; cells over a limit are in bold ({fails} of {n}). Columns are the long side at
the photo's aspect ratio, then centre crops to 2:1 and 1:2 at 384.

{head}
{chr(10).join(lines)}

![contact sheet: one row per pair, one column per size](nst-quality-sheet.jpg)

Photos: Wikimedia Commons animals as packaged by GCompris (CC BY / BY-SA / CC0; authors in
`../shared/photos/ATTRIBUTION-upstream.txt`) and scikit-image's public-domain astronaut and cat.
Paintings: public-domain works from museum open-access collections (`../shared/art/labels.csv`),
and a painting by canstyle's own CAN.
"""


if __name__ == "__main__":
    main()
