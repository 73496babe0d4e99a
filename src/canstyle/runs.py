"""Run folders shared by the trainers (``canstyle train`` and ``canstyle train-sr``).

A run lives in ``OUT/NNNNN-<kind>-<tag>/`` (``00000-can-64``, ``00003-sr-cunet``). Numbers count
from 00000, one sequence per OUT for every kind; SR runs made before this module counted from
00001 and are found the same way. A run holds ``config.json``, ``metrics.jsonl`` (JSON lines)
and ``checkpoints/stepNNNNNNNN.pt``; older SR runs named them ``step-NNNNNN.pt``, and both names
are found, ordered by step and rotated together.

Everything here is written so that a SIGKILL at any moment leaves a resumable run:
checkpoints and config.json are written to a temporary file and renamed, a metrics line is
one ``write`` call, and reading the metrics skips a half-written last line.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from canstyle.errors import CanstyleError, first_line
from canstyle.fsutil import atomic_write, check_writable_folder

CONFIG = "config.json"
METRICS = "metrics.jsonl"
CHECKPOINTS = "checkpoints"
_RUN_RE = re.compile(r"^(\d{5})-")
# The name new checkpoints get comes first; the second is the one SR used before.
_CKPT_RES = (re.compile(r"^step(\d{8})\.pt$"), re.compile(r"^step-(\d{6})\.pt$"))


# -- run folders ---------------------------------------------------------------------------

def run_number(path: Path) -> int | None:
    m = _RUN_RE.match(path.name)
    return int(m.group(1)) if m else None


def new_run_dir(out: str | os.PathLike[str], tag: str) -> Path:
    """Create the next numbered run folder ``OUT/NNNNN-tag`` (empty) and return it."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise CanstyleError(f"-o/--output must be a folder, and {out} is a file")
    out.mkdir(parents=True, exist_ok=True)
    for _ in range(1000):
        nums = [n for p in out.iterdir() if (n := run_number(p)) is not None]
        run = out / f"{max(nums, default=-1) + 1:05d}-{tag}"
        try:
            run.mkdir()  # fails if another process took this number meanwhile: try the next
            return run
        except FileExistsError:
            continue
    raise CanstyleError(f"could not make a run folder in {out}")


def check_run_writable(out: str | os.PathLike[str], resume: str | None, kind: str) -> Path:
    """Fail early, before data or weights load, unless a trainer can write its run: the resumed
    one (see ``resolve_resume``), or a new one under ``out``. Returns that folder."""
    folder = resolve_resume(resume, out, kind).run if resume else Path(out)
    return check_writable_folder(folder)


@contextlib.contextmanager
def new_run(out: str | os.PathLike[str], tag: str) -> Iterator[Path]:
    """``new_run_dir``, removed again if the block fails before writing anything into it."""
    run = new_run_dir(out, tag)
    try:
        yield run
    except BaseException:
        with contextlib.suppress(OSError):  # not empty: something was written, keep it
            run.rmdir()
        raise


def runs_of(out: Path, kind: str) -> list[Path]:
    """The run folders of ``kind`` ("can", "sr") under ``out``, oldest number first."""
    if not out.is_dir():
        return []
    found = [p for p in out.iterdir() if p.is_dir() and run_number(p) is not None
             and p.name[6:].startswith(f"{kind}-")]
    return sorted(found, key=lambda p: (run_number(p), p.name))


def remove_partial_files(run: Path) -> None:
    """Delete the temporary files a SIGKILL mid-save leaves in the run and its subfolders
    (checkpoints/, samples/; a checkpoint's can be large).

    Call it only when resuming: the process that wrote them is gone by then.
    """
    if not run.is_dir():
        return
    for d in (run, *(p for p in run.iterdir() if p.is_dir())):
        for p in d.glob(".*.tmp"):
            p.unlink(missing_ok=True)


# -- config.json ---------------------------------------------------------------------------

def write_json(path: Path, obj: Any) -> None:
    data = (json.dumps(obj, indent=1, sort_keys=True) + "\n").encode()
    atomic_write(path, lambda tmp: tmp.write_bytes(data), overwrite=True)


def write_config(run: Path, config: dict[str, Any]) -> None:
    write_json(run / CONFIG, config)


def read_config(run: Path, required: Iterable[str] = (), what: str = "") -> dict[str, Any]:
    """A run's config.json; ``required`` keys tell a ``what`` run from another kind's."""
    path = run / CONFIG
    try:
        cfg = json.loads(path.read_text())
    except FileNotFoundError:
        raise CanstyleError(f"--resume: {run} is not a {what} run folder (no {CONFIG})") from None
    except (OSError, ValueError) as e:
        raise CanstyleError(f"--resume: {path} is damaged ({first_line(e)})") from None
    missing = sorted(set(required) - set(cfg)) if isinstance(cfg, dict) else sorted(required)
    if not isinstance(cfg, dict) or missing:
        raise CanstyleError(f"--resume: {run} is not a {what} run or checkpoint "
                            f"({CONFIG} has no {', '.join(missing) or 'object'})")
    return cfg


# -- checkpoints ---------------------------------------------------------------------------

def checkpoint_name(step: int) -> str:
    return f"step{step:08d}.pt"


def checkpoint_step(path: Path) -> int | None:
    """The step in a checkpoint's file name (either naming), or None for other files."""
    for rx in _CKPT_RES:
        if m := rx.match(path.name):
            return int(m.group(1))
    return None


def checkpoints(run: Path) -> list[Path]:
    """A run's checkpoints, oldest step first (at equal steps the current name sorts last)."""
    d = Path(run) / CHECKPOINTS
    if not d.is_dir():
        return []
    found = [(step, not p.name.startswith("step-"), p) for p in d.iterdir()
             if (step := checkpoint_step(p)) is not None]
    return [p for *_, p in sorted(found)]


def save_checkpoint(run: Path, step: int, state: dict[str, Any], keep: int) -> Path:
    """Write ``state`` (plus its step) atomically as this step's checkpoint; keep the newest ``keep``."""
    path = run / CHECKPOINTS / checkpoint_name(step)
    state = {**state, "step": step}

    def write(tmp: Path) -> None:
        torch.save(state, tmp)
        with open(tmp, "rb+") as f:  # on disk before the rename, so a power cut cannot empty it
            os.fsync(f.fileno())

    atomic_write(path, write, overwrite=True)
    for old in checkpoints(run)[: -max(1, keep)]:
        old.unlink(missing_ok=True)
    return path


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A checkpoint's dict, read with ``weights_only=True`` (tensors, numbers, strings only)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001  (a truncated or foreign file: explain, don't trace back)
        # No text of torch's: for a foreign file it advises weights_only=False, which would run
        # whatever code an untrusted pickle holds.
        raise CanstyleError(f"cannot read checkpoint {path}: it is not a canstyle checkpoint, "
                            "or a damaged one") from None
    if not isinstance(state, dict):
        raise CanstyleError(f"{path} is not a canstyle checkpoint")
    return state


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


# -- the resume rule -----------------------------------------------------------------------

@dataclass
class Resume:
    """What ``--resume`` points at: the run, and its checkpoint (None: restart it from step 0)."""

    run: Path
    checkpoint: Path | None


def _resumable(run: Path) -> bool:
    return (run / CONFIG).is_file() or bool(checkpoints(run))


def resolve_resume(resume: str, out: str | os.PathLike[str], kind: str) -> Resume:
    """The resume rule both trainers share.

    * ``latest`` (what a bare ``--resume`` means): the newest ``kind`` run under ``out`` that
      got as far as writing its config.json or a checkpoint;
    * a run folder: that run;
    * a checkpoint file: that checkpoint, of the run folder two levels up (``RUN/checkpoints/``).

    A run continues from its newest checkpoint. One killed before its first checkpoint has only
    its config.json, and restarts from step 0 in the same folder with the same seed.
    """
    if resume == "latest":
        found = [r for r in runs_of(Path(out), kind) if _resumable(r)]
        if not found:
            raise CanstyleError(f"--resume: no {kind.upper()} run to continue under {out}")
        run = found[-1]
    else:
        p = Path(resume)
        if p.is_file():
            p = p.absolute()  # "step00000010.pt" given from inside checkpoints/ has a parent too
            if p.parent.name != CHECKPOINTS:  # its run would be "two levels up", which is not one
                raise CanstyleError(f"--resume: {p} is not a checkpoint in a run folder "
                                    f"(RUN/{CHECKPOINTS}/stepNNNNNNNN.pt)")
            return Resume(p.parent.parent, p)
        if not p.is_dir():
            raise CanstyleError(f"--resume: no such run or checkpoint: {p}")
        if not _resumable(p):
            raise CanstyleError(f"--resume: {p} has no checkpoints and no {CONFIG}")
        run = p
    found_ckpts = checkpoints(run)
    return Resume(run, found_ckpts[-1] if found_ckpts else None)


# -- the metrics log -----------------------------------------------------------------------

class MetricsLog:
    """``metrics.jsonl``: one JSON object a line, each with its ``step``."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def append(self, record: dict[str, Any]) -> None:
        data = (json.dumps(record) + "\n").encode()
        # One write() on an O_APPEND descriptor: a kill leaves at most one partial last line,
        # never a line broken in the middle of the file.
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)

    def _lines(self) -> Iterator[tuple[str, dict[str, Any]]]:
        if not self.path.exists():
            return
        for line in self.path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by a SIGKILL
            if isinstance(rec, dict):
                yield line, rec

    def records(self) -> list[dict[str, Any]]:
        return [rec for _, rec in self._lines()]

    def truncate(self, step: int) -> None:
        """Keep only whole lines up to ``step``: later ones belong to work a crash threw away."""
        if not self.path.exists():
            return
        keep = [line for line, rec in self._lines() if _step_of(rec) <= step]
        data = "".join(line + "\n" for line in keep).encode()
        atomic_write(self.path, lambda tmp: tmp.write_bytes(data), overwrite=True)


def _step_of(rec: dict[str, Any]) -> float:
    step = rec.get("step", 0)
    return step if isinstance(step, int | float) else 0
