"""Two processes rebuilding one CAN data cache never replace each other's finished work."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from canstyle.can import data
from canstyle.can.data import Cache, default_cache_dir, ensure_cache, prepare

SIZE = 32


def _paintings(root: Path, per_style: int = 3) -> Path:
    rng = np.random.default_rng(1)
    for style in ("Baroque", "Impressionism"):
        (root / style).mkdir(parents=True)
        for i in range(per_style):
            Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(root / style / f"p{i}.png")
    return root


def _race(monkeypatch: pytest.MonkeyPatch, build: Callable[[], object], dest: Path) -> dict[str, object]:
    """Run ``build`` in two threads that both start building before either finishes; the
    second finishes only after the first has published. Returns what the first left at ``dest``."""
    real_decode = data.decode
    both_building = threading.Barrier(2, timeout=60)
    first_done = threading.Event()
    started: set[str] = set()
    seen: dict[str, object] = {}
    errors: list[BaseException] = []

    def decode(item: data.Item, size: int) -> np.ndarray:
        me = threading.current_thread().name
        if me not in started:  # both saw the old state of dest and are now building
            started.add(me)
            both_building.wait()
            if me == "second":
                assert first_done.wait(60)
        return real_decode(item, size)

    def run(name: str) -> None:
        try:
            build()
            if name == "first":
                seen["inode"] = (dest / "images.u8").stat().st_ino
                seen["cache"] = Cache(dest)  # the first run starts using its cache at once
                first_done.set()
        except BaseException as e:  # noqa: BLE001  (re-raised in the test's thread)
            errors.append(e)
            first_done.set()

    monkeypatch.setattr(data, "decode", decode)
    threads = [threading.Thread(target=run, args=(n,), name=n) for n in ("first", "second")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    return seen


def _assert_first_kept(dest: Path, seen: dict[str, object]) -> None:
    assert (dest / "images.u8").stat().st_ino == seen["inode"]  # not replaced by the second build
    cache = seen["cache"]
    assert isinstance(cache, Cache) and len(Cache(dest)) == len(cache) == 6
    assert cache.image(5).shape[-1] == 3  # still readable through the first run's memmap
    assert [p.name for p in dest.parent.iterdir()] == [dest.name]  # no temporary or old folder left


def test_two_repairs_of_a_broken_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two trainings find the same broken cache and both rebuild it: the first to finish wins."""
    monkeypatch.setenv("CANSTYLE_HOME", str(tmp_path / "home"))
    src = _paintings(tmp_path / "art")
    dest = default_cache_dir(src, SIZE, None)
    dest.mkdir(parents=True)
    (dest / "images.u8").write_bytes(b"")  # killed while writing: no meta.json, not a cache
    seen = _race(monkeypatch, lambda: ensure_cache(src, SIZE), dest)
    _assert_first_kept(dest, seen)


def test_two_overwrites_of_one_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``prepare-data --overwrite`` twice at once: each replaces the cache it found, not the
    one the other has just finished."""
    src = _paintings(tmp_path / "art")
    dest = tmp_path / "caches" / "art-32"
    prepare(src, dest, size=SIZE)
    old = (dest / "images.u8").stat().st_ino
    seen = _race(monkeypatch, lambda: prepare(src, dest, size=SIZE, overwrite=True), dest)
    assert seen["inode"] != old  # the first rebuild did replace the old cache
    _assert_first_kept(dest, seen)


def test_an_overwrite_still_replaces_the_cache_it_found(tmp_path: Path) -> None:
    src = _paintings(tmp_path / "art")
    dest = tmp_path / "cache"
    prepare(src, dest, size=SIZE)
    old = (dest / "meta.json").stat().st_ino
    assert prepare(src, dest, size=SIZE, overwrite=True).count == 6
    assert (dest / "meta.json").stat().st_ino != old and len(Cache(dest)) == 6
    assert sorted(p.name for p in tmp_path.iterdir()) == ["art", "cache"]


def test_folder_lock_is_exclusive(tmp_path: Path) -> None:
    """The lock _publish holds: a second holder waits for the first (threads, like processes,
    open the folder separately), and no lock file is left behind."""
    from canstyle.fsutil import folder_lock

    order: list[str] = []
    held = threading.Event()

    def second() -> None:
        held.wait(10)
        with folder_lock(tmp_path):
            order.append("second in")

    t = threading.Thread(target=second)
    t.start()
    with folder_lock(tmp_path):
        held.set()
        t.join(0.3)  # the second waits while the first holds the lock
        order.append("first out")
    t.join(10)
    assert order == ["first out", "second in"] and list(tmp_path.iterdir()) == []
