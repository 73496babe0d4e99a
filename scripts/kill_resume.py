"""SIGKILL ``canstyle train`` and ``canstyle train-sr`` at random moments, then resume them.

    python scripts/kill_resume.py [--trials 10] [--kills 2] [--seed 0] [--only can|sr] [--workdir DIR]

For each trainer it first runs one tiny training straight through (the reference, which also
times it). Each trial then starts a fresh run in its own --out and kills it with SIGKILL after
a random delay within the training time; ``--kills`` > 1 kills that many resumed processes
too. After about half the kills (at random) it cuts the metrics log's tail as a kill in the
middle of a write would: a metrics line newer than the newest checkpoint is cut at a random
byte, or else a cut-off line for the next step is appended. A last ``--resume`` must then
exit 0 with no traceback, end at the right step, in the same single run folder, with every
step logged exactly once, no temporary files left, and the same weights as the reference.

Writes ``summary.json`` in the work folder; exits 1 if any trial failed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from canstyle import runs

PY = [sys.executable, "-m", "canstyle"]
CAN_STEPS, SR_STEPS = 40, 60


@dataclass
class Spec:
    """How to start, resume and check one trainer on tiny settings."""

    kind: str
    steps: int
    fresh: list[str]
    resume: list[str]


@dataclass
class Tally:
    trials: int = 0
    kills: int = 0
    kills_before_first_checkpoint: int = 0
    kills_after_it_finished: int = 0
    kills_mid_checkpoint_write: int = 0
    partial_lines_from_kills: int = 0
    partial_lines_simulated: int = 0
    resumed_ok: int = 0
    exact: int = 0
    max_weight_diff: float = 0.0
    # the newest checkpoint's step after each kill (0: none yet; -1: the process had finished)
    kill_points: list[int] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def make_data(work: Path) -> tuple[Path, list[Path]]:
    """A tiny painting set (three styles), prepared as a CAN cache, and two SR images."""
    from canstyle.can.data import prepare

    rng = np.random.default_rng(0)
    src = work / "paintings"
    for k, style in enumerate(("Baroque", "Impressionism", "Ukiyo_e")):
        (src / style).mkdir(parents=True, exist_ok=True)
        for i in range(6):
            yy, xx = np.mgrid[0:96, 0:120]
            img = 60 * np.sin(xx * (0.05 + 0.2 * k) + i)[..., None] + rng.normal(128, 20, (96, 120, 3))
            Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(src / style / f"p{i}.png")
    prepare(src, work / "cache", size=96)
    images = []
    for i in range(2):
        small = rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)
        images.append(work / f"sr{i}.png")
        Image.fromarray(small).resize((80, 96), Image.BICUBIC).save(images[-1])
    return work / "cache", images


def specs(cache: Path, images: list[Path]) -> dict[str, Spec]:
    can = ["train", "--batch-size", "8", "--width", "0.25", "--n-samples", "4", "--seed", "3",
           "--log-every", "1", "--checkpoint-every", "15", "--sample-every", "10", "--keep-checkpoints", "2"]
    sr = ["train-sr", "--init", "photo", "--batch-size", "1", "--patch", "20", "--seed", "1",
          "--checkpoint-every", "20"]
    common = ["--precision", "fp32", "-q"]
    return {
        "can": Spec("can", CAN_STEPS, [*can, str(cache), "--steps", str(CAN_STEPS), *common],
                    ["train", "--resume", "--steps", str(CAN_STEPS), *common]),
        "sr": Spec("sr", SR_STEPS, [*sr, *map(str, images), "--steps", str(SR_STEPS), *common],
                   ["train-sr", "--resume", "--steps", str(SR_STEPS), *common]),
    }


def launch(args: list[str], out: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([*PY, *args, "--out", str(out)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def the_run(out: Path) -> Path | None:
    found = sorted(p for p in out.glob("[0-9]*") if p.is_dir())
    return found[-1] if found else None


def wait_until_training(proc: subprocess.Popen[str], out: Path, timeout: float = 120) -> None:
    """Until the fresh run has written its config.json: from then on there is a run to resume."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout and proc.poll() is None:
        run = the_run(out)
        if run is not None and (run / runs.CONFIG).exists():
            return
        time.sleep(0.005)


def wait_until_resumed(proc: subprocess.Popen[str], run: Path | None, timeout: float) -> None:
    """Until a resumed process has rewritten the metrics log (it does so just before training)."""
    path = run / runs.METRICS if run is not None else None
    if path is None or not path.exists():
        return
    before = path.stat().st_ino  # the rewrite is a rename: a new inode
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout and proc.poll() is None:
        if path.exists() and path.stat().st_ino != before:
            return
        time.sleep(0.005)


def calibrate(spec: Spec, work: Path, env: dict[str, str]) -> tuple[Path, float, float]:
    """Run once without a kill: the reference run, its start-up time (to config.json) and its
    training time (from there to the last checkpoint)."""
    out = work / spec.kind / "reference"
    t0 = time.monotonic()
    proc = launch(spec.fresh, out, env)
    wait_until_training(proc, out)
    t_ready = time.monotonic() - t0
    run = the_run(out)
    while proc.poll() is None and (run is None or newest_step(run) < spec.steps):
        time.sleep(0.005)
    t_train = time.monotonic() - t0 - t_ready
    _, err = proc.communicate(timeout=600)
    if proc.returncode != 0 or run is None:
        sys.exit(f"the {spec.kind} reference run failed:\n{err}")
    return run, t_ready, t_train


def has_partial_line(run: Path | None) -> bool:
    path = run / runs.METRICS if run is not None else None
    return path is not None and path.exists() and path.stat().st_size > 0 and not path.read_bytes().endswith(b"\n")


def newest_step(run: Path) -> int:
    found = runs.checkpoints(run)
    step = runs.checkpoint_step(found[-1]) if found else None
    return step or 0


def cut_metrics_tail(run: Path, rng: random.Random) -> bool:
    """Leave the metrics log as a kill in the middle of writing a line would."""
    path = run / runs.METRICS
    data = path.read_bytes() if path.exists() else b""
    if not data.endswith(b"\n"):
        return False  # empty, or the kill already cut a line
    lines = data.splitlines(keepends=True)
    last = json.loads(lines[-1])
    if last["step"] > newest_step(run):  # its checkpoint never came: it may be the one cut short
        path.write_bytes(b"".join(lines[:-1]) + lines[-1][: rng.randrange(1, len(lines[-1]))])
    else:  # the kill hit the next step's line
        nxt = json.dumps({**last, "step": last["step"] + 1}).encode()
        path.write_bytes(data + nxt[: rng.randrange(1, len(nxt))])
    return True


def kill_after(proc: subprocess.Popen[str], delay: float, out: Path, tally: Tally, rng: random.Random) -> None:
    cut_before = has_partial_line(the_run(out))  # a cut this script made, not yet truncated away
    time.sleep(delay)
    finished = proc.poll() is not None
    if finished:
        tally.kills_after_it_finished += 1
    else:
        proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    tally.kills += 1
    run = the_run(out)
    tally.kill_points.append(-1 if finished else newest_step(run) if run is not None else 0)
    if run is None:
        return
    if not runs.checkpoints(run):
        tally.kills_before_first_checkpoint += 1
    if list((run / runs.CHECKPOINTS).glob(".*.tmp")):
        tally.kills_mid_checkpoint_write += 1
    if has_partial_line(run):
        tally.partial_lines_from_kills += not cut_before
    elif rng.random() < 0.5 and cut_metrics_tail(run, rng):
        tally.partial_lines_simulated += 1


def weights(run: Path, kind: str) -> dict[str, torch.Tensor]:
    state = runs.load_checkpoint(runs.checkpoints(run)[-1])
    if kind == "sr":
        return state["model"]
    return {f"{part}.{k}": v for part in ("G", "D", "G_ema") for k, v in state[part].items()}


def check(spec: Spec, out: Path, err: str, code: int, reference: Path) -> tuple[list[str], float]:
    """What is wrong with a finished resumed run (nothing: []), and its largest weight difference."""
    problems = []
    if code != 0 or "Traceback" in err:
        problems.append(f"exit {code}: {err.strip()[-300:]}")
    folders = [p for p in out.iterdir() if p.is_dir()] if out.is_dir() else []
    if len(folders) != 1:
        problems.append(f"{len(folders)} run folders")
    run = the_run(out)
    if run is None or newest_step(run) != spec.steps:
        problems.append(f"final step {newest_step(run) if run else None}, wanted {spec.steps}")
        return problems, float("inf")
    steps = [r["step"] for r in runs.MetricsLog(run / runs.METRICS).records()]
    if steps != list(range(1, spec.steps + 1)):
        problems.append(f"metrics steps {steps}")
    if list(run.glob("**/.*.tmp")):
        problems.append("temporary files left")
    if spec.kind == "sr" and not (run / "model.safetensors").is_file():
        problems.append("no model.safetensors")
    a, b = weights(run, spec.kind), weights(reference, spec.kind)
    diff = max(float((a[k].float() - b[k].float()).abs().max()) for k in b)
    return problems, diff


def trial(spec: Spec, out: Path, times: tuple[float, float], kills: int, env: dict[str, str],
          reference: Path, tally: Tally, rng: random.Random) -> None:
    t_ready, t_train = times
    proc = launch(spec.fresh, out, env)
    wait_until_training(proc, out)
    kill_after(proc, rng.uniform(0, t_train), out, tally, rng)
    for _ in range(kills - 1):  # kill resumed processes too
        run = the_run(out)
        left = 1 - newest_step(run) / spec.steps if run is not None else 1
        proc = launch(spec.resume, out, env)
        if rng.random() < 1 / 3:  # during start-up, the metrics log's rewrite included
            delay = rng.uniform(0, t_ready)
        else:  # while it trains on
            wait_until_resumed(proc, run, 2 * t_ready)
            delay = rng.uniform(0, left * t_train)
        kill_after(proc, delay, out, tally, rng)
    proc = launch(spec.resume, out, env)
    _, err = proc.communicate(timeout=600)
    problems, diff = check(spec, out, err, proc.returncode, reference)
    tally.trials += 1
    tally.resumed_ok += not problems
    tally.exact += diff <= 1e-5
    tally.max_weight_diff = max(tally.max_weight_diff, diff)
    if problems:
        tally.failures.append(f"{out.name}: {'; '.join(problems)}")
    state = "ok" if not problems else "FAILED " + "; ".join(problems)
    print(f"{spec.kind} {out.name}: {state} (max weight diff {diff:.1e})", flush=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--trials", type=int, default=10, help="trials per trainer")
    p.add_argument("--kills", type=int, default=2, help="SIGKILLs per trial before the last resume")
    p.add_argument("--seed", type=int, default=0, help="seed of the kill delays and log cuts")
    p.add_argument("--only", choices=("can", "sr"), default=None, help="test one trainer")
    p.add_argument("--workdir", type=Path, default=None, help="kept; default: a temporary folder")
    a = p.parse_args()
    work = a.workdir or Path(tempfile.mkdtemp(prefix="kill-resume-"))
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CANSTYLE_HOME": str(work / "home"), "PYTHONUNBUFFERED": "1"}
    rng = random.Random(a.seed)
    summary: dict[str, dict] = {}
    for kind, spec in specs(*make_data(work)).items():
        if a.only and kind != a.only:
            continue
        reference, t_ready, t_train = calibrate(spec, work, env)
        print(f"{kind}: start-up {t_ready:.1f} s, {spec.steps} steps in {t_train:.1f} s", flush=True)
        tally = Tally()
        for i in range(a.trials):
            trial(spec, work / kind / f"trial-{i:02d}", (t_ready, t_train), a.kills, env, reference, tally, rng)
        summary[kind] = asdict(tally)
    (work / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps(summary, indent=1))
    if a.workdir is None:
        shutil.rmtree(work, ignore_errors=True)
    ok = all(t["resumed_ok"] == t["trials"] == t["exact"] for t in summary.values())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
