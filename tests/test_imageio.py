from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from canstyle.errors import CanstyleError
from canstyle.imageio import load_image, read_metadata, save_image
from tests.helpers import png_header


def test_missing_file(tmp_path):
    with pytest.raises(CanstyleError, match="no such file"):
        load_image(tmp_path / "nope.jpg")


def test_text_file_named_jpg(tmp_path):
    p = tmp_path / "fake.jpg"
    p.write_text("hello, I am not a picture\n")
    with pytest.raises(CanstyleError, match="not an image"):
        load_image(p)


def test_truncated_jpeg(tmp_path):
    p = tmp_path / "t.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(p)
    p.write_bytes(p.read_bytes()[:300])
    with pytest.raises(CanstyleError, match="cannot decode|cannot read"):
        load_image(p)


def test_decompression_bomb_header(tmp_path):
    p = tmp_path / "bomb.png"
    p.write_bytes(png_header(40000, 40000))
    with pytest.raises(CanstyleError, match="too large"):
        load_image(p)


def test_one_pixel(tmp_path):
    p = tmp_path / "one.png"
    Image.new("RGB", (1, 1), (255, 0, 0)).save(p)
    img = load_image(p)
    assert img.rgb.shape == (1, 3, 1, 1)
    assert torch.allclose(img.rgb.flatten(), torch.tensor([1.0, 0.0, 0.0]))


@pytest.mark.parametrize("mode", ["L", "LA", "P", "RGBA", "CMYK", "I;16", "I", "RGB"])
def test_modes_become_rgb(tmp_path, mode):
    base = Image.new("RGB", (8, 6), (200, 100, 50))
    im = base.convert(mode) if mode not in ("I;16", "I") else Image.new(mode, (8, 6), 40000)
    p = tmp_path / f"m_{mode.replace(';', '')}.{'tiff' if mode in ('CMYK', 'I') else 'png'}"
    im.save(p)
    img = load_image(p)
    assert img.rgb.shape == (1, 3, 6, 8) and img.rgb.dtype == torch.float32
    assert img.rgb.min() >= 0 and img.rgb.max() <= 1
    if mode in ("I;16", "I"):  # 16-bit data keeps its precision instead of saturating at 255
        assert img.rgb[0, 0, 0, 0].item() == pytest.approx(40000 / 65535, abs=1e-6)


def test_alpha_kept_separately(tmp_path):
    arr = np.zeros((4, 5, 4), np.uint8)
    arr[..., 0] = 255
    arr[..., 3] = 128
    p = tmp_path / "a.png"
    Image.fromarray(arr, "RGBA").save(p)
    img = load_image(p)
    assert img.alpha is not None and img.alpha.shape == (1, 1, 4, 5)
    assert img.alpha.flatten()[0].item() == pytest.approx(128 / 255)
    assert img.rgb[0, 0].min().item() == 1.0  # colour untouched by alpha


def test_palette_with_transparency(tmp_path):
    im = Image.new("P", (4, 4), 0)
    im.putpalette([0, 255, 0] + [0, 0, 0] * 255)
    im.info["transparency"] = 0
    p = tmp_path / "p.png"
    im.save(p, transparency=0)
    img = load_image(p)
    assert img.alpha is not None and img.alpha.max().item() == 0.0


def test_exif_orientation(tmp_path):
    im = Image.new("RGB", (20, 10), (0, 0, 255))
    exif = im.getexif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    p = tmp_path / "rot.jpg"
    im.save(p, exif=exif.tobytes())
    assert load_image(p).rgb.shape[-2:] == (20, 10)


def test_png_metadata_roundtrip_and_no_overwrite(tmp_path):
    x = torch.rand(1, 3, 5, 7)
    p = save_image(x, tmp_path / "out.png", {"seed": 3, "style": ["a.jpg"]})
    assert read_metadata(p) == {"seed": 3, "style": ["a.jpg"]}
    back = load_image(p).rgb
    assert (back - x).abs().max() <= 0.5 / 255 + 1e-6
    with pytest.raises(CanstyleError, match="exists"):
        save_image(x, p, {})
    save_image(torch.zeros(1, 3, 5, 7), p, {}, overwrite=True)
    assert load_image(p).rgb.max() == 0
    assert [f.name for f in tmp_path.iterdir()] == ["out.png"]  # no temp files left behind


def test_jpeg_quality_and_metadata(tmp_path):
    x = torch.rand(1, 3, 16, 16)
    p = save_image(x, tmp_path / "o.jpg", {"seed": 1})
    assert read_metadata(p) == {"seed": 1}
    with pytest.raises(CanstyleError, match="unsupported output"):
        save_image(x, tmp_path / "o.gif", {})


def test_outputs_get_the_umask_mode_not_mkstemps_0600(tmp_path):
    from canstyle import fsutil

    path = fsutil.atomic_write_bytes(tmp_path / "x.bin", b"data")
    assert path.read_bytes() == b"data"
    assert (path.stat().st_mode & 0o777) == 0o666 & ~fsutil.UMASK
