from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
EXAMPLES = REPO / "examples"

if "OMP_NUM_THREADS" not in os.environ:  # respect an explicit thread budget (shared machines)
    torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not (SHARED / "README.md").exists():
        pytest.skip(f"shared data not found at {SHARED} (it sits beside the clone in CI)")
    return SHARED


@pytest.fixture(scope="session")
def vgg16_engine():
    from canstyle.nst.stylize import StyleTransfer

    return StyleTransfer("vgg16", "cpu", "auto")


@pytest.fixture(scope="session")
def example_images():
    from canstyle.imageio import load_rgb

    return load_rgb(EXAMPLES / "giraffe.jpg"), load_rgb(EXAMPLES / "starry_night.jpg")


@pytest.fixture()
def isolated_home(tmp_path, monkeypatch):
    """A private CANSTYLE_HOME and torch hub dir for tests that write weights."""
    monkeypatch.setenv("CANSTYLE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    torch.hub.set_dir(str(tmp_path / "torch" / "hub"))
    yield tmp_path
    torch.hub.set_dir(os.path.join(os.environ.get("TORCH_HOME", ""), "hub"))
