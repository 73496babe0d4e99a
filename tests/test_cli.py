from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from canstyle.cli import main
from canstyle.imageio import load_image, read_metadata
from tests.helpers import (
    EXAMPLES,
    assert_fails_cleanly,
    assert_one_line_error,
    cli_help,
    png_header,
)

STYLE = str(EXAMPLES / "starry_night.jpg")
FAST = ["--size", "32", "--iterations", "3", "--coarse-iterations", "0", "--quiet", "--seed", "1"]


def test_missing_file(capsys, tmp_path):
    assert_fails_cleanly(capsys, ["stylize", str(tmp_path / "no.jpg"), STYLE, "-o", str(tmp_path / "o.png")], "no such file")


def test_text_file_named_jpg(capsys, tmp_path):
    p = tmp_path / "photo.jpg"
    p.write_text("not a jpeg")
    assert_fails_cleanly(capsys, ["stylize", str(p), STYLE, "-o", str(tmp_path / "o.png")], "not an image")


def test_truncated_jpeg(capsys, tmp_path):
    p = tmp_path / "t.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(p)
    p.write_bytes(p.read_bytes()[:400])
    assert_fails_cleanly(capsys, ["stylize", str(p), STYLE, "-o", str(tmp_path / "o.png")], "image")


def test_huge_header(capsys, tmp_path):
    p = tmp_path / "bomb.png"
    p.write_bytes(png_header(40000, 40000))
    assert_fails_cleanly(capsys, ["stylize", STYLE, str(p), "-o", str(tmp_path / "o.png")], "too large")


def test_existing_output(capsys, tmp_path):
    out = tmp_path / "o.png"
    out.write_bytes(b"keep me")
    assert_fails_cleanly(capsys, ["stylize", STYLE, STYLE, "-o", str(out)], "exists")
    assert out.read_bytes() == b"keep me"


def test_unknown_features(capsys, tmp_path):
    assert_fails_cleanly(capsys, ["stylize", STYLE, STYLE, "-o", str(tmp_path / "o.png"), "--features", "alexnet"],
                         "invalid choice")


def test_size_zero(capsys, tmp_path):
    assert_fails_cleanly(capsys, ["stylize", STYLE, STYLE, "-o", str(tmp_path / "o.png"), "--size", "0"], "--size")


@pytest.mark.parametrize("command", ["demo", "create", "stylize", "upscale", "train-sr", "eval-sr",
                                     "prepare-data", "train", "generate", "export", "evaluate", "serve"])
def test_help_shows_each_default_once(capsys, command):
    text = " ".join(cli_help(capsys, command).split())  # argparse wraps lines
    assert "(default: None)" not in text
    assert "(default: " in text  # defaults are shown at all
    for chunk in text.split("--")[1:]:  # one option's help each
        assert chunk.count("(default") <= 1, chunk


def test_unknown_command(capsys):
    assert_fails_cleanly(capsys, ["paint"], "invalid choice")


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
    assert assert_one_line_error(bad.returncode, bad.stderr) == "canstyle: error: no such file: nope.jpg"


@pytest.fixture
def square(tmp_path):
    """A photo that the tiny FAST settings can stylise (the style images are too wide for 32 px)."""
    path = tmp_path / "in.png"
    Image.new("RGB", (40, 40), (120, 60, 200)).save(path)
    return str(path)


@pytest.mark.parametrize("seed", ["99999999999999999999", str(2**63), "-1", "x"])
def test_out_of_range_seed(capsys, tmp_path, square, seed):
    assert_fails_cleanly(capsys, ["stylize", square, STYLE, "-o", str(tmp_path / "o.png"), *FAST, "--seed", seed], "--seed")


def test_seed_type_bounds():
    import argparse

    from canstyle.cliutil import MAX_SEED, seed_type

    assert seed_type("0") == 0 and seed_type(str(MAX_SEED)) == 2**32 - 1  # torch keeps 32 bits of a seed
    for bad in (str(2**32), str(2**63), "-1"):
        with pytest.raises(argparse.ArgumentTypeError):
            seed_type(bad)


@pytest.mark.parametrize("flags", [["--optimizer", "adam", "--lr", "-1"], ["--lr", "nan"], ["--lr", "0"],
                                   ["--content-weight", "nan"], ["--content-weight", "inf"],
                                   ["--style-weight", "inf"], ["--tv-weight", "nan"], ["--style-scale", "inf"],
                                   ["--style-weights", "nan"], ["--size", "100000"]])
def test_non_finite_or_bad_float_options(capsys, tmp_path, square, flags):
    out = tmp_path / "o.png"
    assert_fails_cleanly(capsys, ["stylize", square, STYLE, "-o", str(out), *FAST, *flags], flags[-2])
    assert not out.exists()


def test_snapshots_are_never_overwritten_silently(capsys, tmp_path, square):
    folder = tmp_path / "out"
    folder.mkdir()
    out, snap = folder / "o5.png", folder / "o5.step00002.png"
    snap.write_bytes(b"keep me")
    argv = ["stylize", square, STYLE, "-o", str(out), "--save-every", "1", *FAST]
    assert_fails_cleanly(capsys, argv, "exists")
    assert snap.read_bytes() == b"keep me" and not out.exists()  # checked before any work
    assert main([*argv, "--overwrite"]) == 0
    assert read_metadata(snap)["step"] == 2
    assert sorted(p.name for p in folder.iterdir()) == ["o5.png", *(f"o5.step0000{i}.png" for i in (1, 2, 3))]


def test_every_device_flag_takes_cuda_n() -> None:
    """--device cuda:N parses in every command that has --device (one flag type for all)."""
    import importlib

    from canstyle.cli import COMMANDS
    from canstyle.cliutil import OneLineParser

    seen = 0
    for name, (module_name, _) in COMMANDS.items():
        sub = OneLineParser(prog=name)
        importlib.import_module(module_name).add_arguments(sub)
        action = next((a for a in sub._actions if "--device" in a.option_strings), None)
        if action is None:
            continue
        seen += 1
        assert action.type("cuda:1") == "cuda:1" and action.type("cpu") == "cpu", name
        with pytest.raises(Exception, match="cuda:N"):
            action.type("tpu")
    assert seen >= 8


def test_threads_flag_sets_torch_threads(capsys, tmp_path):
    import torch

    before = torch.get_num_threads()
    try:
        assert_fails_cleanly(capsys, ["upscale", str(tmp_path / "missing.png"), "-o", str(tmp_path / "o"),
                                      "--threads", "1"], "no such file")
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    assert_fails_cleanly(capsys, ["stylize", "a.png", "b.png", "-o", "o.png", "--threads", "0"], "--threads")


def test_style_weights_and_init_are_checked_before_the_network_loads(capsys, tmp_path, square, monkeypatch):
    import canstyle.nst.stylize as st

    def no_network(*a, **k):  # noqa: ANN002, ANN003
        raise AssertionError("the network was loaded before the options were checked")

    monkeypatch.setattr(st, "StyleTransfer", no_network)
    out = tmp_path / "o.png"
    assert_fails_cleanly(capsys, ["stylize", square, STYLE, "-o", str(out), "--style-weights", "1,2"], "--style-weights")
    assert_fails_cleanly(capsys, ["stylize", square, STYLE, "-o", str(out), "--init", str(tmp_path / "nope.png")],
                         "no such file")
