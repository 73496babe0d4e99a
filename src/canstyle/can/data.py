"""Art data: three input layouts -> one compact, pre-resized uint8 cache.

Inputs: (a) a folder of style sub-folders (ArtGAN/WikiArt layout), (b) a CSV
with ``path`` (or ``file``) and ``style`` columns, paths relative to the CSV,
(c) a folder of Hugging Face ``huggan/wikiart`` parquet shards. Several
sources, in any mix, go into one cache, which records each image's source
(styles with the same name merge). ``prepare`` decodes every image once, resizes it so its short side is ``size`` (never
up-scaling) and appends the pixels to one flat ``images.u8`` file that training
reads through a memmap, so no JPEG is decoded per step. Unreadable, unlabelled and too
small images are skipped and counted; a painting given twice is kept once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch

from canstyle import fsutil
from canstyle.can.sources import (
    Item,
    SourceArg,
    TooSmall,
    as_sources,
    check_source,
    decode,
    iter_items,
    require_source,
)
from canstyle.errors import CanstyleError
from canstyle.fsutil import UMASK, content_fingerprint
from canstyle.progress import Progress, ProgressCallback

log = logging.getLogger(__name__)

CACHE_VERSION = 2  # 2: several sources; index rows are (offset, h, w, class, source)
# What prepare keeps, in the automatic caches' key (a cache of the old rules still loads when
# given by path): 2 drops duplicates, images under 32 px and rows without a style.
CACHE_RULES = 2
MAX_CACHE_SIDE = 2048  # 8x the largest preset; more only fills the disk (and is usually a typo)


@dataclass
class PrepareReport:
    count: int
    counts: dict[str, int]
    skipped: dict[str, int]  # reason -> count
    skipped_files: list[str]
    duplicates: int = 0  # paintings dropped because an earlier one had the same pixels
    relabelled: int = 0  # of those, how many carried another style than the copy kept
    duplicate_files: list[str] = field(default_factory=list)


def _skip_reason(item: Item, err: Exception) -> str:
    if isinstance(err, TooSmall):
        return "too small"
    if item.path is not None and not item.path.exists():
        return "missing"
    return "corrupt" if isinstance(err, (CanstyleError, OSError, ValueError, SyntaxError)) else "error"


def prepare(
    src: SourceArg, dest: str | os.PathLike[str],
    size: int = 128, styles: list[str] | None = None, overwrite: bool = False,
    callback: ProgressCallback | None = None,
) -> PrepareReport:
    """Convert one source or several into a cache folder ``dest`` (written beside it, then renamed).
    ``overwrite`` rebuilds the cache there now, not one that another process finishes meanwhile.
    ``callback`` gets ``Progress("prepare", images_seen, 0)`` (0: the total is not known ahead)."""
    return _prepare(src, Path(dest), size, styles, overwrite, callback, replaces=_stamp(Path(dest)))


def _prepare(src: SourceArg, dest: Path, size: int, styles: list[str] | None, overwrite: bool,
             callback: ProgressCallback | None, replaces: tuple[int, ...] | None) -> PrepareReport:
    srcs = as_sources(src)
    if not 8 <= size <= MAX_CACHE_SIDE:
        raise CanstyleError(f"cache size must be between 8 and {MAX_CACHE_SIDE} pixels, got {size}")
    for p in srcs:
        check_source(p)  # a missing, unknown or unreadable source fails before any work
    check_dest(dest, overwrite)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=dest.parent))  # unique per build
    os.chmod(tmp, 0o777 & ~UMASK)  # mkdtemp makes it owner-only; a cache is an ordinary folder
    try:
        with open(tmp / "images.u8", "wb") as blob:
            b = _Builder(blob, size)
            items = ((k, it) for k, p in enumerate(srcs) for it in iter_items(p, styles))
            for n, (k, item) in enumerate(items):
                b.add(k, item)
                if callback is not None:
                    callback(Progress("prepare", n + 1, 0))
        if not b.rows:
            where = ", ".join(map(str, srcs))
            why = f" (skipped {_counts_text(b.skipped)}; first: {b.bad[0]})" if b.bad else ""
            raise CanstyleError(f"no readable images in {where}" + (f" for styles {styles}" if styles else "") + why)
        _write_index(tmp, b, srcs, size)
        _publish(tmp, dest, overwrite, replaces)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    rows = b.rows
    counts = Counter(r[3] for r in rows)
    missing = sorted(set(styles or ()) - set(counts))
    if missing:  # a typo in --styles must not pass unnoticed; 'paper' may rightly miss some
        log.warning("styles not found in the data: %s", ", ".join(missing))
    if b.skipped:
        log.warning("skipped %d images (%s)", sum(b.skipped.values()), _counts_text(b.skipped))
    _warn_duplicates(b)
    return PrepareReport(len(rows), dict(sorted(counts.items())), dict(b.skipped), b.bad,
                         b.duplicates, b.relabelled, b.dup_files)


def _counts_text(counts: Counter[str] | dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))


class _Builder:
    """Appends each usable painting's pixels to the blob; counts the rest. A painting whose cached
    pixels equal an earlier one's is dropped (the first copy and its style are kept): a set listed
    twice would weigh double in training and could sit on both sides of evaluate's held-out split."""

    def __init__(self, blob: BinaryIO, size: int) -> None:
        self.blob, self.size = blob, size
        self.rows: list[tuple[int, int, int, str, int]] = []
        self.skipped: Counter[str] = Counter()
        self.bad: list[str] = []
        self.seen: dict[bytes, tuple[str, str]] = {}  # pixel hash -> (name, style) of the copy kept
        self.duplicates = self.relabelled = 0
        self.dup_files: list[str] = []
        self.first_relabelled = ""
        self.offset = 0
        self.digest = hashlib.sha1()  # of every stored pixel and label: the judge keys its features by it

    def add(self, k: int, item: Item) -> None:
        if item.problem:
            self._skip(item, item.problem)
            return
        try:
            arr = decode(item, self.size)
        except Exception as e:  # noqa: BLE001  (one bad painting must never end a 80k-image job)
            self._skip(item, _skip_reason(item, e))
            log.debug("skipping %s: %s", item.name, e)
            return
        data = arr.tobytes()
        key = hashlib.sha1(f"{arr.shape}".encode() + data).digest()
        if key in self.seen:
            self._duplicate(item, *self.seen[key])
            return
        self.seen[key] = (item.name, item.style)
        self.blob.write(data)
        self.digest.update(data)
        self.digest.update(item.style.encode())
        self.rows.append((self.offset, arr.shape[0], arr.shape[1], item.style, k))
        self.offset += arr.size

    def _skip(self, item: Item, reason: str) -> None:
        self.skipped[reason] += 1
        self.bad.append(f"{item.name}: {reason}")

    def _duplicate(self, item: Item, first: str, style: str) -> None:
        self.duplicates += 1
        if item.style == style:
            self.dup_files.append(f"{item.name}: same image as {first}")
            return
        self.relabelled += 1
        self.dup_files.append(f"{item.name} ({item.style}): same image as {first} ({style}, kept)")
        self.first_relabelled = self.first_relabelled or self.dup_files[-1]


def _warn_duplicates(b: _Builder) -> None:
    if b.duplicates:
        log.warning("dropped %d duplicate images (same pixels as an earlier image; the first is kept)",
                    b.duplicates)
    if b.relabelled:  # a conflicting label is a data error the user should look at
        log.warning("%d duplicates are labelled with another style than the copy kept "
                    "(listed in meta.json's duplicate_files), e.g. %s", b.relabelled, b.first_relabelled)


CACHE_FILES = {"images.u8", "index.npy", "classes.json", "meta.json"}


def check_dest(dest: Path, overwrite: bool) -> None:
    """Refuse to build over anything but an empty folder or (with ``overwrite``) a cache: the
    rebuild deletes the old folder, and ``-o`` may name a folder full of the user's files.
    The cache is built beside ``dest``, so its parent must be writable."""
    if dest.is_file():
        raise CanstyleError(f"{dest} is a file; give a folder for the cache")
    fsutil.check_writable_folder(dest.parent, target=dest)
    names = {p.name for p in dest.iterdir()} if dest.is_dir() else set()
    if not names:
        return
    if not names <= CACHE_FILES:
        raise CanstyleError(f"{dest} is a folder but not a canstyle cache; choose an empty or new folder")
    if not overwrite:
        raise CanstyleError(f"cache exists: {dest} (pass --overwrite to rebuild it)")


def _stamp(dest: Path) -> tuple[int, ...] | None:
    """Which finished cache is at ``dest`` (None: none, or a broken one); every build is a new folder."""
    try:
        d, m = dest.stat(), (dest / "meta.json").stat()
    except OSError:
        return None
    return (d.st_dev, d.st_ino, m.st_ino, m.st_mtime_ns) if is_cache(dest) else None


def _publish(tmp: Path, dest: Path, overwrite: bool, replaces: tuple[int, ...] | None) -> None:
    """Rename the finished cache into place, replacing at most the cache this build set out to
    replace (``replaces``; None: none). When two runs build one cache at once (both arms of a
    comparison, two trainings repairing a broken cache), the first to finish wins and the other
    uses that cache, which may be in use already. Check and rename happen under a lock."""
    with fsutil.folder_lock(dest.parent):
        if _stamp(dest) not in (None, replaces):
            log.info("%s was finished by another process meanwhile; using it", dest)
            return
        check_dest(dest, overwrite)  # checked again: the folder may have changed meanwhile
        fsutil.replace_folder(tmp, dest)


def _write_index(tmp: Path, b: _Builder, srcs: list[Path], size: int) -> None:
    rows = b.rows
    classes = sorted({r[3] for r in rows})  # sorted, so the class order never depends on the filesystem
    cid = {c: i for i, c in enumerate(classes)}
    index = np.array([(o, h, w, cid[s], k) for o, h, w, s, k in rows], dtype=np.int64)
    np.save(tmp / "index.npy", index)
    (tmp / "classes.json").write_text(json.dumps(classes, indent=1))
    per_source = [dict(sorted(Counter(r[3] for r in rows if r[4] == k).items())) for k in range(len(srcs))]
    meta = {
        "version": CACHE_VERSION, "sources": [str(p.resolve()) for p in srcs],
        "source_counts": per_source, "size": size, "count": len(rows),
        "counts": dict(sorted(Counter(r[3] for r in rows).items())),
        "skipped": dict(b.skipped), "skipped_files": b.bad[:200], "pixels_sha1": b.digest.hexdigest(),
        "duplicates": b.duplicates, "duplicate_files": b.dup_files[:200],
    }
    (tmp / "meta.json").write_text(json.dumps(meta, indent=1))


class Cache:
    """A prepared cache: images as memmapped uint8 HxWx3 arrays plus labels."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        try:
            self.meta = json.loads((self.root / "meta.json").read_text())
            self.classes: list[str] = json.loads((self.root / "classes.json").read_text())
            self.index = np.load(self.root / "index.npy")
        except (OSError, ValueError) as e:
            raise CanstyleError(f"not a canstyle data cache: {self.root} ({e})") from None
        if self.meta.get("version") != CACHE_VERSION:
            raise CanstyleError(f"cache {self.root} has an old format; run prepare-data again")
        damaged = CanstyleError(f"cache {self.root} is truncated or damaged; run prepare-data --overwrite")
        try:
            self.blob = np.memmap(self.root / "images.u8", dtype=np.uint8, mode="r")
        except (OSError, ValueError):  # ValueError: an empty file cannot be mapped
            raise damaged from None
        last = self.index[-1] if len(self.index) else np.zeros(4, dtype=np.int64)
        if self.index.ndim != 2 or self.index.shape[1] != 5 or len(self.blob) < int(last[0] + last[1] * last[2] * 3):
            raise damaged
        self.labels = self.index[:, 3].copy()
        self.source_ids = self.index[:, 4].copy()  # which of meta["sources"] each image came from

    def __len__(self) -> int:
        return len(self.index)

    def image(self, i: int) -> np.ndarray:
        o, h, w = (int(v) for v in self.index[i, :3])
        return self.blob[o : o + h * w * 3].reshape(h, w, 3)


def is_cache(path: Path) -> bool:
    return path.is_dir() and (path / "meta.json").is_file() and (path / "images.u8").is_file()


def _source_key(src: Path) -> str:
    content = content_fingerprint(src)
    if src.is_file():  # a CSV: the images it lists lie outside it, so its place is part of the key
        content += str(src.resolve().parent)
    return content


def default_cache_dir(src: SourceArg, size: int,
                      styles: list[str] | None) -> Path:
    """Where the cache of these sources lives; keyed by their content, in the order given."""
    from canstyle.weights import home

    srcs = as_sources(src)
    content = "+".join(_source_key(p) for p in srcs)
    key = hashlib.sha1(f"{content}|{size}|{styles}|{CACHE_VERSION}|{CACHE_RULES}".encode()).hexdigest()[:16]
    name = "+".join(p.resolve().name for p in srcs)[:80]
    return home() / "can-data" / f"{name}-{size}-{key}"


def ensure_cache(src: SourceArg, size: int,
                 styles: list[str] | None = None, build: bool = True) -> Path:
    """A cache given as the only source, else the sources' cache under CANSTYLE_HOME (built when
    ``build``)."""
    srcs = as_sources(src)
    if len(srcs) == 1 and is_cache(srcs[0]):
        return srcs[0]
    if any(is_cache(p) for p in srcs):
        raise CanstyleError("a prepared cache cannot be mixed with other sources; give the paintings")
    for p in srcs:  # before "preparing a cache of ..." is printed (detect_layout would walk the tree)
        require_source(p)
    dest = default_cache_dir(srcs, size, styles)
    if not is_cache(dest) and build:
        log.info("preparing a %dpx cache of %s in %s (once)", size, ", ".join(map(str, srcs)), dest)
        # overwrite only a broken folder (replaces=None): a cache another process finishes meanwhile is kept
        rep = _prepare(srcs, dest, size, styles, overwrite=dest.exists(), callback=None, replaces=None)
        log.info("cached %d images in %d styles", rep.count, len(rep.counts))
    return dest


def class_weights(labels: np.ndarray, n_classes: int) -> torch.Tensor:
    """Inverse-frequency weights, averaging 1 over the data, so each style counts equally
    in the style head's loss (WikiArt is 133:1; the shared set is 362:1)."""
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    w = np.where(counts > 0, len(labels) / (n_classes * np.maximum(counts, 1)), 0.0)
    return torch.tensor(w, dtype=torch.float32)


class Listing:
    """Uncached sources as a dry run sees them, in the cache's row order: styles from listing the
    files (a parquet shard's labels only), so no cache is written. ``load`` decodes as many images
    as a timed step needs, the first ones, and lends them to the rows asked for: any paintings of
    the cache's size time the same, and the first ones are found without reading the rest."""

    def __init__(self, srcs: list[Path], size: int, styles: list[str] | None) -> None:
        self.srcs, self.styles, self.meta = srcs, styles, {"size": size}
        names = [it.style for it in self._items(images=False)]  # no decoding
        if not names:
            raise CanstyleError(f"no images in {', '.join(map(str, srcs))}")
        self.classes = sorted(set(names))
        cid = {c: i for i, c in enumerate(self.classes)}
        self.labels = np.array([cid[n] for n in names], dtype=np.int64)
        self._images: dict[int, np.ndarray] = {}
        self.unreadable = 0

    def load(self, rows: Iterable[int]) -> None:
        want, size = sorted(set(rows) - set(self._images)), int(self.meta["size"])
        for row, item in zip(want, self._items(), strict=False):
            try:
                self._images[row] = decode(item, size)
            except Exception:  # noqa: BLE001  (the real run skips it; a grey stand-in times the same)
                self.unreadable += 1
                self._images[row] = np.full((size, size, 3), 128, dtype=np.uint8)

    def image(self, i: int) -> np.ndarray:
        return self._images[i]

    def _items(self, images: bool = True) -> Iterable[Item]:
        """The usable rows, as the cache would hold them (rows without a style are skipped)."""
        return (it for p in self.srcs for it in iter_items(p, self.styles, images) if not it.problem)
