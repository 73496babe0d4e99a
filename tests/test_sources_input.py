"""Bad input to prepare-data: unlabelled CSV rows, unreadable parquet, duplicates, tiny images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from canstyle.can.data import Cache, prepare
from canstyle.can.sources import MIN_SIDE
from tests.helpers import assert_fails_cleanly


def _png(path: Path, seed: int, h: int = 40, w: int = 48) -> Path:
    """A small noise image; the seed makes its pixels (and so its content) unique."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
    return path


def _csv(path: Path, lines: list[str]) -> Path:
    path.write_text("path,style\n" + "".join(line + "\n" for line in lines))
    return path


def test_csv_row_without_a_style_cell_is_skipped_and_named(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    good, other = _png(tmp_path / "a.png", 0), _png(tmp_path / "b.png", 1)
    _png(tmp_path / "c.png", 2)
    table = _csv(tmp_path / "labels.csv", [f"{good},Baroque", f"{other}", "c.png,Cubism"])
    rep = prepare(table, tmp_path / "cache", size=32)
    assert rep.counts == {"Baroque": 1, "Cubism": 1}  # the row after the short one still counts
    assert rep.skipped == {"no style": 1}
    assert rep.skipped_files == [f"{table} line 3: no style"]
    # a CSV of nothing but such rows: one line naming the file and line, no traceback
    short = _csv(tmp_path / "short.csv", [str(other)])
    assert_fails_cleanly(capsys, ["prepare-data", str(short), "-o", str(tmp_path / "c2"), "-q"],
                         "no readable images", f"{short} line 2: no style")


def test_csv_row_with_a_blank_style_or_path_is_skipped(tmp_path: Path) -> None:
    good, other = _png(tmp_path / "a.png", 0), _png(tmp_path / "b.png", 1)
    table = _csv(tmp_path / "labels.csv", [f"{good},Baroque", f"{other},", f"{other},  ", ",Baroque"])
    rep = prepare(table, tmp_path / "cache", size=32)
    assert rep.counts == {"Baroque": 1}  # no class with a blank name
    assert Cache(tmp_path / "cache").classes == ["Baroque"]
    assert rep.skipped == {"no style": 2, "no path": 1}
    assert f"{table} line 3: no style" in rep.skipped_files
    assert f"{table} line 5: no path" in rep.skipped_files


def test_unreadable_parquet_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("pyarrow")
    shard = tmp_path / "pq" / "s.parquet"
    shard.parent.mkdir()
    shard.write_text("junk\n")
    assert_fails_cleanly(capsys, ["prepare-data", str(shard.parent), "-o", str(tmp_path / "c"), "-q"],
                         str(shard), "cannot be read as parquet")
    assert not (tmp_path / "c").exists()


def test_parquet_without_image_and_style_names_its_columns(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    shard = tmp_path / "pq" / "s.parquet"
    shard.parent.mkdir()
    pq.write_table(pa.table({"img": [b"x"], "label": [1]}), shard)
    assert_fails_cleanly(capsys, ["prepare-data", str(shard.parent), "-o", str(tmp_path / "c"), "-q"],
                         str(shard), "lacks columns image, style", "(it has: img, label)")


def test_duplicate_paintings_are_dropped_and_reported(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from canstyle.cli import main

    files = [_png(tmp_path / "art" / "Baroque" / f"p{i}.png", i) for i in range(3)]
    _png(tmp_path / "art" / "Cubism" / "c0.png", 9)
    # the same three files again: two as Baroque, one labelled differently; plus one listed twice
    table = _csv(tmp_path / "more.csv", [f"{files[0]},Baroque", f"{files[1]},Baroque", f"{files[2]},Rococo",
                                         f"{files[0]},Baroque"])
    rep = prepare([tmp_path / "art", table], tmp_path / "cache", size=32)
    assert rep.count == 4 and rep.counts == {"Baroque": 3, "Cubism": 1}  # the first copy and its style win
    assert (rep.duplicates, rep.relabelled) == (4, 1)
    assert any("(Rococo)" in f and "(Baroque, kept)" in f for f in rep.duplicate_files)
    assert json.loads((tmp_path / "cache" / "meta.json").read_text())["duplicates"] == 4
    with caplog.at_level("INFO"):
        assert main(["prepare-data", str(tmp_path / "art"), str(table), "-o", str(tmp_path / "c2"), "-q"]) == 0
    assert "4 images in 2 styles; skipped: none; duplicates dropped: 4 (1 with another style; kept the first)" \
        in caplog.text


def test_images_below_the_minimum_side_are_skipped_as_too_small(tmp_path: Path) -> None:
    root = tmp_path / "art"
    _png(root / "Baroque" / "strip.png", 0, h=1, w=256)  # the QA case: once a 1x2 cache entry
    _png(root / "Baroque" / "narrow.png", 1, h=200, w=MIN_SIDE - 1)
    _png(root / "Baroque" / "ok.png", 2, h=MIN_SIDE, w=MIN_SIDE)  # exactly the minimum is kept
    _png(root / "Cubism" / "ok.png", 3)
    rep = prepare(root, tmp_path / "cache", size=64)
    assert rep.counts == {"Baroque": 1, "Cubism": 1}
    assert rep.skipped == {"too small": 2}
    cache = Cache(tmp_path / "cache")
    assert all(min(cache.image(i).shape[:2]) >= MIN_SIDE for i in range(len(cache)))
