"""The whole pipeline (CAN -> SR -> NST): API, ``create``/``demo`` CLI, run.json, bad input.

Everything runs on a tiny random CAN generator (width 1/8) at tiny sizes, with the
real SR and VGG16 weights, so the whole file takes well under a minute.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from canstyle.can.generate import save_generator
from canstyle.can.models import Generator, ModelConfig
from canstyle.cli import main
from canstyle.errors import CanstyleError
from canstyle.imageio import load_rgb, read_metadata
from canstyle.imageops import contact_sheet
from canstyle.pipeline import Pipeline, sr_passes
from canstyle.progress import Progress
from tests.helpers import assert_fails_cleanly, cli_help, save_tiny_can

# Tiny NST: one 64 px scale, a few L-BFGS steps.
FAST = ["--size", "64", "--min-scale", "64", "--iterations", "4", "--features", "vgg16", "--quiet"]


@pytest.fixture(scope="module")
def tiny_can(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_can(tmp_path_factory.mktemp("can") / "tiny.safetensors")


@pytest.fixture(scope="module")
def photo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    y, x = np.mgrid[0:60, 0:90]
    rgb = np.stack([x * 2.8, y * 4.2, (x + y) % 40 * 6], -1).astype(np.uint8)
    path = tmp_path_factory.mktemp("photo") / "photo.png"
    Image.fromarray(rgb).save(path)
    return path


@pytest.fixture(scope="module")
def pipe(tiny_can: Path) -> Pipeline:
    return Pipeline.from_checkpoint(tiny_can, features="vgg16", device="cpu")


def test_sr_passes() -> None:
    assert [sr_passes(64, t) for t in (32, 64, 65, 128, 500, 512, 513)] == [0, 0, 1, 1, 3, 3, 4]
    assert sr_passes(256, 512) == 1  # the paper: 256 -> 512 with one x2 pass


def test_paint_upscales_to_the_style_size(pipe: Pipeline) -> None:
    art = pipe.paint(3, style_size=200)
    assert art.art.shape == (1, 3, 64, 64) and art.style.shape == (1, 3, 200, 200)
    assert art.sr_factor == 4 and art.style.min() >= 0 and art.style.max() <= 1
    # The style is this painting enlarged, not another one. Compared at 16 px: the denoising SR
    # model smooths the tiny random CAN's pixel noise away, but keeps the painting's layout.
    def pool(x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.interpolate(x, size=(16, 16), mode="area")

    other = pipe.paint(4, style_size=64).art
    mine, theirs = (pool(art.style) - pool(art.art)).abs().mean(), (pool(art.style) - pool(other)).abs().mean()
    assert mine < 0.6 * theirs, (mine, theirs)


def test_call_is_seeded_and_reports_every_stage(pipe: Pipeline, photo: Path) -> None:
    content = load_rgb(photo)
    stages: list[str] = []

    def cb(p: Progress) -> None:
        stages.append(p.stage)

    kw = {"size": 64, "min_scale": 64, "iterations": 3}
    a = pipe(content, generator=torch.Generator().manual_seed(1), callback=cb, style_size=128, **kw)
    b = pipe(content, generator=torch.Generator().manual_seed(1), style_size=128, **kw)
    assert a.artwork.seed == b.artwork.seed
    assert torch.equal(a.artwork.art, b.artwork.art) and torch.equal(a.images[0], b.images[0])
    assert a.images[0].shape == (1, 3, 43, 64)
    assert stages[0] == "generate" and "upscale" in stages and stages[-1] == "stylize"
    c = pipe([content, content], art_seed=a.artwork.seed + 1, **kw)
    assert len(c.images) == 2 and not torch.equal(c.artwork.art, a.artwork.art)


def test_create_writes_everything(tiny_can: Path, photo: Path, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    argv = ["create", str(photo), "-o", str(out), "--checkpoint", str(tiny_can), "--art-seed", "7",
            "--n-arts", "2", "--seed", "3", "--style-size", "128", *FAST]
    assert main(argv) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["art_seed0007.png", "art_seed0007_x2.png", "art_seed0008.png", "art_seed0008_x2.png",
                     "contact_sheet.jpg", "photo_seed0007.png", "photo_seed0008.png", "run.json"]
    run = json.loads((out / "run.json").read_text())
    assert run["art_seeds"] == [7, 8] and run["seed"] == 3 and run["preset"] == 64
    assert run["stylize"]["iterations"] == 4 and run["sr_factor"] == 2
    assert set(run["weights"]) == {"can", "sr", "features"}
    assert all(len(w["sha256"]) == 64 for w in run["weights"].values())
    assert {"load", "paint", "stylize", "total"} <= set(run["timing"])
    meta = read_metadata(out / "photo_seed0008.png")
    assert meta["art_seed"] == 8 and meta["seed"] == 3 and meta["stage"] == "stylize"
    assert read_metadata(out / "art_seed0007.png")["stage"] == "can"
    assert Image.open(out / "art_seed0007_x2.png").size == (128, 128)
    # Nothing is overwritten silently.
    assert_fails_cleanly(capsys, argv, "exists")
    assert main([*argv, "--overwrite"]) == 0


def test_create_names_a_painting_used_without_sr_by_its_size(tiny_can: Path, photo: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert main(["create", str(photo), "-o", str(out), "--checkpoint", str(tiny_can), "--art-seed", "7",
                 "--style-size", "48", *FAST]) == 0
    assert json.loads((out / "run.json").read_text())["sr_factor"] == 1
    assert Image.open(out / "art_seed0007_48px.png").size == (48, 48)  # not "_x1": it was made smaller


def test_seeds_in_run_json_reproduce_the_art(tiny_can: Path, photo: Path, tmp_path: Path) -> None:
    first = tmp_path / "first"
    assert main(["create", str(photo), "-o", str(first), "--checkpoint", str(tiny_can), *FAST]) == 0
    run = json.loads((first / "run.json").read_text())  # the seeds were random
    again = tmp_path / "again"
    assert main(["create", str(photo), "-o", str(again), "--checkpoint", str(tiny_can), *FAST,
                 "--art-seed", str(run["art_seeds"][0]), "--seed", str(run["seed"])]) == 0
    s = run["art_seeds"][0]
    style = next(p.name for p in first.glob(f"art_seed{s:04d}_*.png"))
    for name in (f"art_seed{s:04d}.png", style, f"photo_seed{s:04d}.png"):
        assert np.array_equal(np.asarray(Image.open(first / name)), np.asarray(Image.open(again / name))), name


def test_create_with_a_training_run_and_its_export(photo: Path, tmp_path: Path) -> None:
    from canstyle.can.data import prepare
    from canstyle.can.generate import export_generator
    from canstyle.can.train import TrainOptions, train
    from tests.helpers import make_folders

    prepare(make_folders(tmp_path / "src", per_style=3), tmp_path / "cache", size=64)
    opts = TrainOptions(steps=2, batch_size=4, width=0.125, n_samples=4, checkpoint_every=2, sample_every=2)
    res = train(str(tmp_path / "cache"), str(tmp_path / "runs"), opts, precision="fp32", seed=1)
    assert res.run_dir is not None
    exported = export_generator(res.run_dir, tmp_path / "g.safetensors")
    ckpt = next((res.run_dir / "checkpoints").iterdir())
    outs = []
    for i, src in enumerate([res.run_dir, ckpt, exported]):
        out = tmp_path / f"o{i}"
        assert main(["create", str(photo), "-o", str(out), "--checkpoint", str(src), "--art-seed", "2",
                     "--seed", "0", *FAST]) == 0
        outs.append(np.asarray(Image.open(out / "art_seed0002.png")))
    assert np.array_equal(outs[0], outs[1]) and np.array_equal(outs[1], outs[2])


def test_bad_input(tiny_can: Path, photo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = str(tmp_path / "o")
    err = assert_fails_cleanly(capsys, ["create", str(photo), "-o", out, "--checkpoint", str(tmp_path / "nope.pt"), *FAST])
    assert "no such checkpoint" in err
    err = assert_fails_cleanly(capsys, ["create", str(photo), "-o", out, "--checkpoint", str(tiny_can), "--art-size", "256", *FAST])
    assert "preset-64" in err and "--art-size 256" in err
    text = tmp_path / "notes.jpg"
    text.write_text("not a photo")
    err = assert_fails_cleanly(capsys, ["create", str(text), "-o", out, "--checkpoint", str(tiny_can), *FAST])
    assert "not an image" in err
    # A generator file whose weights belong to another preset.
    other = ModelConfig(preset=128, n_classes=3, width=0.125)
    wrong = save_generator(Generator(other).state_dict(), ModelConfig(preset=64, n_classes=3, width=0.125).to_json(),
                           ["A", "B", "C"], tmp_path / "wrong.safetensors")
    err = assert_fails_cleanly(capsys, ["create", str(photo), "-o", out, "--checkpoint", str(wrong), *FAST])
    assert "do not match" in err
    # SR weights are not a CAN.
    from canstyle.assets import DEFAULT_CAN

    sr_asset = DEFAULT_CAN.with_name("sr_cunet_art.safetensors")
    err = assert_fails_cleanly(capsys, ["create", str(photo), "-o", out, "--checkpoint", str(sr_asset), *FAST])
    assert "not a canstyle CAN generator" in err
    assert not Path(out).exists() or not any(Path(out).iterdir())


def test_demo_uses_the_embedded_can(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from canstyle.demo_cli import DEMO_ART_SEED

    out = tmp_path / "demo"
    assert main(["demo", "-o", str(out), *FAST]) == 0
    assert str(out) in capsys.readouterr().out  # it says where the results are
    run = json.loads((out / "run.json").read_text())
    assert run["checkpoint"].endswith("can_default.safetensors") and run["art_seeds"] == [DEMO_ART_SEED]
    assert {Path(c).name for c in run["contents"]} == {"astronaut.jpg", "chelsea.jpg"}
    seed = f"seed{DEMO_ART_SEED:04d}"
    assert (out / f"astronaut_{seed}.png").exists() and (out / f"chelsea_{seed}.png").exists()


def test_demo_help_shows_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    from canstyle.demo_cli import DEMO_ART_SEED

    text = cli_help(capsys, "demo")
    assert "--art-seed" in text and f"(default: {DEMO_ART_SEED})" in text and "--checkpoint" in text


def test_contact_sheet_layout() -> None:
    rows = [[torch.zeros(1, 3, 10, 20), torch.ones(1, 3, 30, 30)], [torch.full((1, 3, 5, 5), 0.5)]]
    sheet = contact_sheet(rows, height=20, pad=2)
    assert sheet.shape == (1, 3, 2 * 22 + 2, 2 + 40 + 2 + 20 + 2)
    assert sheet[0, :, 2:22, 2:42].max() == 0 and sheet[0, :, 24:44, 2:22].sub(0.5).abs().max() < 1e-6


def test_api_reproduces_from_the_returned_seed_and_ignores_photo_order(pipe: Pipeline, photo: Path) -> None:
    content = load_rgb(photo)
    kw = {"size": 64, "min_scale": 64, "iterations": 3}
    a = pipe([content, content], generator=torch.Generator().manual_seed(4), **kw)
    assert torch.equal(a.images[0], a.images[1])  # same photo, same state: same result
    b = pipe(content, art_seed=a.artwork.seed, generator=torch.Generator().manual_seed(4), **kw)
    assert torch.equal(a.artwork.art, b.artwork.art) and torch.equal(a.images[0], b.images[0])
    with pytest.raises(CanstyleError, match="pooling"):
        pipe(content, art_seed=1, pooling="avg", **kw)


def test_a_photo_called_art_does_not_replace_the_painting(tiny_can: Path, photo: Path, tmp_path: Path) -> None:
    art = tmp_path / "art.png"
    art.write_bytes(photo.read_bytes())
    out = tmp_path / "o"
    assert main(["create", str(art), str(photo), "-o", str(out), "--checkpoint", str(tiny_can),
                 "--art-seed", "5", "--seed", "0", *FAST]) == 0
    assert (out / "art-2_seed0005.png").exists() and (out / "photo_seed0005.png").exists()
    assert read_metadata(out / "art_seed0005.png")["stage"] == "can"


def test_more_bad_input_fails_before_writing(tiny_can: Path, photo: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "o"
    thin = tmp_path / "thin.png"
    Image.new("RGB", (90, 4)).save(thin)
    base = ["--checkpoint", str(tiny_can), *FAST]
    assert_fails_cleanly(capsys, ["create", str(photo), str(thin), "-o", str(out), *base], "too thin")
    assert not out.exists()  # nothing half-written
    assert_fails_cleanly(capsys, ["create", str(photo), "-o", str(out), "--seed", str(2**64), *base], "--seed")
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert_fails_cleanly(capsys, ["create", str(photo), "-o", str(afile / "sub"), *base], "is a file")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\xff" * 64)
    assert_fails_cleanly(capsys, ["create", str(photo), "-o", str(out), "--checkpoint", str(junk), *FAST],
                         "not a safetensors file")


def test_bad_stylize_options_and_seeds_fail_before_painting(tiny_can: Path, photo: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "o"
    base = ["create", str(photo), "-o", str(out), "--checkpoint", str(tiny_can), *FAST]
    assert_fails_cleanly(capsys, [*base, "--optimizer", "adam", "--lr", "-1"], "--lr")
    assert_fails_cleanly(capsys, [*base, "--content-weight", "nan"], "--content-weight")
    assert_fails_cleanly(capsys, [*base, "--style-size", "100000"], "--style-size")
    assert_fails_cleanly(capsys, [*base, "--truncation", "nan"], "--truncation")
    assert_fails_cleanly(capsys, [*base, "--size", "100000"], "--size")
    assert_fails_cleanly(capsys, [*base, "--art-seed", str(2**63)], "--art-seed")
    assert_fails_cleanly(capsys, [*base, "--art-seed", str(2**63 - 1), "--n-arts", "2"], "--art-seed")
    assert not out.exists()  # no art_seed files left behind
