"""Guards a user trips over: --overwrite never replaces an input, -o that names an image where a
folder is written, a capped --style-scale, -v after the command, a file as CANSTYLE_HOME,
transparency in a JPEG, and the same image suffixes for every folder input."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from canstyle.cli import main
from tests.helpers import EXAMPLES, assert_fails_cleanly

STYLE = str(EXAMPLES / "starry_night.jpg")


def _photo(path: Path, size: tuple[int, int] = (48, 40), mode: str = "RGB") -> Path:
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 255, (size[1], size[0], len(mode)), dtype=np.uint8)
    Image.fromarray(arr, mode).save(path)
    return path


def test_overwrite_never_replaces_an_input(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    photo = _photo(tmp_path / "me.png")
    before = photo.read_bytes()
    (tmp_path / "link.png").symlink_to(photo)
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    for out in (photo, Path("../me.png"), tmp_path / "link.png"):  # the same file, spelt three ways
        assert_fails_cleanly(capsys, ["stylize", str(photo), STYLE, "-o", str(out), "--overwrite"],
                             "is one of the input images")
    style_copy = tmp_path / "style.jpg"
    style_copy.write_bytes(Path(STYLE).read_bytes())
    assert_fails_cleanly(capsys, ["stylize", str(photo), str(style_copy), "-o", str(style_copy), "--overwrite"],
                         "is one of the input images")
    assert photo.read_bytes() == before


def test_create_refuses_to_paint_over_its_photo(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    photo = _photo(tmp_path / "art_seed0007.png")  # the name create gives the CAN art of seed 7
    assert_fails_cleanly(capsys, ["create", str(photo), "-o", str(tmp_path), "--art-seed", "7", "--overwrite"],
                         "is one of the input images")


@pytest.mark.parametrize("command", [["generate", "-n", "1"], ["create", str(EXAMPLES / "giraffe.jpg")]])
def test_an_image_name_is_not_an_output_folder(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                               command: list[str]) -> None:
    out = tmp_path / "sample.png"
    assert_fails_cleanly(capsys, [*command, "-o", str(out)], "names an image file")
    assert not out.exists()


def test_style_scale_is_capped(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert_fails_cleanly(capsys, ["stylize", STYLE, STYLE, "-o", str(tmp_path / "o.png"), "--size", "64",
                                  "--style-scale", "100"], "--style-scale", "at most 8")


def test_verbose_after_the_command(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    photo = _photo(tmp_path / "p.png")
    out = tmp_path / "o.png"
    argv = ["stylize", str(photo), STYLE, "-o", str(out), "--size", "48", "--iterations", "2",
            "--coarse-iterations", "0", "-q", "-v"]
    assert main(argv) == 0 and out.is_file()  # before: "unrecognized arguments: -v"


def test_a_file_as_canstyle_home(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home.txt"
    home.write_text("not a folder")
    monkeypatch.setenv("CANSTYLE_HOME", str(home))
    assert_fails_cleanly(capsys, ["stylize", STYLE, STYLE, "-o", str(tmp_path / "o.png"), "--size", "32"],
                         "CANSTYLE_HOME", "is a file, not a folder")


def test_transparency_goes_on_white_in_a_jpeg(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from canstyle.imageio import save_image

    rgba = np.zeros((8, 8, 4), np.uint8)  # black, and fully transparent on the left half
    rgba[:, 4:, 3] = 255
    with caplog.at_level(logging.WARNING, logger="canstyle"):
        save_image(Image.fromarray(rgba, "RGBA"), tmp_path / "o.jpg")
    out = np.asarray(Image.open(tmp_path / "o.jpg"))
    assert out[:, :3].min() > 240 and out[:, 5:].max() < 15
    assert "transparent parts are white" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="canstyle"):
        save_image(Image.fromarray(np.full((8, 8, 4), 255, np.uint8), "RGBA"), tmp_path / "opaque.jpg")
    assert "transparent" not in caplog.text  # an opaque alpha loses nothing


@pytest.mark.parametrize("mode", ["LA", "PA", "RGBa", "P", "L"])
def test_every_transparent_mode_goes_on_white(tmp_path: Path, mode: str) -> None:
    from canstyle.imageio import save_image

    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[:, 4:, 3] = 255  # opaque black on the right, transparent on the left
    im = Image.fromarray(rgba, "RGBA")
    if mode in ("P", "L"):  # transparency by a tRNS colour instead of an alpha band
        im = im.convert("RGB").convert(mode)
        im.info["transparency"] = im.getpixel((7, 0))
        white_side = slice(4, None)  # the transparent colour is the right half's black
    else:
        im = im.convert(mode)
        white_side = slice(0, 3)
    save_image(im, tmp_path / "o.jpg")
    out = np.asarray(Image.open(tmp_path / "o.jpg").convert("L"))
    assert out[:, white_side].min() > 240, out


def test_upscale_folders_take_every_readable_suffix(tmp_path: Path) -> None:
    from canstyle.sr.data import list_images

    folder = tmp_path / "in"
    folder.mkdir()
    _photo(folder / "a.gif", mode="RGB")
    _photo(folder / "b.webp")
    (folder / "notes.txt").write_text("x")
    assert sorted(p.name for p in list_images([folder])) == ["a.gif", "b.webp"]


@pytest.mark.parametrize("command", ["demo", "create", "stylize", "upscale", "train-sr", "eval-sr", "prepare-data",
                                     "train", "generate", "evaluate", "serve"])
def test_every_computing_command_takes_threads(capsys: pytest.CaptureFixture[str], command: str) -> None:
    from tests.helpers import cli_help

    assert "--threads " in cli_help(capsys, command)  # as the README promises


def test_a_small_painting_gets_a_tip(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    photo, small = _photo(tmp_path / "p.png", (64, 48)), _photo(tmp_path / "s.png", (30, 20))
    argv = ["stylize", str(photo), str(small), "-o", str(tmp_path / "o.png"), "--size", "64", "--iterations", "1",
            "--coarse-iterations", "0", "-q"]
    with caplog.at_level(logging.INFO, logger="canstyle"):
        assert main(argv) == 0
    assert "s.png is 30 px: analysed at 64 px it is enlarged 2.1x" in caplog.text and "--style-scale 0.47" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="canstyle"):
        assert main([*argv, "--overwrite", "--style-scale", "0.5"]) == 0
    assert "enlarged" not in caplog.text
