"""Fine-tuning: a few real steps, checkpoints, exact resume, and the exported weights."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from canstyle.cli import main
from canstyle.errors import CanstyleError
from canstyle.sr.data import make_pairs, random_crops
from canstyle.sr.train import TrainOptions, train
from canstyle.sr.upscaler import Upscaler
from canstyle.sr.zoo import load_model
from tests.helpers import assert_fails_cleanly, truncated_weights

pytestmark = pytest.mark.usefixtures("module_home")  # a private CANSTYLE_HOME


@pytest.fixture
def images(tmp_path: Path) -> list[Path]:
    rng = np.random.default_rng(0)
    paths = []
    for i in range(2):
        small = rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)
        path = tmp_path / f"p{i}.png"
        Image.fromarray(small).resize((80, 96), Image.BICUBIC).save(path)
        paths.append(path)
    return paths


OPTS = {"steps": 5, "init": "photo", "batch_size": 1, "patch": 20, "checkpoint_every": 3}


class Stop(Exception):
    pass


def _losses(run: Path) -> list[float]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [json.loads(ln)["loss"] for ln in lines]


def test_five_steps_then_an_interrupted_run_resumes_exactly(images: list[Path], tmp_path: Path) -> None:
    model = train(images, tmp_path / "a", TrainOptions(**OPTS), device="cpu", precision="fp32", seed=3)
    run_a = model.parent
    assert run_a.name == "00000-sr-photo"
    assert sorted(p.name for p in (run_a / "checkpoints").iterdir()) == ["step00000003.pt", "step00000005.pt"]
    assert len(_losses(run_a)) == 5

    def interrupt(p) -> None:  # type: ignore[no-untyped-def]
        if p.step == 4:
            raise Stop  # after step 4 is logged but before any checkpoint holds it

    with pytest.raises(Stop):
        train(images, tmp_path / "b", TrainOptions(**OPTS), device="cpu", precision="fp32", seed=3,
              callback=interrupt)
    resumed = train(images, tmp_path / "b", TrainOptions(**OPTS), resume="latest", device="cpu",
                    precision="fp32")
    assert resumed.parent.name == "00000-sr-photo"  # the same run, continued from step 3
    assert _losses(resumed.parent) == pytest.approx(_losses(run_a), rel=1e-5)
    a, b = load_model(str(model)), load_model(str(resumed))
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        torch.testing.assert_close(va, vb, atol=1e-6, rtol=1e-5, msg=k)
    pretrained = load_model("photo").state_dict()["up.weight"]
    assert not torch.equal(a.state_dict()["up.weight"], pretrained)  # it did learn something
    assert Upscaler(str(model), "cpu", "fp32")(torch.rand(1, 3, 6, 5)).shape == (1, 3, 12, 10)


def test_train_sr_cli_resumes_to_more_steps(images: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "runs"
    base = ["train-sr", *map(str, images), "--out", str(out), "--init", "photo", "--batch-size", "1",
            "--patch", "20", "--precision", "fp32", "--seed", "1", "-q"]
    assert main([*base, "--steps", "2"]) == 0
    assert main(["train-sr", "--out", str(out), "--steps", "4", "--resume", "-q"]) == 0
    run = out / "00000-sr-photo"
    assert [json.loads(ln)["step"] for ln in (run / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3, 4]
    assert json.loads((run / "config.json").read_text())["options"]["patch"] == 20


def test_pairs_align_lr_and_hr() -> None:
    hr = random_crops([torch.randint(0, 256, (3, 50, 40), dtype=torch.uint8)], 3, 32,
                      torch.Generator().manual_seed(0))
    lr, target = make_pairs(hr, offset=7)
    assert lr.shape == (3, 3, 16, 16) and target.shape == (3, 3, 4, 4)
    assert torch.equal(lr, lr.mul(255).round().div(255))  # LR is 8-bit like a real image


def test_bad_training_setups_are_user_errors(images: list[Path], tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(CanstyleError, match="patch"):
        train(images, tmp_path, TrainOptions(**{**OPTS, "patch": 14}), device="cpu")
    with pytest.raises(CanstyleError, match="at least"):
        train(images, tmp_path, TrainOptions(**{**OPTS, "patch": 64}), device="cpu")
    with pytest.raises(CanstyleError, match="no SR run"):
        train(images, tmp_path / "none", TrainOptions(**OPTS), resume="latest")
    assert_fails_cleanly(capsys, ["train-sr", "--out", str(tmp_path / "x")], "give training images")
    assert_fails_cleanly(capsys, ["train-sr", str(images[0]), "--init", "bogus", "--out", str(tmp_path)],
                         "unknown SR model 'bogus'")


def test_bad_train_sr_flags_fail_before_making_a_run_folder(images: list[Path], tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "text.png").write_text("not an image")
    Image.new("RGB", (12, 12)).save(tmp_path / "tiny.png")
    out = tmp_path / "runs"
    base = ["train-sr", *map(str, images), "--out", str(out), "--init", "photo", "--batch-size", "1",
            "--patch", "20", "--steps", "1", "-q"]
    for flags, message in [(["--val", str(tmp_path / "text.png")], "not an image"),
                           (["--val", str(tmp_path / "tiny.png")], "too small"),
                           (["--val", str(images[0]), "--val-crop", "-1"], "--val-crop"),
                           (["--init", str(truncated_weights(tmp_path)), "--patch", "40"], "trunc.safetensors"),
                           (["--lr", "inf"], "--lr"), (["--lr", "nan"], "--lr"),
                           (["--seed", "99999999999999999999"], "--seed")]:
        assert_fails_cleanly(capsys, [*base, *flags], message)
        assert not out.exists() or not any(out.iterdir()), flags


def test_resuming_a_can_checkpoint_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "runs" / "00000-can-64"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"images": 6, "preset": 64}))
    ckpt = run / "checkpoints" / "step00000006.pt"
    ckpt.write_bytes(b"not read")
    assert_fails_cleanly(capsys, ["train-sr", "--resume", str(ckpt), "--out", str(tmp_path / "runs")],
                         "not a train-sr run or checkpoint")


def _steps(run: Path) -> list[int]:
    return [json.loads(ln)["step"] for ln in (run / "metrics.jsonl").read_text().splitlines()]


def test_resume_after_a_kill_in_the_middle_of_a_metrics_line(images: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "runs"
    base = ["train-sr", *map(str, images), "--out", str(out), "--init", "photo", "--batch-size", "1",
            "--patch", "20", "--precision", "fp32", "--seed", "1", "--checkpoint-every", "3", "-q"]
    assert main([*base, "--steps", "4"]) == 0
    run = out / "00000-sr-photo"
    (run / "checkpoints" / "step00000004.pt").unlink()  # the kill came before step 4's checkpoint
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"step": 5, "loss": 0.0')  # ... and in the middle of a metrics line
    assert main(["train-sr", "--out", str(out), "--steps", "5", "--resume", "-q"]) == 0
    assert _steps(run) == [1, 2, 3, 4, 5]


def test_an_old_sr_run_layout_still_resumes(images: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "runs"
    opts = {**OPTS, "steps": 5}
    train(images, out, TrainOptions(**opts), device="cpu", precision="fp32", seed=3)
    old = out / "00001-sr-photo"  # SR used to count from 00001 and name checkpoints step-NNNNNN.pt
    (out / "00000-sr-photo").rename(old)
    for p in (old / "checkpoints").iterdir():
        p.rename(p.with_name(f"step-{int(p.name[4:12]):06d}.pt"))
    model = train(images, out, TrainOptions(**{**opts, "steps": 7}), resume="latest", device="cpu",
                  precision="fp32")
    assert model.parent == old and _steps(old) == list(range(1, 8))
    assert sorted(p.name for p in (old / "checkpoints").iterdir()) == ["step00000006.pt", "step00000007.pt"]  # old names rotated too
    fresh = train(images, out, TrainOptions(**{**opts, "steps": 1}), device="cpu", precision="fp32")
    assert fresh.parent.name == "00002-sr-photo"


def test_a_run_killed_before_its_first_checkpoint_restarts(images: list[Path], tmp_path: Path) -> None:
    opts = TrainOptions(**{**OPTS, "checkpoint_every": 100})
    straight = train(images, tmp_path / "a", opts, device="cpu", precision="fp32", seed=5)

    def interrupt(p) -> None:  # type: ignore[no-untyped-def]
        if p.step == 2:
            raise Stop

    with pytest.raises(Stop):
        train(images, tmp_path / "b", opts, device="cpu", precision="fp32", seed=5, callback=interrupt)
    run = tmp_path / "b" / "00000-sr-photo"
    assert not (run / "checkpoints").exists() and _steps(run) == [1, 2]
    resumed = train(images, tmp_path / "b", opts, resume="latest", device="cpu", precision="fp32")
    assert resumed.parent == run  # the same folder, from step 0 with the run's own seed
    assert _losses(run) == pytest.approx(_losses(straight.parent), rel=1e-5)
