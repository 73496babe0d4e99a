"""Every command that writes outputs fails on one line, with exit code 2 and before any weights
or data load, when its output location cannot be written."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from canstyle.cli import main
from canstyle.errors import CanstyleError
from canstyle.fsutil import check_writable, check_writable_folder
from tests.helpers import EXAMPLES, assert_fails_cleanly

PHOTO = str(EXAMPLES / "giraffe.jpg")
Argv = Callable[[Path, Path], list[str]]  # (unwritable place, scratch folder) -> canstyle argv


def _modes_are_enforced() -> bool:
    """False for root (with CAP_DAC_OVERRIDE), who writes in read-only folders anyway."""
    import tempfile

    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return True
    with tempfile.TemporaryDirectory() as d:
        os.chmod(d, 0o500)
        try:
            return not os.access(d, os.W_OK)
        finally:
            os.chmod(d, 0o700)


def _style_folder(root: Path) -> Path:
    """Two tiny 'paintings' in each of two style folders (never read: the check comes first)."""
    rng = np.random.default_rng(0)
    for style in ("Baroque", "Ukiyo_e"):
        (root / style).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(root / style / f"p{i}.png")
    return root


def _checkpoint(root: Path) -> Path:
    ckpt = root / "run" / "checkpoints" / "step00000001.pt"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"not loaded: the output check comes first")
    return ckpt


def _can_generator() -> str:
    from canstyle.assets import __file__ as assets_init

    return str(Path(assets_init).parent / "can_default.safetensors")


COMMANDS: dict[str, Argv] = {
    "stylize": lambda bad, t: ["stylize", PHOTO, PHOTO, "-o", str(bad / "out.png")],
    "upscale": lambda bad, t: ["upscale", PHOTO, "-o", str(bad / "up")],
    "create": lambda bad, t: ["create", PHOTO, "-o", str(bad / "created")],
    "demo": lambda bad, t: ["demo", "-o", str(bad / "demo")],
    "generate": lambda bad, t: ["generate", _can_generator(), "-n", "2", "-o", str(bad / "gen")],
    "train": lambda bad, t: ["train", str(_style_folder(t / "art")), "--out", str(bad / "runs")],
    "train-sr": lambda bad, t: ["train-sr", PHOTO, "--out", str(bad / "runs")],
    "prepare-data": lambda bad, t: ["prepare-data", str(_style_folder(t / "art")), "-o", str(bad / "cache")],
    "export": lambda bad, t: ["export", str(_checkpoint(t)), "-o", str(bad / "g.safetensors")],
    "evaluate": lambda bad, t: ["evaluate", _can_generator(), "--data", str(_style_folder(t / "art")),
                                "--json", str(bad / "metrics.json")],
    "eval-sr": lambda bad, t: ["eval-sr", PHOTO, "--json", str(bad / "scores.json")],
    "serve": lambda bad, t: ["serve", "--output", str(bad / "studio"), "--port", "0"],
}


@pytest.fixture()
def loads(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[str]:
    """Records (and refuses) every weights or checkpoint load; the list must stay empty."""
    import safetensors.torch
    import torch

    from canstyle import weights

    monkeypatch.setenv("CANSTYLE_HOME", str(tmp_path / "home"))
    calls: list[str] = []

    def refuse(name: str) -> Callable[..., None]:
        def load(*args: object, **kwargs: object) -> None:
            calls.append(name)
            raise RuntimeError(f"{name} called before the output check")
        return load

    monkeypatch.setattr(torch, "load", refuse("torch.load"))
    monkeypatch.setattr(safetensors.torch, "load_file", refuse("safetensors.load_file"))
    monkeypatch.setattr(weights, "load_file", refuse("weights.load_file"))
    monkeypatch.setattr(weights, "load_weights", refuse("weights.load_weights"))
    return calls


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_output_under_a_file_fails_early(command: str, tmp_path: Path, loads: list[str],
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """A path whose parent is a regular file cannot be written, even by root."""
    blocker = tmp_path / "a-file"
    blocker.write_text("keep me")
    err = assert_fails_cleanly(capsys, COMMANDS[command](blocker, tmp_path), "is a file, not a folder")
    assert err.startswith("canstyle: error: "), err  # found by the command, not by argparse
    assert loads == [] and blocker.read_text() == "keep me"


@pytest.mark.skipif(not _modes_are_enforced(), reason="root writes in read-only folders")
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_output_in_a_read_only_folder_fails_early(command: str, tmp_path: Path, loads: list[str],
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        err = assert_fails_cleanly(capsys, COMMANDS[command](locked, tmp_path), f"cannot write in {locked}")
        assert err.startswith("canstyle: error: "), err
        assert loads == [] and list(locked.iterdir()) == []
    finally:
        locked.chmod(0o700)


def test_check_writable_folder(tmp_path: Path) -> None:
    assert check_writable_folder(tmp_path / "new" / "deeper") == tmp_path / "new" / "deeper"
    assert not (tmp_path / "new").exists()  # checking makes nothing
    (tmp_path / "f").write_text("x")
    with pytest.raises(CanstyleError, match="is a file, not a folder"):
        check_writable_folder(tmp_path / "f" / "sub")
    with pytest.raises(CanstyleError, match="is a file, not a folder, so .*out.png cannot be written"):
        check_writable(tmp_path / "f" / "out.png")


def test_resumed_run_is_checked_not_out(tmp_path: Path) -> None:
    """--resume RUN writes in RUN, wherever --out points."""
    from canstyle.runs import check_run_writable

    run = tmp_path / "elsewhere" / "00000-sr-cunet"
    run.mkdir(parents=True)
    (run / "config.json").write_text("{}")
    (tmp_path / "f").write_text("x")
    assert check_run_writable(tmp_path / "f" / "runs", str(run), "sr") == run
    with pytest.raises(CanstyleError, match="is a file"):
        check_run_writable(tmp_path / "f" / "runs", None, "sr")


def test_dry_run_needs_no_writable_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``train --dry-run`` writes nothing, so an unwritable --out is no reason to refuse it."""
    import canstyle.can.train

    (tmp_path / "f").write_text("x")
    seen: dict[str, object] = {}

    def fake_train(data: object, out: object, *args: object, **kwargs: object) -> None:
        seen.update(out=out, dry_run=kwargs.get("dry_run"))

    monkeypatch.setattr(canstyle.can.train, "train", fake_train)
    assert main(["train", str(tmp_path), "--out", str(tmp_path / "f" / "runs"), "--dry-run", "-q"]) == 0
    assert seen == {"out": str(tmp_path / "f" / "runs"), "dry_run": True}
