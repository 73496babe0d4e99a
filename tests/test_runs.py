"""Run folders shared by both trainers: numbering, checkpoints, the resume rule, metrics."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from canstyle import runs
from canstyle.errors import CanstyleError
from tests.helpers import REPO


def test_numbering_counts_from_zero_across_kinds_and_old_sr_folders(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    assert runs.new_run_dir(out, "can-64").name == "00000-can-64"
    assert runs.new_run_dir(out, "sr-photo").name == "00001-sr-photo"
    (out / "00007-sr-cunet").mkdir()  # an SR run from before (they counted from 00001)
    assert runs.new_run_dir(out, "can-64").name == "00008-can-64"
    assert [p.name for p in runs.runs_of(out, "sr")] == ["00001-sr-photo", "00007-sr-cunet"]
    assert [p.name for p in runs.runs_of(out, "can")] == ["00000-can-64", "00008-can-64"]
    (tmp_path / "file").write_text("")
    with pytest.raises(CanstyleError, match="is a file"):
        runs.new_run_dir(tmp_path / "file", "can-64")


def test_new_run_is_removed_when_the_setup_fails_before_writing(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), runs.new_run(tmp_path, "sr-x"):
        raise RuntimeError("weights do not load")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(RuntimeError), runs.new_run(tmp_path, "sr-x") as run:
        (run / "config.json").write_text("{}")
        raise RuntimeError("after writing: keep it")
    assert [p.name for p in tmp_path.iterdir()] == ["00000-sr-x"]


def test_both_checkpoint_names_are_found_ordered_and_rotated(tmp_path: Path) -> None:
    run = tmp_path / "00001-sr-photo"
    (run / "checkpoints").mkdir(parents=True)
    for name in ("step-000003.pt", "step-000012.pt", "notes.txt", ".step00000020.pt.abc.tmp"):
        (run / "checkpoints" / name).write_bytes(b"")
    path = runs.save_checkpoint(run, 6, {"w": torch.ones(2)}, keep=10)
    assert path.name == runs.checkpoint_name(6) == "step00000006.pt"
    assert [p.name for p in runs.checkpoints(run)] == ["step-000003.pt", "step00000006.pt", "step-000012.pt"]
    runs.save_checkpoint(run, 20, {"w": torch.ones(2)}, keep=2)  # rotation spans both names
    assert [p.name for p in runs.checkpoints(run)] == ["step-000012.pt", "step00000020.pt"]
    state = runs.load_checkpoint(runs.find_checkpoint(run))
    assert state["step"] == 20 and torch.equal(state["w"], torch.ones(2))
    (run / "samples").mkdir()
    (run / "samples" / ".step00000010.png.x.tmp").write_bytes(b"")
    runs.remove_partial_files(run)
    assert not list(run.glob("**/.*.tmp"))
    with pytest.raises(CanstyleError, match="cannot read checkpoint"):
        runs.load_checkpoint(run / "checkpoints" / "step-000012.pt")  # empty file: one line, no trace


def test_resume_rule(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    with pytest.raises(CanstyleError, match="no CAN run"):
        runs.resolve_resume("latest", out, "can")
    old = runs.new_run_dir(out, "can-64")
    runs.write_config(old, {"seed": 1})
    (old / "checkpoints").mkdir()
    for step in (5, 10):
        (old / "checkpoints" / runs.checkpoint_name(step)).write_bytes(b"")
    sr = runs.new_run_dir(out, "sr-photo")  # the newest folder, but of the other kind
    runs.write_config(sr, {"seed": 2})
    empty = runs.new_run_dir(out, "can-64")  # killed before it wrote anything: nothing to resume
    r = runs.resolve_resume("latest", out, "can")
    assert r.run == old and r.checkpoint is not None and r.checkpoint.name == "step00000010.pt"
    assert runs.resolve_resume(str(old), out, "can") == r
    ckpt = old / "checkpoints" / "step00000005.pt"
    assert runs.resolve_resume(str(ckpt), out, "can") == runs.Resume(old, ckpt)
    assert runs.resolve_resume("latest", out, "sr") == runs.Resume(sr, None)  # restart from step 0
    with pytest.raises(CanstyleError, match="no checkpoints and no config.json"):
        runs.resolve_resume(str(empty), out, "can")
    with pytest.raises(CanstyleError, match="no such run or checkpoint"):
        runs.resolve_resume(str(tmp_path / "nope"), out, "can")


def test_read_config_tells_kinds_apart(tmp_path: Path) -> None:
    runs.write_config(tmp_path, {"options": {}, "seed": 3})
    assert runs.read_config(tmp_path, ("options", "seed"), "CAN")["seed"] == 3
    with pytest.raises(CanstyleError, match="not a train-sr run or checkpoint.*arch"):
        runs.read_config(tmp_path, ("options", "arch"), "train-sr")
    (tmp_path / "config.json").write_text("{half")
    with pytest.raises(CanstyleError, match="damaged"):
        runs.read_config(tmp_path, (), "CAN")
    with pytest.raises(CanstyleError, match="not a CAN run folder"):
        runs.read_config(tmp_path / "missing", (), "CAN")


def test_metrics_truncation_skips_a_half_written_last_line(tmp_path: Path) -> None:
    log = runs.MetricsLog(tmp_path / "metrics.jsonl")
    log.truncate(3)  # no file yet: nothing to do
    for step in range(1, 7):
        log.append({"step": step, "loss": step / 10})
    log.append({"val_note": "no step"})
    with open(log.path, "a") as f:
        f.write('{"step": 7, "lo')  # a SIGKILL in the middle of a write
    assert [r.get("step") for r in log.records()] == [1, 2, 3, 4, 5, 6, None]
    log.truncate(4)
    assert log.path.read_text().endswith("\n")
    assert [r.get("step") for r in log.records()] == [1, 2, 3, 4, None]
    log.append({"step": 5})
    assert [json.loads(ln).get("step") for ln in log.path.read_text().splitlines()] == [1, 2, 3, 4, None, 5]


@pytest.mark.slow
def test_kill_and_resume_both_trainers(tmp_path: Path) -> None:
    """A short version of scripts/kill_resume.py (docs/runs.md has the full one's numbers)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, str(REPO / "scripts" / "kill_resume.py"), "--trials", "2", "--kills", "1",
           "--workdir", str(tmp_path), "--seed", "1"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    for trainer in ("can", "sr"):
        assert summary[trainer]["resumed_ok"] == summary[trainer]["trials"] == 2
