"""Loader tests: all three input layouts, corrupt and missing files, the cache, crops.

The layouts' builders (make_folders, make_csv, make_parquet) live in tests/helpers.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from canstyle import fsutil
from canstyle.can.data import (
    Cache,
    class_weights,
    default_cache_dir,
    ensure_cache,
    prepare,
)
from canstyle.can.dataset import Batches, crop_square, diff_augment, parse_augment, select
from canstyle.can.sources import detect_layout, parse_styles
from canstyle.errors import CanstyleError
from tests.helpers import (
    COLOURS,
    make_csv,
    make_folders,
    make_parquet,
)


@pytest.mark.parametrize("layout", ["folders", "csv", "parquet"])
def test_prepare_each_layout(tmp_path: Path, layout: str) -> None:
    src = {"folders": make_folders, "csv": make_csv, "parquet": make_parquet}[layout](tmp_path / "src")
    assert detect_layout(src) == layout
    rep = prepare(src, tmp_path / "cache", size=48)
    assert rep.count == 18
    assert rep.counts == {s: 6 for s in COLOURS}
    # folders: one corrupt; csv: one corrupt, one missing; parquet: corrupt bytes and null bytes
    expected = {"folders": {"corrupt": 1}, "csv": {"corrupt": 1, "missing": 1}, "parquet": {"corrupt": 2}}
    assert rep.skipped == expected[layout]
    cache = Cache(tmp_path / "cache")
    assert cache.classes == sorted(COLOURS)  # sorted, not filesystem or first-seen order
    assert json.loads((tmp_path / "cache" / "meta.json").read_text())["skipped"] == expected[layout]
    for i in range(len(cache)):
        img = cache.image(i)
        assert img.dtype == np.uint8 and min(img.shape[:2]) <= 48 and img.shape[2] == 3
        assert max(img.shape[:2]) <= 2 * min(img.shape[:2])


def test_cache_keeps_colours(tmp_path: Path) -> None:
    src = make_folders(tmp_path / "src", per_style=2)
    prepare(src, tmp_path / "cache", size=32)
    cache = Cache(tmp_path / "cache")
    for i in range(len(cache)):
        mean = cache.image(i).reshape(-1, 3).mean(0)
        expected = np.array(COLOURS[cache.classes[cache.labels[i]]])
        assert np.abs(mean - expected).max() < 25


def test_styles_subset_and_rare_styles(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    src = make_csv(tmp_path / "src")
    rep = prepare(src, tmp_path / "cache", size=32, styles=["Ukiyo_e", "Baroque", "Barocco"])
    assert rep.counts == {"Baroque": 6, "Ukiyo_e": 6}
    assert "styles not found in the data: Barocco" in caplog.text  # a typo is not passed over
    assert rep.skipped == {"corrupt": 1, "missing": 1}
    cache = Cache(tmp_path / "cache")
    sel = select(cache, ["Ukiyo_e", "Baroque"])
    assert sel.classes == ["Baroque", "Ukiyo_e"]
    with pytest.raises(CanstyleError, match="not in the data"):
        select(cache, ["Cubism", "Baroque"])
    with pytest.raises(CanstyleError, match="at least 2 styles"):
        select(cache, None, min_images=7)
    assert parse_styles("paper") is not None and len(parse_styles("paper") or []) == 25
    assert "Symbolism" not in (parse_styles("paper") or [])


def test_existing_cache_is_not_clobbered(tmp_path: Path) -> None:
    src = make_folders(tmp_path / "src", per_style=2)
    prepare(src, tmp_path / "cache", size=32)
    with pytest.raises(CanstyleError, match="exists"):
        prepare(src, tmp_path / "cache", size=32)


def test_concurrent_builds_of_one_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Both arms of a comparison started at once build the same cache; neither may fail."""
    monkeypatch.setenv("CANSTYLE_HOME", str(tmp_path / "home"))
    src = make_folders(tmp_path / "src", per_style=2)
    dest = default_cache_dir(src, 32, None)
    first = {}

    def other_process_finishes_first(_: object) -> None:
        if not first:  # while this build is under way, a second one completes the same cache
            first["rep"] = prepare(src, dest, size=32)
            first["inode"] = (dest / "images.u8").stat().st_ino

    rep = prepare(src, dest, size=32, callback=other_process_finishes_first)
    assert rep.count == first["rep"].count == 6
    assert (dest / "images.u8").stat().st_ino == first["inode"]  # the first finished cache was kept
    assert ensure_cache(src, 32) == dest and len(Cache(dest)) == 6
    assert [p.name for p in dest.parent.iterdir()] == [dest.name]  # no temporary folder left behind


def test_cache_key_survives_a_copy_but_not_an_edit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A data set copied elsewhere (new paths, new mtimes) finds its cache; a changed image does not."""
    import os
    import shutil

    monkeypatch.setenv("CANSTYLE_HOME", str(tmp_path / "home"))
    src = make_folders(tmp_path / "a" / "art", per_style=2)
    copy = tmp_path / "b" / "art"
    shutil.copytree(src, copy, copy_function=shutil.copyfile)  # copyfile: fresh mtimes
    for p in copy.rglob("*"):
        os.utime(p, (1, 1))
    assert default_cache_dir(copy, 32, None) == default_cache_dir(src, 32, None)
    assert default_cache_dir(copy, 32, None) != default_cache_dir(copy, 48, None)
    img = copy / "Ukiyo_e" / "p01.jpg"
    data = bytearray(img.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, same name, one byte in the middle changed
    img.write_bytes(bytes(data))
    assert default_cache_dir(copy, 32, None) != default_cache_dir(src, 32, None)
    (copy / "Ukiyo_e" / "p01.jpg").rename(copy / "Ukiyo_e" / "p99.jpg")
    assert default_cache_dir(copy, 32, None) != default_cache_dir(src, 32, None)
    # A CSV lists images beside it, not in it: two equal CSVs in two folders are two data sets.
    for d in (tmp_path / "a", tmp_path / "b"):
        (d / "labels.csv").write_text("path,style\nart/Baroque/p00.jpg,Baroque\n")
    assert default_cache_dir(tmp_path / "a" / "labels.csv", 32, None) != default_cache_dir(
        tmp_path / "b" / "labels.csv", 32, None)


def test_prepare_never_deletes_a_folder_that_is_not_a_cache(tmp_path: Path) -> None:
    src = make_folders(tmp_path / "src", per_style=2)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "important.txt").write_text("keep me")
    with pytest.raises(CanstyleError, match="not a canstyle cache"):
        prepare(src, mine, size=32, overwrite=True)
    assert (mine / "important.txt").read_text() == "keep me"
    (tmp_path / "a.png").write_bytes(b"x")
    with pytest.raises(CanstyleError, match="is a file"):
        prepare(src, tmp_path / "a.png", size=32, overwrite=True)
    for size in (4, 100_000):  # a typo in --size fails before any work
        with pytest.raises(CanstyleError, match="cache size must be between"):
            prepare(src, tmp_path / "typo", size=size)
    assert not (tmp_path / "typo").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert prepare(src, empty, size=32).count == 6  # an empty folder is fine, without --overwrite
    assert prepare(src, empty, size=32, overwrite=True).count == 6  # and a cache may be rebuilt
    assert (empty.stat().st_mode & 0o777) == 0o777 & ~fsutil.UMASK  # not mkdtemp's owner-only mode


def test_damaged_cache_and_non_utf8_csv_fail_cleanly(tmp_path: Path) -> None:
    src = make_folders(tmp_path / "src", per_style=2)
    prepare(src, tmp_path / "cache", size=32)
    blob = tmp_path / "cache" / "images.u8"
    blob.write_bytes(blob.read_bytes()[:1000])
    with pytest.raises(CanstyleError, match="truncated or damaged"):
        Cache(tmp_path / "cache")
    bad = tmp_path / "labels.csv"
    bad.write_bytes("path,style\nBaroque/p00.jpg,Barock \xe9\n".encode("latin-1"))
    with pytest.raises(CanstyleError, match="not UTF-8"):
        prepare(bad, tmp_path / "c2", size=32)


def test_class_weights_balance_styles() -> None:
    labels = np.array([0] * 90 + [1] * 10)
    w = class_weights(labels, 2)
    assert torch.allclose(w[labels].mean(), torch.tensor(1.0))
    assert torch.isclose(w[0] * 90, w[1] * 10)  # each style carries the same total weight


def test_multiscale_crops_cover_the_painting() -> None:
    arr = np.arange(200 * 300 * 3, dtype=np.uint8).reshape(200, 300, 3)
    sides, lefts = set(), set()
    g = torch.Generator().manual_seed(0)
    for _ in range(50):
        u = torch.rand(4, generator=g)
        x = crop_square(arr, u, 64, 0.5)
        assert x.shape == (1, 3, 64, 64) and float(x.min()) >= 0 and float(x.max()) <= 1
        sides.add(round(200 * (0.5 + 0.5 * float(u[0]))))
        lefts.add(int(float(u[2]) * (300 - 100)))
    assert min(sides) < 120 and max(sides) > 180 and max(lefts) > 150


def test_batches_partition_global_batch(tmp_path: Path) -> None:
    src = make_folders(tmp_path / "src", per_style=4)
    prepare(src, tmp_path / "cache", size=32)
    cache = Cache(tmp_path / "cache")
    sel = select(cache)
    one = Batches(cache, sel, 16, 8, seed=5)
    two = [Batches(cache, sel, 16, 8, rank=r, world=2, seed=5) for r in range(2)]
    for step in (0, 1, 7):
        x1, y1 = one.get(step)
        parts = [b.get(step) for b in two]
        assert torch.equal(x1[0::2], parts[0][0]) and torch.equal(x1[1::2], parts[1][0])
        assert torch.equal(y1[1::2], parts[1][1])
    with pytest.raises(CanstyleError, match="fewer than"):
        Batches(cache, sel, 16, 64)


def test_diff_augment_is_differentiable_and_colour_free() -> None:
    assert parse_augment("translation,cutout") == ("translation", "cutout")
    with pytest.raises(CanstyleError, match="color"):
        parse_augment("color")
    x = torch.rand(4, 3, 16, 16, requires_grad=True)
    u = torch.rand(4, 4, generator=torch.Generator().manual_seed(0))
    y = diff_augment(x, ("translation", "cutout"), u)
    y.sum().backward()
    assert y.shape == x.shape and x.grad is not None and 0 < float(x.grad.mean()) < 1
    t = diff_augment(x.detach(), ("translation",), u)
    kept = t[t != 0]
    assert torch.isin(kept, x.detach()).all()  # pixels move, their values never change


def test_shared_art_labels_csv(shared_dir: Path, tmp_path: Path) -> None:
    """The shared paintings load through their labels.csv (skipped when ../shared is absent)."""
    rep = prepare(shared_dir / "art", tmp_path / "cache", size=32, styles=["Fauvism", "Ukiyo_e"])
    assert rep.counts == {"Fauvism": 10, "Ukiyo_e": 10}
    assert Cache(tmp_path / "cache").classes == ["Fauvism", "Ukiyo_e"]
