"""Jobs for the web studio: one worker thread, persisted as ``OUTPUT/jobs/<id>/job.json``.

Style transfer saturates every core, so jobs run strictly one at a time on a single
worker thread; the HTTP side only enqueues, reads snapshots and sets cancel flags.
Every status change is written to disk atomically, so history and results survive
a restart: queued jobs are queued again, and a job that was running when the
process died is marked failed (re-running it could crash the server in a loop).
Each finished photo is recorded (and written to disk) the moment it is done, so a job
that is cancelled, fails or dies part-way keeps every result it finished.
"""

from __future__ import annotations

import json
import logging
import queue
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from canstyle.errors import CanstyleError
from canstyle.fsutil import atomic_write_bytes

log = logging.getLogger("canstyle.web")

STATUSES = ("queued", "running", "done", "failed", "cancelled")
TERMINAL = frozenset({"done", "failed", "cancelled"})
JOB_ID = re.compile(r"[0-9a-f]{16}")
INTERRUPTED = "the server stopped while this job was running; submit it again"


class JobCancelled(Exception):
    """Raised from a progress report to abort the running job (cancel or shutdown)."""


class QueueFull(CanstyleError):
    """Too many jobs are waiting."""


@dataclass
class Job:
    id: str
    request: dict[str, Any]
    created: float
    status: str = "queued"
    started: float | None = None
    finished: float | None = None
    error: str | None = None
    results: list[dict[str, Any]] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)  # style used, models, timings
    # Runtime only (not persisted): live progress, the latest preview, change counter.
    progress: dict[str, Any] | None = None
    preview: bytes | None = None
    preview_n: int = 0
    version: int = 0
    cancel: threading.Event = field(default_factory=threading.Event)
    seq: int = 0  # submission order: ties in ``created`` cannot reorder the queue

    PERSISTED = ("id", "request", "created", "status", "started", "finished", "error", "results", "info")

    def record(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.PERSISTED}

    @classmethod
    def from_record(cls, rec: dict[str, Any]) -> Job:
        return cls(**{k: rec[k] for k in cls.PERSISTED if k in rec})


class Hooks:
    """What a runner may tell the manager while it works on one job."""

    def __init__(self, manager: JobManager, job: Job) -> None:
        self._manager, self.job = manager, job

    def report(self, progress: dict[str, Any], preview: bytes | None) -> None:
        """Live progress (and a JPEG preview); raises JobCancelled when the job should stop."""
        self._manager._report(self.job, progress, preview)

    def result(self, result: dict[str, Any], info: dict[str, Any] | None = None) -> None:
        """One finished photo, its file already written: recorded and persisted at once."""
        self._manager._add_result(self.job, result, info or {})

    def info(self, info: dict[str, Any]) -> None:
        self._manager._add_result(self.job, None, info)


# The runner does the work: runner(job, hooks) -> info (style used, options, timings).
Runner = Callable[[Job, Hooks], dict[str, Any]]


class JobManager:
    """A FIFO of jobs executed by one worker thread, mirrored to ``jobs_dir``."""

    def __init__(self, jobs_dir: Path, runner: Runner, max_queued: int = 200,
                 scrub: Callable[[str], str] = str) -> None:
        self.dir = Path(jobs_dir)
        self._scrub = scrub  # removes server paths from error messages
        self.dir.mkdir(parents=True, exist_ok=True)
        self._runner = runner
        self._max_queued = max_queued
        self._lock = threading.Lock()
        self._jobs: dict[str, Job] = {}
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._seq = 0
        self.version = 0  # bumped on every change of any job, for the all-jobs event stream
        self._recover()

    # -- persistence -----------------------------------------------------
    def job_dir(self, job_id: str) -> Path:
        if not JOB_ID.fullmatch(job_id):  # ids are ours; anything else is never a path
            raise KeyError(job_id)
        return self.dir / job_id

    def _persist(self, job: Job) -> None:
        data = json.dumps(job.record(), indent=1, default=str).encode() + b"\n"
        atomic_write_bytes(self.job_dir(job.id) / "job.json", data, overwrite=True)

    def _recover(self) -> None:
        """Load every job.json; requeue queued jobs, fail the ones a crash interrupted."""
        for path in sorted(self.dir.glob("*/job.json")):
            try:
                job = Job.from_record(json.loads(path.read_text(encoding="utf-8")))
            except (OSError, ValueError, TypeError, KeyError) as e:
                log.warning("skipping unreadable job file %s: %s", path, e)
                continue
            if not JOB_ID.fullmatch(job.id) or job.status not in STATUSES:
                log.warning("skipping invalid job file %s", path)
                continue
            if job.status == "running":
                job.status, job.error, job.finished = "failed", INTERRUPTED, time.time()
                self._persist(job)
            self._jobs[job.id] = job
        for job in sorted(self._jobs.values(), key=lambda j: (j.created, j.id)):
            self._seq += 1
            job.seq = self._seq
            if job.status == "queued":
                self._queue.put(job.id)

    # -- public API ------------------------------------------------------
    def submit(self, request: dict[str, Any]) -> Job:
        with self._lock:
            if sum(j.status == "queued" for j in self._jobs.values()) >= self._max_queued:
                raise QueueFull(f"{self._max_queued} jobs are already waiting; try again later")
            self._seq += 1
            job = Job(secrets.token_hex(8), request, time.time(), seq=self._seq)
            self._persist(job)  # on disk before it can run, so a crash never loses it
            self._jobs[job.id] = job
            # Queued under the lock: jobs that arrive together run in the order of their seq,
            # which is also the order queue positions are counted in.
            self._queue.put(job.id)
            self.version += 1
        return job

    def get(self, job_id: str) -> Job:
        job = self._jobs.get(job_id)
        if job is None:
            raise KeyError(job_id)
        return job

    def snapshot(self, job_id: str) -> tuple[int, dict[str, Any]]:
        """(change counter, public state) of one job, read consistently."""
        with self._lock:
            job = self.get(job_id)
            return job.version, self._public(job)

    def list(self, status: str | None = None, offset: int = 0, limit: int | None = None) -> list[dict[str, Any]]:
        """Public states, newest first; only the page asked for is built."""
        return self.page(status, offset, limit)[0]

    def page(self, status: str | None = None, offset: int = 0,
             limit: int | None = None) -> tuple[list[dict[str, Any]], int]:
        """(public states of jobs ``offset`` .. ``offset + limit``, newest first; how many match)."""
        with self._lock:
            jobs = sorted((j for j in self._jobs.values() if status is None or j.status == status),
                          key=lambda j: j.seq, reverse=True)
            end = None if limit is None else offset + limit
            return [self._public(j) for j in jobs[offset:end]], len(jobs)

    def cancel(self, job_id: str) -> dict[str, Any]:
        """Cancel a queued job now, or ask the running one to stop at its next step."""
        with self._lock:
            job = self.get(job_id)
            if job.status in TERMINAL:
                raise CanstyleError(f"job {job_id} is already {job.status}")
            job.cancel.set()
            if job.status == "queued":
                job.status, job.finished = "cancelled", time.time()
                self._persist(job)
            self._touch(job)
            return self._public(job)

    def delete(self, job_id: str) -> Job:
        """Forget a finished job; the caller removes its folder. Running or queued: 409."""
        with self._lock:
            job = self.get(job_id)
            if job.status not in TERMINAL:
                raise CanstyleError(f"job {job_id} is {job.status}: cancel it first")
            del self._jobs[job_id]
            self.version += 1
            return job

    def drop_result(self, job_id: str, index: int) -> dict[str, Any]:
        """Remove one result from a finished job's record (the caller deletes the files)."""
        with self._lock:
            job = self.get(job_id)
            if job.status not in TERMINAL:
                raise CanstyleError(f"job {job_id} is {job.status}: wait for it to finish")
            found = [r for r in job.results if r.get("index") == index]
            if not found:
                raise KeyError(index)
            job.results = [r for r in job.results if r.get("index") != index]
            self._touch(job)
            self._persist(job)
            return found[0]

    def uses_source(self, source_id: str) -> bool:
        """Whether a queued or running job still needs this upload."""
        with self._lock:
            return any(j.status not in TERMINAL and (source_id in j.request.get("photos", [])
                                                      or j.request.get("style", {}).get("upload") == source_id)
                       for j in self._jobs.values())

    def changed_since(self, seen: dict[str, int]) -> tuple[list[dict[str, Any]], list[str]]:
        """Public states of the jobs whose version differs from ``seen``, and the ids in ``seen``
        that were deleted since (``seen`` is updated in place)."""
        with self._lock:
            out = []
            for job in sorted(self._jobs.values(), key=lambda j: j.seq):
                if seen.get(job.id) != job.version:
                    seen[job.id] = job.version
                    out.append(self._public(job))
            gone = [job_id for job_id in seen if job_id not in self._jobs]
            for job_id in gone:
                del seen[job_id]
            return out, gone

    def _touch(self, job: Job) -> None:
        """Mark a change (call with the lock held)."""
        job.version += 1
        self.version += 1

    def counts(self) -> dict[str, int]:
        with self._lock:
            return {s: sum(j.status == s for j in self._jobs.values()) for s in STATUSES}

    def _public(self, job: Job) -> dict[str, Any]:
        out = job.record()
        out.update(progress=job.progress, preview_n=job.preview_n, server_time=time.time(),
                   cancel_requested=job.cancel.is_set() and job.status not in TERMINAL)
        if job.status == "queued":  # jobs ahead of this one, the running one included
            out["queue_position"] = sum(
                1 for j in self._jobs.values()
                if j.status == "running" or (j.status == "queued" and j.seq < job.seq))
        return out

    # -- worker ----------------------------------------------------------
    def start(self) -> None:
        if self._thread is None:
            self._stopping.clear()
            self._thread = threading.Thread(target=self._work, name="canstyle-worker", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the worker; a running job is aborted and queued again for the next start."""
        if self._thread is None:
            return
        self._stopping.set()
        self._queue.put(None)
        self._thread.join(timeout)
        self._thread = None

    def _work(self) -> None:
        while not self._stopping.is_set():
            job_id = self._queue.get()
            if job_id is None:  # stop()'s wake-up call (a stale one after a restart is ignored)
                continue
            job = self._jobs.get(job_id)
            if job is None or not self._begin(job):
                continue
            self._run(job)

    def _begin(self, job: Job) -> bool:
        with self._lock:
            if job.status != "queued":  # cancelled while it waited
                return False
            job.status, job.started = "running", time.time()
            for other in self._jobs.values():  # queue positions moved: wake their watchers
                if other.status in ("queued", "running"):
                    self._touch(other)
        self._persist(job)
        return True

    def _run(self, job: Job) -> None:
        """Run one job; whatever it recorded before stopping stays in ``job.results``."""
        status, error = "done", None
        try:
            info = self._runner(job, Hooks(self, job))
        except JobCancelled:
            if self._stopping.is_set() and not job.cancel.is_set():
                self._requeue_on_shutdown(job)
                return
            status, info = "cancelled", {}
        except CanstyleError as e:  # a user-fixable problem: its message is the report
            status, error, info = "failed", self._scrub(str(e)), {}
        except Exception as e:  # a bug or resource problem: keep serving, log the traceback
            log.exception("job %s failed", job.id)
            status, error, info = "failed", self._scrub(f"internal error: {type(e).__name__}: {e}"), {}
        with self._lock:
            job.status, job.error, job.finished = status, error, time.time()
            job.info = {**job.info, **info}
            job.preview = None  # the result replaces the preview; keep memory flat
            self._touch(job)
            self._persist(job)

    def _add_result(self, job: Job, result: dict[str, Any] | None, info: dict[str, Any]) -> None:
        with self._lock:
            if result is not None:
                job.results = [*(r for r in job.results if r.get("index") != result["index"]), result]
                job.results.sort(key=lambda r: r["index"])
            job.info = {**job.info, **info}
            self._touch(job)
            self._persist(job)  # on disk now: a crash or a cancel later keeps this photo

    def _requeue_on_shutdown(self, job: Job) -> None:
        with self._lock:
            job.status, job.started, job.progress, job.preview = "queued", None, None, None
            self._touch(job)
            self._persist(job)
        self._queue.put(job.id)  # runs again if this manager is started again

    def _report(self, job: Job, progress: dict[str, Any], preview: bytes | None) -> None:
        if job.cancel.is_set() or self._stopping.is_set():
            raise JobCancelled
        with self._lock:
            job.progress = progress
            if preview is not None:
                job.preview, job.preview_n = preview, job.preview_n + 1
            self._touch(job)

    def preview(self, job_id: str) -> bytes | None:
        with self._lock:
            return self.get(job_id).preview
