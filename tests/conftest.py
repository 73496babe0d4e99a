from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from tests.helpers import EXAMPLES, SHARED, make_app

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


@pytest.fixture(scope="module")
def module_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A private CANSTYLE_HOME shared by one module's tests; a module asks for it with
    ``pytestmark = pytest.mark.usefixtures("module_home")``."""
    home = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CANSTYLE_HOME", str(home))
        yield home


@pytest.fixture()
def isolated_home(tmp_path, monkeypatch):
    """A private CANSTYLE_HOME and torch hub dir for tests that write weights."""
    monkeypatch.setenv("CANSTYLE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    torch.hub.set_dir(str(tmp_path / "torch" / "hub"))
    yield tmp_path
    torch.hub.set_dir(os.path.join(os.environ.get("TORCH_HOME", ""), "hub"))


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The web studio's models folder: a tiny CAN (``tiny.safetensors``), a generator whose
    weights do not fit its config, and files never to list (another format, a pickle, junk)."""
    from safetensors.torch import save_file

    from canstyle.can.generate import save_generator
    from canstyle.can.models import Generator, ModelConfig

    d = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    cfg = ModelConfig(preset=64, n_classes=3, width=0.125)
    save_generator(Generator(cfg).state_dict(), cfg.to_json(), ["A", "B", "C"], d / "tiny.safetensors")
    other = ModelConfig(preset=128, n_classes=3, width=0.125)
    save_generator(Generator(other).state_dict(), cfg.to_json(), ["A", "B", "C"], d / "broken.safetensors")
    save_file({"w": torch.zeros(2)}, str(d / "notacan.safetensors"), metadata={"format": "other"})
    torch.save({"x": 1}, d / "pickle.pt")  # a pickle: must never be offered or loaded
    (d / "junk.safetensors").write_bytes(b"\xff" * 100)  # not safetensors at all: skipped, not a 500
    return d


@pytest.fixture()
def client(tmp_path: Path, models_dir: Path):  # type: ignore[no-untyped-def]
    """A TestClient on the studio (``make_app``) with its lifespan running, so jobs run."""
    from fastapi.testclient import TestClient

    with TestClient(make_app(tmp_path / "out", models_dir)) as c:
        yield c
