"""Run directories and checkpoints.

A run lives in ``OUT/00003-can-64/`` with config.json, classes.json,
metrics.jsonl, samples/ and checkpoints/. A checkpoint holds only tensors,
numbers, strings and containers of them (the config as a JSON string), so it
loads with ``torch.load(weights_only=True)``. It is written to a temporary
file and renamed, so a SIGKILL at any moment leaves the previous one intact.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import torch

from canstyle.errors import CanstyleError, first_line
from canstyle.fsutil import atomic_write

FORMAT = "canstyle-can-checkpoint/1"
_RUN_RE = re.compile(r"^(\d{5})-")
_CKPT_RE = re.compile(r"^step(\d{8})\.pt$")


def new_run_dir(out: str | os.PathLike[str], tag: str) -> Path:
    """The next numbered run folder under ``out``, created empty."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    while True:
        nums = [int(m.group(1)) for p in out.iterdir() if (m := _RUN_RE.match(p.name))]
        run = out / f"{(max(nums) + 1 if nums else 0):05d}-{tag}"
        try:
            run.mkdir()  # fails if another process took the number meanwhile
            return run
        except FileExistsError:
            continue


def checkpoints(run: Path) -> list[Path]:
    d = run / "checkpoints"
    if not d.is_dir():
        return []
    return sorted(p for p in d.iterdir() if _CKPT_RE.match(p.name))


def latest_run(out: Path) -> Path | None:
    if not out.is_dir():
        return None
    runs = sorted((p for p in out.iterdir() if _RUN_RE.match(p.name) and checkpoints(p)),
                  key=lambda p: int(p.name[:5]))
    return runs[-1] if runs else None


def resolve_resume(resume: str, out: Path) -> tuple[Path, Path]:
    """``latest`` (newest run under ``out``), a run folder, or a checkpoint -> (run, checkpoint)."""
    if resume == "latest":
        run = latest_run(out)
        if run is None:
            raise CanstyleError(f"--resume latest: no run with a checkpoint under {out}")
        return run, checkpoints(run)[-1]
    p = Path(resume)
    if p.is_dir():
        found = checkpoints(p)
        if not found:
            raise CanstyleError(f"--resume: {p} has no checkpoints")
        return p, found[-1]
    if p.is_file():
        return p.parent.parent, p
    raise CanstyleError(f"--resume: no such run or checkpoint: {p}")


def find_checkpoint(src: str | os.PathLike[str]) -> Path:
    """A checkpoint file, or the newest checkpoint of a run folder."""
    p = Path(src)
    if p.is_dir():
        found = checkpoints(p)
        if not found:
            raise CanstyleError(f"{p} has no checkpoints")
        return found[-1]
    if not p.is_file():
        raise CanstyleError(f"no such checkpoint: {p}")
    return p


def save_checkpoint(run: Path, step: int, state: dict[str, Any], keep: int) -> Path:
    path = run / "checkpoints" / f"step{step:08d}.pt"
    state = {"format": FORMAT, "step": step, **state}
    atomic_write(path, lambda tmp: torch.save(state, tmp), overwrite=True)
    for old in checkpoints(run)[: -max(1, keep)]:
        old.unlink(missing_ok=True)
    return path


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001  (a truncated or foreign file: explain, don't trace back)
        raise CanstyleError(f"cannot read checkpoint {path}: {first_line(e)}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CanstyleError(f"{path} is not a canstyle CAN checkpoint")
    return state


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def write_json(path: Path, obj: Any) -> None:
    data = (json.dumps(obj, indent=1, sort_keys=True) + "\n").encode()
    atomic_write(path, lambda tmp: tmp.write_bytes(data), overwrite=True)


def truncate_metrics(path: Path, step: int) -> None:
    """Drop metric lines past ``step``: they belong to work a crash threw away."""
    if not path.exists():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line).get("step", 0) <= step:
                keep.append(line)
        except json.JSONDecodeError:
            continue  # a half-written last line from a SIGKILL
    data = ("\n".join(keep) + "\n" if keep else "").encode()
    atomic_write(path, lambda tmp: tmp.write_bytes(data), overwrite=True)
