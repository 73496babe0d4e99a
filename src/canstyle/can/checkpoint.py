"""CAN checkpoints, on top of the run folders of ``canstyle.runs``.

A run lives in ``OUT/00003-can-64/`` with config.json, classes.json, metrics.jsonl, samples/
and checkpoints/ (see ``canstyle.runs``). A CAN checkpoint is tagged with ``FORMAT`` and holds
only tensors, numbers, strings and containers of them (the config as a JSON string), so it
loads with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from canstyle import runs
from canstyle.errors import CanstyleError

FORMAT = "canstyle-can-checkpoint/1"

# Kept here because generate, export, evaluate and the pipeline import them from this module.
checkpoints = runs.checkpoints
find_checkpoint = runs.find_checkpoint


def save_checkpoint(run: Path, step: int, state: dict[str, Any], keep: int) -> Path:
    return runs.save_checkpoint(run, step, {"format": FORMAT, **state}, keep)


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    if Path(path).suffix == ".safetensors":  # e.g. `export` given what export wrote
        raise CanstyleError(f"{path} is an exported generator, not a training checkpoint; "
                            "it can be used as it is (generate, create, evaluate)")
    state = runs.load_checkpoint(path)
    if state.get("format") != FORMAT:
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
