from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from canstyle.cli import main
from canstyle.imageio import load_image, read_metadata

from .conftest import EXAMPLES
from .test_imageio import _png_header_only

STYLE = str(EXAMPLES / "starry_night.jpg")
FAST = ["--size", "32", "--iterations", "3", "--coarse-iterations", "0", "--quiet", "--seed", "1"]


def _fails_cleanly(capsys, argv, match):
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2
    assert "\n" not in err and "Traceback" not in err, err
    assert match in err, err


def test_missing_file(capsys, tmp_path):
    _fails_cleanly(capsys, ["stylize", str(tmp_path / "no.jpg"), STYLE, "-o", str(tmp_path / "o.png")], "no such file")


def test_text_file_named_jpg(capsys, tmp_path):
    p = tmp_path / "photo.jpg"
    p.write_text("not a jpeg")
    _fails_cleanly(capsys, ["stylize", str(p), STYLE, "-o", str(tmp_path / "o.png")], "not an image")


def test_truncated_jpeg(capsys, tmp_path):
    p = tmp_path / "t.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(p)
    p.write_bytes(p.read_bytes()[:400])
    _fails_cleanly(capsys, ["stylize", str(p), STYLE, "-o", str(tmp_path / "o.png")], "image")


def test_huge_header(capsys, tmp_path):
    p = tmp_path / "bomb.png"
    _png_header_only(p, 40000, 40000)
    _fails_cleanly(capsys, ["stylize", STYLE, str(p), "-o", str(tmp_path / "o.png")], "too large")


def test_existing_output(capsys, tmp_path):
    out = tmp_path / "o.png"
    out.write_bytes(b"keep me")
    _fails_cleanly(capsys, ["stylize", STYLE, STYLE, "-o", str(out)], "exists")
    assert out.read_bytes() == b"keep me"


def test_unknown_features(capsys, tmp_path):
    _fails_cleanly(capsys, ["stylize", STYLE, STYLE, "-o", str(tmp_path / "o.png"), "--features", "alexnet"],
                   "invalid choice")


def test_size_zero(capsys, tmp_path):
    _fails_cleanly(capsys, ["stylize", STYLE, STYLE, "-o", str(tmp_path / "o.png"), "--size", "0"], "--size")


@pytest.mark.parametrize("command", ["demo", "create", "stylize", "upscale", "train-sr", "eval-sr",
                                     "prepare-data", "train", "generate", "export", "evaluate", "serve"])
def test_help_shows_each_default_once(capsys, command):
    with pytest.raises(SystemExit) as e:
        main([command, "--help"])
    assert e.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert "(default: None)" not in text
    assert "(default: " in text  # defaults are shown at all
    for chunk in text.split("--")[1:]:  # one option's help each
        assert chunk.count("(default") <= 1, chunk


def test_unknown_command(capsys):
    _fails_cleanly(capsys, ["paint"], "invalid choice")


def test_one_pixel_content_is_handled(tmp_path):
    p = tmp_path / "one.png"
    Image.new("RGB", (1, 1), (10, 200, 30)).save(p)
    out = tmp_path / "o.png"
    assert main(["stylize", str(p), STYLE, "-o", str(out), *FAST]) == 0
    assert load_image(out).rgb.shape == (1, 3, 32, 32)


@pytest.mark.parametrize("mode", ["CMYK", "I;16", "RGBA", "P"])
def test_unusual_modes_run(tmp_path, mode):
    base = Image.new("RGB", (40, 40), (120, 60, 200))
    im = Image.new("I;16", (40, 40), 30000) if mode == "I;16" else base.convert(mode)
    p = tmp_path / f"in.{'jpg' if mode == 'CMYK' else 'png'}"
    im.save(p)
    out = tmp_path / "o.png"
    assert main(["stylize", str(p), STYLE, "-o", str(out), *FAST]) == 0
    res = load_image(out)
    assert res.rgb.shape == (1, 3, 32, 32)
    assert res.alpha is None  # opaque inputs give opaque results


def test_transparent_content_keeps_alpha(tmp_path):
    arr = np.full((40, 40, 4), 200, np.uint8)
    arr[:, :, 3] = 255
    arr[:20, :, 3] = 0
    p = tmp_path / "in.png"
    Image.fromarray(arr, "RGBA").save(p)
    out = tmp_path / "o.png"
    assert main(["stylize", str(p), STYLE, "-o", str(out), *FAST]) == 0
    alpha = load_image(out).alpha
    assert alpha is not None and alpha[..., :14, :].max() == 0 and alpha[..., 18:, :].min() == 1


@pytest.mark.e2e
def test_cli_subprocess_end_to_end(tmp_path):
    out = tmp_path / "result.png"
    r = subprocess.run(
        [sys.executable, "-m", "canstyle", "stylize", str(EXAMPLES / "giraffe.jpg"), STYLE, "-o", str(out),
         "--size", "64", "--iterations", "5", "--coarse-iterations", "5", "--min-scale", "32", "--seed", "3",
         "--quiet"],
        capture_output=True, text=True, timeout=300,
    )
    assert r.returncode == 0, r.stderr
    meta = read_metadata(out)
    assert meta["seed"] == 3 and meta["size"] == 64 and meta["features"] in ("vgg16", "vgg19")
    assert load_image(out).rgb.shape == (1, 3, 36, 64)
    bad = subprocess.run([sys.executable, "-m", "canstyle", "stylize", "nope.jpg", STYLE, "-o", str(tmp_path / "x.png")],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and bad.stderr.strip() == "canstyle: error: no such file: nope.jpg"
