"""What --dry-run and --resume do with input that does not fit: an uncached dry run, a run
already past --steps, a file that is not a checkpoint, an SR run resumed on other images."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from canstyle import runs
from canstyle.can.data import prepare
from canstyle.can.train import TrainOptions, train
from canstyle.errors import CanstyleError
from canstyle.sr.train import TrainOptions as SrOptions
from canstyle.sr.train import train as train_sr
from tests.helpers import assert_fails_cleanly, make_folders, make_parquet

pytestmark = pytest.mark.usefixtures("module_home")  # a private CANSTYLE_HOME

TINY = {"batch_size": 8, "width": 0.125, "n_samples": 4, "crop_min": 1.0}
SR = {"init": "photo", "batch_size": 1, "patch": 20, "checkpoint_every": 2}


@pytest.fixture(scope="module")
def src(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_folders(tmp_path_factory.mktemp("paintings") / "src", per_style=4)


def test_dry_run_writes_no_cache(src: Path, module_home: Path, tmp_path: Path,
                                 caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        res = train(str(src), str(tmp_path / "runs"), TrainOptions(steps=5, **TINY), precision="fp32",
                    seed=0, dry_run=True)
    assert res.run_dir is None and res.images_per_second > 0
    assert not (module_home / "can-data").exists() and not (tmp_path / "runs").exists()
    assert "13 image files (listed, not decoded) in 3 styles" in caplog.text


def test_dry_run_on_parquet_reads_only_the_labels(module_home: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from canstyle.can import sources

    shards = make_parquet(tmp_path / "pq", per_style=3)
    read: list[bool] = []
    real = sources._parquet_items
    def spy(src: Path, wanted: set[str] | None, images: bool = True) -> Any:
        read.append(images)
        yield from real(src, wanted, images)

    monkeypatch.setattr(sources, "_parquet_items", spy)
    res = train(str(shards), str(tmp_path / "runs"), TrainOptions(steps=5, **TINY), precision="fp32",
                seed=0, dry_run=True)
    assert res.images_per_second > 0 and not (module_home / "can-data").exists()
    assert read[0] is False  # the listing read the style column only; the timed steps decode a few


def test_resume_past_steps_says_so_and_trains_nothing(src: Path, tmp_path: Path,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    cache = tmp_path / "cache"
    prepare(src, cache, size=64)
    opts = dict(log_every=1, checkpoint_every=2, sample_every=100, **TINY)
    run = train(str(cache), str(tmp_path / "runs"), TrainOptions(steps=2, **opts), precision="fp32", seed=1).run_dir
    assert run is not None
    before = (run / "metrics.jsonl").read_text()
    with caplog.at_level(logging.WARNING):
        res = train(None, str(tmp_path / "runs"), TrainOptions(steps=1, **opts), resume="latest", precision="fp32")
    assert res.run_dir == run and res.step == 2
    assert "is already at step 2 (--steps 1): nothing to train" in caplog.text
    assert (run / "metrics.jsonl").read_text() == before
    other = make_folders(tmp_path / "other", per_style=5)  # the same styles, other paintings
    with pytest.raises(CanstyleError, match="was trained on other paintings"):
        train(str(other), str(tmp_path / "runs"), TrainOptions(steps=4, **opts), resume="latest", precision="fp32")
    same = tmp_path / "same"
    prepare(src, same, size=64)  # the same paintings in another cache: resumes
    assert train(str(same), str(tmp_path / "runs"), TrainOptions(steps=3, **opts), resume="latest",
                 precision="fp32").step == 3


def test_resume_from_a_file_outside_a_run_names_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    garbage = tmp_path / "runs" / "garbage.pt"
    garbage.parent.mkdir()
    garbage.write_text("garbage\n")
    with pytest.raises(CanstyleError, match=r"garbage\.pt is not a checkpoint in a run folder"):
        runs.resolve_resume(str(garbage), tmp_path / "runs", "can")
    assert_fails_cleanly(capsys, ["train", "-o", str(tmp_path / "runs"), "--resume", str(garbage)],
                         f"--resume: {garbage} is not a checkpoint in a run folder")


def test_resume_takes_a_bare_checkpoint_name_inside_checkpoints(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    ckpts = tmp_path / "runs" / "00000-can-64" / "checkpoints"
    ckpts.mkdir(parents=True)
    (ckpts / "step00000010.pt").write_bytes(b"x")
    monkeypatch.chdir(ckpts)
    r = runs.resolve_resume("step00000010.pt", tmp_path / "runs", "can")
    assert r.run == ckpts.parent and r.checkpoint == ckpts / "step00000010.pt"


def test_a_foreign_file_is_refused_without_torchs_advice(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    jpg = tmp_path / "some.jpg"
    Image.new("RGB", (8, 8)).save(jpg)
    pickle = tmp_path / "pickle.pt"
    torch.save({"x": np.zeros(2)}, pickle)  # a numpy array: refused by weights_only
    for path in (jpg, pickle):
        line = assert_fails_cleanly(capsys, ["generate", str(path), "-n", "1", "-o", str(tmp_path / "g")],
                                    f"{path}: it is not a canstyle checkpoint")
        assert "weights_only" not in line and "Re-running" not in line


@pytest.fixture
def sr_images(tmp_path: Path) -> tuple[list[Path], list[Path]]:
    rng = np.random.default_rng(0)
    sets: tuple[list[Path], list[Path]] = ([], [])
    for i in range(4):
        path = tmp_path / f"set{i % 2}" / f"p{i}.png"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (48, 40, 3), dtype=np.uint8)).save(path)
        sets[i % 2].append(path)
    return sets


def test_sr_resume_on_other_images_is_refused(sr_images: tuple[list[Path], list[Path]], tmp_path: Path,
                                              caplog: pytest.LogCaptureFixture) -> None:
    ours, others = sr_images
    out = tmp_path / "runs"
    train_sr(ours, out, SrOptions(steps=2, **SR), device="cpu", precision="fp32", seed=1)
    run = out / "00000-sr-photo"
    with pytest.raises(CanstyleError, match=r"was trained on other images \(the 2 in its config.json, not these 2\)"):
        train_sr(others, out, SrOptions(steps=4, **SR), resume="latest", device="cpu", precision="fp32")
    assert [json.loads(ln)["step"] for ln in (run / "metrics.jsonl").read_text().splitlines()] == [1, 2]
    relative = [Path(os.path.relpath(p)) for p in ours[::-1]]  # the same files, named another way
    train_sr(relative, out, SrOptions(steps=3, **SR), resume="latest", device="cpu", precision="fp32")
    assert json.loads((run / "config.json").read_text())["images"] == [str(p.resolve()) for p in ours]
    with caplog.at_level(logging.WARNING):  # and a run past --steps says so, as a CAN run does
        train_sr(ours, out, SrOptions(steps=1, **SR), resume="latest", device="cpu", precision="fp32")
    assert "is already at step 3 (--steps 1): nothing to train" in caplog.text
