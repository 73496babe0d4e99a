"""The Pipeline as assembled parts: a CAN generator, an SR upscaler and a VGG engine.

A pipeline built from parts must paint exactly what ``from_checkpoint`` paints; swapping the
CAN must reuse the same SR and VGG objects; the studio keeps one engine for every CAN.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from canstyle.can.generate import CanGenerator
from canstyle.errors import CanstyleError
from canstyle.pipeline import CAN_SR_MODEL, Pipeline
from canstyle.progress import Progress
from tests.helpers import save_tiny_can


@pytest.fixture(scope="module")
def cans(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("cans")
    return save_tiny_can(d / "one.safetensors", 0), save_tiny_can(d / "two.safetensors", 1)


@pytest.fixture(scope="module")
def pipe(cans: tuple[Path, Path]) -> Pipeline:
    return Pipeline.from_checkpoint(cans[0], features="vgg16", device="cpu", precision="fp32")


def test_parts_paint_what_from_checkpoint_paints(pipe: Pipeline, cans: tuple[Path, Path]) -> None:
    from canstyle.nst.stylize import StyleTransfer
    from canstyle.sr.upscaler import Upscaler

    built = Pipeline(generator=CanGenerator.load(cans[0]), upscaler=Upscaler(CAN_SR_MODEL, "cpu", "fp32"),
                     engine=StyleTransfer("vgg16", "cpu", "fp32"))
    photo = torch.rand(1, 3, 48, 64, generator=torch.Generator().manual_seed(3))
    kw = {"art_seed": 5, "size": 64, "min_scale": 64, "iterations": 3, "style_size": 128}
    a = pipe(photo, generator=torch.Generator().manual_seed(0), **kw)
    b = built(photo, generator=torch.Generator().manual_seed(0), **kw)
    assert torch.equal(a.artwork.art, b.artwork.art) and torch.equal(a.artwork.style, b.artwork.style)
    assert torch.allclose(a.images[0], b.images[0], atol=1e-6)


def test_with_generator_swaps_the_can_and_shares_sr_and_vgg(pipe: Pipeline, cans: tuple[Path, Path]) -> None:
    other = pipe.with_generator(CanGenerator.load(cans[1]))
    assert other.engine is pipe.engine and other.upscaler is pipe.upscaler
    assert other.checkpoint == cans[1] and pipe.checkpoint == cans[0]
    a, b = pipe.paint(7, style_size=64), other.paint(7, style_size=64)
    assert (a.art - b.art).abs().mean() > 0.02  # another CAN, another painting for the same seed
    assert torch.equal(pipe.paint(7, style_size=64).art, a.art)  # the first pipeline is untouched


def test_generate_reports_progress_like_every_long_call(pipe: Pipeline) -> None:
    seen: list[Progress] = []
    images = pipe.generator(list(range(5)), batch=2, callback=seen.append)
    assert images.shape == (5, 3, 64, 64)
    assert [(p.stage, p.step, p.total) for p in seen] == [("generate", 2, 5), ("generate", 4, 5), ("generate", 5, 5)]


def test_options_are_typed_and_checked(pipe: Pipeline) -> None:
    from canstyle.nst.plan import StylizeOptions

    with pytest.raises(TypeError, match="no_such_knob"):
        pipe(torch.rand(1, 3, 32, 32), art_seed=1, no_such_knob=3)
    with pytest.raises(CanstyleError):
        pipe(torch.rand(1, 3, 32, 32), art_seed=1, options=StylizeOptions(size=64), lr=-1.0)
    with pytest.raises(TypeError, match="Pipeline needs a generator"):
        pipe.with_generator(None)  # type: ignore[arg-type]
    art = pipe.paint(1, 64)
    with pytest.raises(CanstyleError, match="art_seed or artwork, not both"):
        pipe(torch.rand(1, 3, 32, 32), art_seed=2, artwork=art)


def test_studio_keeps_one_engine_and_upscaler_for_every_can(tmp_path: Path, cans: tuple[Path, Path],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    import canstyle.nst.stylize as stylize_mod
    import canstyle.sr.upscaler as upscaler_mod
    from canstyle.web.studio import Studio

    built = {"engine": 0, "upscaler": 0}

    def counting(cls: type, key: str) -> type:
        class Counted(cls):  # type: ignore[misc, valid-type]
            def __init__(self, *a: object, **k: object) -> None:
                built[key] += 1
                super().__init__(*a, **k)
        return Counted

    monkeypatch.setattr(stylize_mod, "StyleTransfer", counting(stylize_mod.StyleTransfer, "engine"))
    monkeypatch.setattr(upscaler_mod, "Upscaler", counting(upscaler_mod.Upscaler, "upscaler"))
    models = tmp_path / "models"
    models.mkdir()
    for p in cans:
        (models / p.name).write_bytes(p.read_bytes())
    studio = Studio(tmp_path / "out", models, features="vgg16", device="cpu", precision="fp32")
    pipes = [studio._pipeline(studio.model(m)) for m in ("one.safetensors", "two.safetensors", "default",
                                                         "one.safetensors")]
    assert built == {"engine": 1, "upscaler": 1}  # four jobs over three CANs: one VGG, one SR
    assert len({id(p.engine) for p in pipes}) == 1 and len({id(p.upscaler) for p in pipes}) == 1
    assert pipes[0].generator is pipes[3].generator  # a CAN used again is not loaded again
    assert pipes[0].checkpoint != pipes[1].checkpoint


def test_one_shot_functions_keep_only_their_last_model(cans: tuple[Path, Path]) -> None:
    import canstyle
    from canstyle import oneshot

    oneshot.forget()
    a = canstyle.generate([3, 4], cans[0], device="cpu")
    assert torch.equal(a, CanGenerator.load(cans[0])([3, 4]))
    kept = oneshot._LAST["generate"][1]
    canstyle.generate([5], cans[0], device="cpu")
    assert oneshot._LAST["generate"][1] is kept  # the same settings reuse the model
    b = canstyle.generate([3, 4], cans[1], device="cpu")
    assert oneshot._LAST["generate"][1] is not kept and not torch.equal(a, b)  # replaced, not added
    assert list(oneshot._LAST) == ["generate"]
    up = canstyle.upscale(a[:1], 2, sr_model="photo", device="cpu", precision="fp32")
    assert up.shape[-1] == 128 and set(oneshot._LAST) == {"generate", "upscale"}
    oneshot.forget()


def test_one_shot_generate_notices_a_replaced_file(cans: tuple[Path, Path], tmp_path: Path) -> None:
    import os

    import canstyle
    from canstyle import oneshot

    path = tmp_path / "can.safetensors"
    path.write_bytes(cans[0].read_bytes())
    a = canstyle.generate([3], path, device="cpu")
    path.write_bytes(cans[1].read_bytes())  # e.g. a newer export under the same name
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    b = canstyle.generate([3], path, device="cpu")
    assert torch.equal(b, CanGenerator.load(cans[1])([3])) and not torch.equal(a, b)
    assert CanGenerator.load(cans[0], "auto").model is not None  # "auto" works like everywhere else
    oneshot.forget()
