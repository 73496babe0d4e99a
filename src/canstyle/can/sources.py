"""Where paintings come from: style folders, CSVs and Hugging Face parquet shards, as one stream.

``iter_items`` yields every painting of one source with its style; ``decode`` turns one into
pixels for the cache (``canstyle.can.data``). Several sources may be mixed; ``as_sources``
normalises the argument.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from canstyle.errors import CanstyleError, first_line
from canstyle.imageio import IMAGE_SUFFIXES
from canstyle.imageops import resize_to

# huggan/wikiart's `style` ClassLabel, in index order (used when a shard carries no feature metadata).
HUGGAN_STYLES = (
    "Abstract_Expressionism", "Action_painting", "Analytical_Cubism", "Art_Nouveau", "Baroque",
    "Color_Field_Painting", "Contemporary_Realism", "Cubism", "Early_Renaissance", "Expressionism",
    "Fauvism", "High_Renaissance", "Impressionism", "Mannerism_Late_Renaissance", "Minimalism",
    "Naive_Art_Primitivism", "New_Realism", "Northern_Renaissance", "Pointillism", "Pop_Art",
    "Post_Impressionism", "Realism", "Rococo", "Romanticism", "Symbolism", "Synthetic_Cubism", "Ukiyo_e",
)
PAPER_STYLES = tuple(s for s in HUGGAN_STYLES if s not in ("Symbolism", "Ukiyo_e"))  # the paper's 25
# one data source, or several that go into one cache
SourceArg = str | os.PathLike[str] | Sequence[str | os.PathLike[str]]
MAX_ASPECT = 2.0  # longer side is centre-cropped to at most this x the short side
# Smallest short side a painting may have. Below it a source is a strip or an icon with no brushwork
# to learn: even the smallest preset (64) would enlarge it more than 2x, and a 1 px-high strip
# would become a 1x2 cache entry. 32 is also the floor style transfer uses (nst.plan.MIN_SIDE).
MIN_SIDE = 32
COLUMNS = ("image", "style")  # what a parquet shard must hold (huggan/wikiart's names)


@dataclass
class Item:
    style: str
    name: str  # path or shard:row, for error reports
    path: Path | None = None
    data: bytes | None = None
    problem: str | None = None  # why this row cannot be used (e.g. "no style"): skipped and counted


class TooSmall(CanstyleError):
    """A readable image whose short side is below ``MIN_SIDE``; skipped as "too small"."""


def parse_styles(text: str | None) -> list[str] | None:
    """'--styles' value: comma list, or 'paper' for the paper's 25 WikiArt styles."""
    if not text:
        return None
    if text.strip() == "paper":
        return list(PAPER_STYLES)
    return sorted({s.strip() for s in text.split(",") if s.strip()})


def require_source(src: Path) -> None:
    if not src.exists():
        raise CanstyleError(f"no such data: {src}")


def detect_layout(src: Path) -> str:
    require_source(src)
    if src.is_file():
        if src.suffix.lower() == ".csv":
            return "csv"
        if src.suffix.lower() == ".parquet":
            return "parquet"
        raise CanstyleError(f"expected a folder, a .csv or a .parquet file, got {src}")
    if (src / "labels.csv").is_file():
        return "csv"
    if next(src.rglob("*.parquet"), None) is not None:
        return "parquet"
    return "folders"


def check_source(src: Path) -> str:
    """``detect_layout``, plus opening every parquet shard's footer (cheap), so that a bad shard
    fails before any image is decoded, not after hours of the shards before it."""
    layout = detect_layout(src)
    if layout == "parquet":
        for shard in _shards(src):
            _open_shard(shard)
    return layout


def _folder_items(root: Path) -> Iterator[Item]:
    styles = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not styles:
        raise CanstyleError(f"{root} has no style sub-folders (expected DATA/<Style>/<image>)")
    for d in styles:
        for f in sorted(d.rglob("*")):
            if f.suffix.lower() in IMAGE_SUFFIXES:
                yield Item(style=d.name, name=str(f), path=f)


def _csv_items(csv_path: Path) -> Iterator[Item]:
    try:
        yield from _csv_rows(csv_path)
    except UnicodeDecodeError:
        raise CanstyleError(f"{csv_path} is not UTF-8 text; save the CSV as UTF-8") from None


def _csv_rows(csv_path: Path) -> Iterator[Item]:
    with open(csv_path, newline="", encoding="utf-8-sig") as fh:  # -sig: Excel's byte-order mark
        reader = csv.DictReader(fh)
        cols = set(reader.fieldnames or ())
        key = "path" if "path" in cols else "file" if "file" in cols else None
        if key is None or "style" not in cols:
            raise CanstyleError(f"{csv_path} needs columns 'path' (or 'file') and 'style'")
        for row in reader:
            # a short row has None for its missing cells; like a missing file it is skipped, not fatal
            raw, style = row.get(key) or "", (row.get("style") or "").strip()
            if not raw.strip() or not style:
                where = f"{csv_path} line {reader.line_num}"
                yield Item(style=style, name=where, problem="no path" if not raw.strip() else "no style")
                continue
            p = Path(raw)
            p = p if p.is_absolute() else csv_path.parent / p
            yield Item(style=style, name=str(p), path=p)


def _parquet_style_names(pf: object) -> list[str]:
    meta = (pf.schema_arrow.metadata or {}).get(b"huggingface")  # type: ignore[attr-defined]
    try:
        names = json.loads(meta)["info"]["features"]["style"]["names"] if meta else None
    except (KeyError, TypeError, json.JSONDecodeError):
        names = None
    return list(names) if names else list(HUGGAN_STYLES)


def _shards(src: Path) -> list[Path]:
    return [src] if src.is_file() else sorted(src.rglob("*.parquet"))


def _pyarrow() -> tuple[Any, Any]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise CanstyleError("reading parquet shards needs pyarrow: pip install 'canstyle[wikiart]'") from None
    return pa, pq


def _open_shard(shard: Path) -> Any:
    """A ``pyarrow.parquet.ParquetFile`` that holds ``COLUMNS``, or a one-line CanstyleError."""
    pa, pq = _pyarrow()
    try:
        pf = pq.ParquetFile(shard)
    except (pa.ArrowException, OSError) as e:
        raise CanstyleError(f"{shard} cannot be read as parquet: {first_line(e)}") from None
    have = list(pf.schema_arrow.names)
    lacking = [c for c in COLUMNS if c not in have]
    if lacking:
        shown = ", ".join(have[:12]) + (", ..." if len(have) > 12 else "") or "none"
        raise CanstyleError(f"{shard} lacks column{'s' * (len(lacking) > 1)} {', '.join(lacking)} "
                            f"(it has: {shown})")
    return pf


def _parquet_items(src: Path, wanted: set[str] | None, images: bool = True) -> Iterator[Item]:
    """The rows of every shard; without ``images`` only the style column is read (Item.data None)."""
    pa, _ = _pyarrow()
    for shard in _shards(src):
        pf = _open_shard(shard)
        names = _parquet_style_names(pf)
        row = 0
        try:
            for batch in pf.iter_batches(columns=list(COLUMNS) if images else ["style"], batch_size=64):
                styles = batch.column("style").to_pylist()
                imgs = batch.column("image").to_pylist() if images else [None] * len(styles)
                for img, style in zip(imgs, styles, strict=True):
                    name = f"{shard.name}:{row}"
                    row += 1
                    label = "" if style is None else (
                        names[style] if isinstance(style, int) and 0 <= style < len(names) else str(style).strip())
                    if not label:  # a null or blank label: skipped and counted, as in a CSV
                        yield Item(style="", name=name, problem="no style")
                        continue
                    if wanted is not None and label not in wanted:
                        continue
                    data = img.get("bytes") if isinstance(img, dict) else None
                    yield Item(style=label, name=name, data=data)
        except (pa.ArrowException, OSError) as e:  # a damaged page in a shard whose footer was fine
            raise CanstyleError(f"{shard} is damaged after row {row}: {first_line(e)}") from None


def as_sources(src: SourceArg) -> list[Path]:
    """One source or several, as a list of distinct paths (order kept: it numbers the sources)."""
    items = [src] if isinstance(src, (str, os.PathLike)) else list(src)
    if not items:
        raise CanstyleError("no data given")
    out: list[Path] = []
    for s in items:
        p = Path(s)
        if any(p.resolve() == q.resolve() for q in out):
            raise CanstyleError(f"{p} is given twice")
        out.append(p)
    return out


def iter_items(src: Path, styles: list[str] | None = None, images: bool = True) -> Iterator[Item]:
    """Every painting of ``src`` in ``styles`` (all by default), and every unusable row
    (``Item.problem`` set) unless it names an unwanted style. ``images=False`` lists the labels
    without reading a parquet shard's image bytes (folders and CSVs are never read here)."""
    layout = detect_layout(src)
    wanted = set(styles) if styles else None
    if layout == "parquet":
        yield from _parquet_items(src, wanted, images)
        return
    csv_path = src / "labels.csv" if src.is_dir() and layout == "csv" else src
    items = _csv_items(csv_path) if layout == "csv" else _folder_items(src)
    for it in items:
        if wanted is None or it.style in wanted or (it.problem and not it.style):
            yield it


def decode(item: Item, size: int) -> np.ndarray:
    """Decode, convert to sRGB RGB, shrink so the short side is ``size``; HxWx3 uint8."""
    from canstyle.imageio import load_image

    if item.data is None and item.path is None:
        raise CanstyleError("no image bytes")
    img = load_image(item.data if item.data is not None else item.path).rgb
    h, w = img.shape[-2:]
    if min(h, w) < MIN_SIDE:
        raise TooSmall(f"{w}x{h} px, smaller than {MIN_SIDE} px")
    scale = min(1.0, size / min(h, w))
    if scale < 1.0:
        nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
        img = resize_to(img, (nh, nw), "bilinear")
        h, w = nh, nw
    short = min(h, w)
    lim = int(short * MAX_ASPECT)
    top, left = max(0, (h - lim) // 2), max(0, (w - lim) // 2)
    img = img[..., top : top + min(h, lim), left : left + min(w, lim)]
    return img[0].permute(1, 2, 0).mul(255).round().clamp(0, 255).byte().contiguous().numpy()
