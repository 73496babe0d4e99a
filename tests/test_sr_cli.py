"""``canstyle upscale`` and ``canstyle eval-sr`` end to end, including bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from canstyle.cli import main
from canstyle.imageio import read_metadata
from canstyle.sr.data import list_images
from canstyle.sr.evaluate import make_lr, mod_crop, pil_to_tensor
from canstyle.sr.metrics import psnr_y
from tests.helpers import SHARED, assert_fails_cleanly, cli_help, truncated_weights

SET5 = SHARED / "sr-bench" / "Set5"
needs_set5 = pytest.mark.skipif(not SET5.is_dir(), reason=f"Set5 not found at {SET5} (../shared missing)")


pytestmark = pytest.mark.usefixtures("module_home")  # a private CANSTYLE_HOME


def painting(size: tuple[int, int], seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (size[1] // 8 + 1, size[0] // 8 + 1, 3), dtype=np.uint8)
    return Image.fromarray(small).resize(size, Image.BICUBIC)


@pytest.mark.e2e
def test_upscale_256_png_to_512_with_the_default_model(tmp_path: Path) -> None:
    painting((256, 256)).save(tmp_path / "art.png")
    assert main(["upscale", str(tmp_path / "art.png"), "-o", str(tmp_path / "out"), "-q"]) == 0
    out = tmp_path / "out" / "art_x2.png"
    with Image.open(out) as im:
        assert im.size == (512, 512) and im.mode == "RGB"
    meta = read_metadata(out)
    assert meta["command"] == "upscale" and meta["scale"] == 2 and meta["device"] == "cpu"


def test_grey_rgba_tiny_and_folder_inputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "in"
    src.mkdir()
    painting((20, 14)).convert("L").save(src / "grey.png")
    rgba = painting((18, 12), 1).convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize((18, 12)))
    rgba.save(src / "rgba.png")
    Image.new("RGB", (1, 1), (200, 30, 30)).save(src / "dot.png")
    argv = ["upscale", str(src), "-o", str(tmp_path / "out"), "--scale", "4", "--model", "photo",
            "--tile", "512", "-q"]
    assert main(argv) == 0
    with Image.open(tmp_path / "out" / "grey_x4.png") as im:
        assert (im.size, im.mode) == ((80, 56), "L")
    with Image.open(tmp_path / "out" / "rgba_x4.png") as im:
        assert (im.size, im.mode) == ((72, 48), "RGBA")
        alpha = np.asarray(im.getchannel("A"), dtype=np.float32)
        assert alpha[0].mean() < 40 and alpha[-1].mean() > 215  # the top-to-bottom gradient survived
    with Image.open(tmp_path / "out" / "dot_x4.png") as im:
        assert im.size == (4, 4)
        assert np.abs(np.asarray(im, dtype=np.float32) - [200, 30, 30]).max() < 12
    assert_fails_cleanly(capsys, argv, "exists")  # outputs exist: never overwritten silently


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["EMPTY"], "no images"),
        (["IMG", "--model", "nonesuch"], "unknown SR model"),
        (["IMG", "--tile", "-5"], "tile"),
        (["missing.png"], "no such file"),
        (["NOTIMG"], "not an image"),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                         args: list[str], message: str) -> None:
    (tmp_path / "empty").mkdir()
    painting((16, 16)).save(tmp_path / "img.png")
    (tmp_path / "notimg.png").write_text("hello")
    subst = {"EMPTY": tmp_path / "empty", "IMG": tmp_path / "img.png", "NOTIMG": tmp_path / "notimg.png",
             "missing.png": tmp_path / "missing.png"}
    argv = ["upscale", *[str(subst.get(a, a)) for a in args], "-o", str(tmp_path / "o"), "-q"]
    assert_fails_cleanly(capsys, argv, message)


def test_an_unsupported_output_format_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    painting((16, 16)).save(tmp_path / "img.png")
    for name in ("out.webp", "out.GIF"):
        argv = ["upscale", str(tmp_path / "img.png"), "-o", str(tmp_path / name), "-q"]
        assert_fails_cleanly(capsys, argv, "unsupported output format")
        assert not (tmp_path / name).exists()  # not made into a folder of PNGs


def test_outputs_never_land_on_inputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    painting((16, 16)).save(folder / "img.png")
    assert_fails_cleanly(capsys, ["upscale", str(folder), "-o", str(folder), "-q"], "is an input folder")
    assert_fails_cleanly(capsys, ["upscale", str(folder / "img.png"), "-o", str(folder / "img.png"),
                                  "--overwrite", "-q"], "is one of the input images")
    assert sorted(p.name for p in folder.iterdir()) == ["img.png"]


@pytest.mark.parametrize("command", ["upscale", "train-sr", "eval-sr"])
def test_help_works(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert "usage: canstyle " + command in cli_help(capsys, command)


def test_eval_sr_reports_model_and_bicubic(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for i in range(2):
        painting((48, 40), i).save(tmp_path / f"p{i}.png")
    report = tmp_path / "scores.json"
    assert main(["eval-sr", str(tmp_path), "--model", "photo", "--json", str(report)]) == 0
    out = capsys.readouterr().out
    assert "p0.png" in out and "p1.png" in out and "mean of 2" in out
    assert report.exists()


@needs_set5
def test_set5_bicubic_matches_the_published_protocol() -> None:
    # PIL bicubic down and up, PSNR on Y with 2 px shaved; the MATLAB-bicubic mean is 33.66 dB.
    scores = []
    for path in list_images([SET5]):
        hr = mod_crop(Image.open(path).convert("RGB"), 2)
        bic = make_lr(hr, 2).resize(hr.size, Image.BICUBIC)
        scores.append(psnr_y(pil_to_tensor(bic), pil_to_tensor(hr), shave=2))
    assert len(scores) == 5
    assert sum(scores) / 5 == pytest.approx(33.66, abs=0.1)


@needs_set5
def test_photo_model_on_a_set5_crop_beats_bicubic_by_4_db() -> None:
    from canstyle.sr.evaluate import center_crop, score_pair
    from canstyle.sr.upscaler import Upscaler

    hr = center_crop(Image.open(SET5 / "butterfly.png").convert("RGB"), 96)
    sr = Upscaler("photo", "cpu", "fp32")(pil_to_tensor(make_lr(hr, 2)))
    s = score_pair(hr, sr, 2, "butterfly")
    assert s.psnr > s.bicubic_psnr + 4.0


@pytest.mark.parametrize("command", ["upscale", "eval-sr"])
def test_truncated_weights_are_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                command: str) -> None:
    painting((24, 24)).save(tmp_path / "img.png")
    argv = [command, str(tmp_path / "img.png"), "--model", str(truncated_weights(tmp_path)), "-q"]
    assert_fails_cleanly(capsys, [*argv, *(["-o", str(tmp_path / "o")] if command == "upscale" else [])],
                         "trunc.safetensors")


def test_eval_sr_json_is_not_overwritten_silently(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    painting((48, 40)).save(tmp_path / "p0.png")
    report = tmp_path / "scores.json"
    report.write_text("keep me")
    argv = ["eval-sr", str(tmp_path / "p0.png"), "--sr-model", "photo", "--json", str(report)]
    assert_fails_cleanly(capsys, argv, "exists", stdout_lacks="p0.png")  # refused before scoring anything
    assert report.read_text() == "keep me"
    assert main([*argv, "--overwrite"]) == 0
    assert '"sr_model": "photo"' in report.read_text()


def test_a_bad_file_in_a_batch_fails_before_any_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "in"
    src.mkdir()
    painting((16, 16)).save(src / "a.png")
    (src / "b.png").write_text("not an image")
    assert_fails_cleanly(capsys, ["upscale", str(src), "-o", str(tmp_path / "out"), "--model", "photo", "-q"],
                         "not an image", "b.png")
    assert not (tmp_path / "out").exists()  # a_x2.png was not made


def test_eval_sr_api_reports_scores_and_progress(tmp_path: Path) -> None:
    from canstyle.progress import Progress
    from canstyle.sr.evaluate import evaluate

    paths = []
    for i in range(3):
        painting((40 + 8 * i, 32)).save(tmp_path / f"p{i}.png")
        paths.append(tmp_path / f"p{i}.png")
    rows: list = []
    seen: list[Progress] = []
    bicubic = lambda x: torch.nn.functional.interpolate(x, scale_factor=2, mode="bicubic")  # noqa: E731
    scores = evaluate(paths, bicubic, 2, on_image=rows.append, callback=seen.append)
    assert [s.name for s in scores] == ["p0.png", "p1.png", "p2.png"] and rows == scores
    assert [(p.stage, p.step, p.total) for p in seen] == [("eval-sr", k, 3) for k in (1, 2, 3)]
