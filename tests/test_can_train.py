"""Training tests: run folders, checkpoints, exact resume, SIGKILL and Ctrl-C (subprocesses)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from canstyle.can.checkpoint import checkpoints, load_checkpoint
from canstyle.can.data import prepare
from canstyle.can.train import TrainOptions, train
from canstyle.errors import CanstyleError
from tests.helpers import make_folders

TINY = {"batch_size": 8, "width": 0.125, "n_samples": 4, "crop_min": 0.5}


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("can-train")
    src = make_folders(root / "src", per_style=6)
    prepare(src, root / "cache", size=96)
    return root / "cache"


def env(home: Path) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "CANSTYLE_HOME": str(home), "PYTHONUNBUFFERED": "1"}


def cli(data: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "canstyle", "train", str(data), "--out", str(out), "--batch-size", "8",
            "--width", "0.25", "--n-samples", "4", "--seed", "3", "--precision", "fp32", "-q", *extra]


def steps_logged(run: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_dry_run_writes_nothing(cache: Path, tmp_path: Path) -> None:
    res = train(str(cache), str(tmp_path / "runs"), TrainOptions(steps=5, **TINY), precision="fp32",
                seed=0, dry_run=True)
    assert res.run_dir is None and res.images_per_second > 0
    assert not (tmp_path / "runs").exists()


def test_a_cache_smaller_than_the_preset_is_warned_about(cache: Path, tmp_path: Path,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    whole = {**TINY, "crop_min": 1.0}
    with caplog.at_level("WARNING"):
        train(str(cache), str(tmp_path / "runs"), TrainOptions(steps=1, **whole), precision="fp32",
              seed=0, dry_run=True)
        assert "enlarged" not in caplog.text  # 96 px crops for preset 64: fine
        train(str(cache), str(tmp_path / "runs"), TrainOptions(steps=1, **TINY), precision="fp32",
              seed=0, dry_run=True)  # crops of half the 96 px short side: 48 px, enlarged to 64
    assert "96 px" in caplog.text and "crops down to 48 px" in caplog.text and "--preset 64" in caplog.text
    assert "--cache-size 128" in caplog.text and "prepare-data --size 128" in caplog.text


def test_run_folder_layout(cache: Path, tmp_path: Path) -> None:
    opts = TrainOptions(steps=6, log_every=2, sample_every=3, checkpoint_every=2, keep_checkpoints=2, **TINY)
    res = train(str(cache), str(tmp_path / "runs"), opts, precision="fp32", seed=1)
    run = res.run_dir
    assert run is not None and run.name == "00000-can-64" and res.step == 6
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["classes"] == ["Baroque", "Impressionism", "Ukiyo_e"] and cfg["seed"] == 1
    assert json.loads((run / "classes.json").read_text()) == cfg["classes"]
    assert steps_logged(run) == [2, 4, 6]
    line = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    for key in ("d_loss", "g_loss", "style_acc_real", "fake_style_entropy", "ambiguity"):
        assert key in line
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["step00000003.png", "step00000006.png"]
    assert [p.name for p in checkpoints(run)] == ["step00000004.pt", "step00000006.pt"]  # keep-last-2
    state = load_checkpoint(checkpoints(run)[-1])  # weights_only=True inside
    assert {"G", "D", "G_ema", "opt_g", "opt_d", "scaler", "rng", "step"} <= state.keys()
    again = train(str(cache), str(tmp_path / "runs"), TrainOptions(steps=1, **TINY), precision="fp32")
    assert again.run_dir is not None and again.run_dir.name == "00001-can-64"


def test_resume_continues_exactly(cache: Path, tmp_path: Path) -> None:
    base = dict(log_every=1, checkpoint_every=4, sample_every=100, **TINY)
    straight = train(str(cache), str(tmp_path / "a"), TrainOptions(steps=8, **base), precision="fp32", seed=7)
    half = train(str(cache), str(tmp_path / "b"), TrainOptions(steps=4, **base), precision="fp32", seed=7)
    assert half.step == 4
    resumed = train(None, str(tmp_path / "b"), TrainOptions(steps=8, **base), resume="latest", precision="fp32")
    assert resumed.run_dir == half.run_dir and resumed.step == 8
    assert steps_logged(resumed.run_dir) == list(range(1, 9))
    a = load_checkpoint(checkpoints(straight.run_dir)[-1])
    b = load_checkpoint(checkpoints(resumed.run_dir)[-1])
    for part in ("G", "D", "G_ema"):
        for k in a[part]:
            assert torch.allclose(a[part][k], b[part][k], atol=1e-6), (part, k)


def test_resume_errors(tmp_path: Path) -> None:
    with pytest.raises(CanstyleError, match="no CAN run"):
        train(None, str(tmp_path / "none"), TrainOptions(**TINY), resume="latest", precision="fp32")
    run = tmp_path / "runs" / "00000-can-64"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "step00000004.pt").write_bytes(b"x")
    with pytest.raises(CanstyleError, match="not a CAN run folder"):
        train(None, str(tmp_path / "runs"), TrainOptions(**TINY), resume=str(run), precision="fp32")
    (run / "config.json").write_text("{bad")
    with pytest.raises(CanstyleError, match="damaged"):
        train(None, str(tmp_path / "runs"), TrainOptions(**TINY), resume=str(run), precision="fp32")


class Stop(Exception):
    pass


def test_resume_before_the_first_checkpoint_restarts_the_run(cache: Path, tmp_path: Path) -> None:
    opts = TrainOptions(steps=4, log_every=1, checkpoint_every=100, sample_every=100, **TINY)

    def interrupt(p) -> None:  # type: ignore[no-untyped-def]
        if p.step == 2:
            raise Stop  # a crash after two logged steps and before any checkpoint

    with pytest.raises(Stop):
        train(str(cache), str(tmp_path), opts, precision="fp32", seed=4, callback=interrupt)
    run = tmp_path / "00000-can-64"
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"step": 3, "d_lo')  # killed in the middle of a metrics line
    res = train(None, str(tmp_path), opts, resume="latest", precision="fp32")
    assert res.run_dir == run and res.step == 4 and steps_logged(run) == [1, 2, 3, 4]
    assert [p.name for p in checkpoints(run)] == ["step00000004.pt"]


@pytest.mark.parametrize("bad", [{"lr_g": float("nan")}, {"lr_d": -1.0}, {"beta1": 2.0}, {"beta2": -1.0},
                                 {"ambiguity_weight": float("inf")}, {"width": 0.0}, {"ema_decay": 1.0},
                                 {"crop_min": 0.0}])
def test_bad_optimiser_values_are_refused(cache: Path, tmp_path: Path, bad: dict) -> None:
    (name,) = bad
    flag = "--" + name.replace("_", "-")
    with pytest.raises(CanstyleError, match=f"^{flag} must be a finite number in"):  # names the option
        train(str(cache), str(tmp_path / "runs"), TrainOptions(steps=1, **{**TINY, **bad}),
              precision="fp32", dry_run=True)


def wait_for_checkpoint(proc: subprocess.Popen, run_root: Path, min_step: int, timeout: float = 120) -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        found = [int(p.name[4:12]) for r in run_root.glob("*-can-64") for p in checkpoints(r)]
        if found and max(found) >= min_step:
            return
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else "exited early"
        time.sleep(0.02)
    raise AssertionError("no checkpoint in time")


def test_sigkill_then_resume(cache: Path, tmp_path: Path) -> None:
    out = tmp_path / "runs"
    args = cli(cache, out, "--steps", "50", "--checkpoint-every", "5", "--log-every", "1",
               "--sample-every", "25", "--keep-checkpoints", "2")
    proc = subprocess.Popen(args, env=env(tmp_path), stderr=subprocess.PIPE, text=True)
    try:
        wait_for_checkpoint(proc, out, 10)
        assert proc.poll() is None, "the run finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(30)
    run = next(out.glob("*-can-64"))
    killed_at = int(checkpoints(run)[-1].name[4:12])
    assert 10 <= killed_at < 50
    done = subprocess.run(cli(cache, out, "--steps", "50", "--resume"), env=env(tmp_path),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert load_checkpoint(checkpoints(run)[-1])["step"] == 50
    assert len(checkpoints(run)) == 2
    assert steps_logged(run) == list(range(1, 51))  # no step lost, none logged twice
    assert (run / "samples" / "step00000050.png").exists()


def test_ctrl_c_saves_and_exits(cache: Path, tmp_path: Path) -> None:
    out = tmp_path / "runs"
    args = cli(cache, out, "--steps", "400", "--checkpoint-every", "5", "--log-every", "1")
    proc = subprocess.Popen(args, env=env(tmp_path), stderr=subprocess.PIPE, text=True)
    try:
        wait_for_checkpoint(proc, out, 5)
        proc.send_signal(signal.SIGINT)
        code = proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code == 130
    run = next(out.glob("*-can-64"))
    last = load_checkpoint(checkpoints(run)[-1])["step"]
    assert 5 <= last < 400 and steps_logged(run)[-1] == last


def test_paper_batchnorm_discriminator_trains(cache: Path, tmp_path: Path) -> None:
    opts = TrainOptions(steps=3, log_every=1, spectral_norm=False, ambiguity_form="uniform-ce",
                        adv_loss="hinge", **TINY)
    res = train(str(cache), str(tmp_path / "runs"), opts, precision="fp32", seed=2)
    assert res.step == 3 and all(np.isfinite(v) for v in res.metrics.values())
    assert json.loads((res.run_dir / "config.json").read_text())["model"]["spectral_norm"] is False
