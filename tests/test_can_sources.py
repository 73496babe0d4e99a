"""Several data sources in one cache: folders, CSVs (images anywhere) and mixes, via API and CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from canstyle.can.data import Cache, default_cache_dir, ensure_cache, prepare
from canstyle.errors import CanstyleError


def _img(path: Path, rgb: tuple[int, int, int], i: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.full((40 + 2 * i, 52, 3), rgb, dtype=np.uint8)
    arr[::4, :, :] = (i * 20) % 255  # make each file distinct
    Image.fromarray(arr).save(path)


def _folders(root: Path) -> Path:
    for i in range(3):
        _img(root / "Baroque" / f"b{i}.png", (150, 60, 30), i)
        _img(root / "Cubism" / f"c{i}.png", (30, 60, 150), i)
    return root


def _csv_elsewhere(tmp: Path) -> Path:
    """A CSV whose images live outside its folder: one row relative ('../'), one absolute."""
    pics = tmp / "far" / "away"
    _img(pics / "u0.png", (40, 170, 90), 0)
    _img(pics / "u1.png", (40, 170, 90), 1)
    _img(pics / "b9.png", (150, 60, 30), 9)
    table = tmp / "tables" / "labels.csv"
    table.parent.mkdir(parents=True)
    table.write_text("path,style\n"
                     "../far/away/u0.png,Ukiyo_e\n"
                     f"{(pics / 'u1.png').resolve()},Ukiyo_e\n"
                     "../far/away/b9.png,Baroque\n")
    return table


def test_two_sources_share_one_cache_and_record_their_origin(tmp_path: Path) -> None:
    folders, table = _folders(tmp_path / "a"), _csv_elsewhere(tmp_path)
    rep = prepare([folders, table], tmp_path / "cache", size=32)
    assert rep.counts == {"Baroque": 4, "Cubism": 3, "Ukiyo_e": 2}  # same-named styles merge
    cache = Cache(tmp_path / "cache")
    assert cache.classes == ["Baroque", "Cubism", "Ukiyo_e"]
    assert list(cache.source_ids) == [0] * 6 + [1] * 3
    meta = json.loads((tmp_path / "cache" / "meta.json").read_text())
    assert meta["sources"] == [str(folders.resolve()), str(table.resolve())]
    assert meta["source_counts"] == [{"Baroque": 3, "Cubism": 3}, {"Baroque": 1, "Ukiyo_e": 2}]
    ukiyo = [i for i in range(len(cache)) if cache.classes[cache.labels[i]] == "Ukiyo_e"]
    assert all(abs(int(cache.image(i)[1, 0, 1]) - 170) <= 3 for i in ukiyo)  # the CSV's own pixels


def test_cache_key_depends_on_every_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CANSTYLE_HOME", str(tmp_path / "home"))
    a, b = _folders(tmp_path / "a"), _folders(tmp_path / "b")
    _img(b / "Cubism" / "extra.png", (1, 2, 3), 7)
    both = default_cache_dir([a, b], 32, None)
    assert both not in (default_cache_dir(a, 32, None), default_cache_dir(b, 32, None))
    assert default_cache_dir([b, a], 32, None) != both  # the order numbers the sources
    built = ensure_cache([a, b], 32)
    assert built == both and len(Cache(built)) == 7  # b repeats a's six paintings: kept once
    assert ensure_cache([a, b], 32) == built  # found, not rebuilt
    with pytest.raises(CanstyleError, match="cannot be mixed"):
        ensure_cache([built, a], 32)
    with pytest.raises(CanstyleError, match="given twice"):
        prepare([a, a], tmp_path / "c2", size=32)
    with pytest.raises(CanstyleError, match="no such data"):
        prepare([a, tmp_path / "nope"], tmp_path / "c3", size=32)
    assert not (tmp_path / "c3").exists()


def test_missing_source_fails_before_a_cache_is_announced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("CANSTYLE_HOME", str(tmp_path / "home"))
    a = _folders(tmp_path / "a")
    with caplog.at_level("INFO"), pytest.raises(CanstyleError, match="no such data: .*nope"):
        ensure_cache([a, tmp_path / "nope"], 32)
    assert "preparing" not in caplog.text and not (tmp_path / "home" / "can-data").exists()


def test_cli_prepare_and_train_take_several_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from canstyle.cli import main

    monkeypatch.setenv("CANSTYLE_HOME", str(tmp_path / "home"))
    folders, table = _folders(tmp_path / "a"), _csv_elsewhere(tmp_path)
    assert main(["prepare-data", str(folders), str(table), "-o", str(tmp_path / "c"), "--size", "32", "-q"]) == 0
    assert len(Cache(tmp_path / "c")) == 9
    assert main(["train", str(folders), str(table), "--out", str(tmp_path / "runs"), "--preset", "64",
                 "--width", "0.25", "--steps", "2", "--batch-size", "4", "--checkpoint-every", "2",
                 "--sample-every", "2", "--n-samples", "4", "--log-every", "1", "--seed", "0",
                 "--quiet"]) == 0
    config = json.loads(next((tmp_path / "runs").glob("*/config.json")).read_text())
    assert config["data"] == [str(folders), str(table)]
    assert config["classes"] == ["Baroque", "Cubism", "Ukiyo_e"]
