"""The memorisation check finds a sample that copies a training painting."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from canstyle.can.data import prepare
from canstyle.can.evaluate import center_views, judged_samples, split
from canstyle.can.memorisation import memorisation, pairs_sheet
from canstyle.imageio import save_image

STYLES = {"Baroque": (150, 60, 30), "Cubism": (30, 60, 150), "Ukiyo_e": (40, 170, 90)}


def _paintings(root: Path, per_style: int = 8) -> Path:
    rng = np.random.default_rng(0)
    for s, rgb in STYLES.items():
        (root / s).mkdir(parents=True)
        for i in range(per_style):
            img = np.array(rgb, np.float32) + rng.normal(0, 40, (72, 90, 3))
            Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(root / s / f"{i}.png")
    return root


def test_a_copied_painting_is_the_closest_pair(tmp_path: Path, isolated_home: Path) -> None:
    prepare(_paintings(tmp_path / "art"), tmp_path / "cache", size=128)
    samples = tmp_path / "samples"
    g = torch.Generator().manual_seed(0)
    for i in range(7):  # samples unlike any painting: smooth random colour fields
        field = torch.nn.functional.interpolate(torch.rand(1, 3, 4, 4, generator=g), size=(64, 64), mode="bilinear")
        save_image(field, samples / f"s{i}.png")
    j = judged_samples(samples, tmp_path / "cache", n=8, device="cpu", precision="fp32")
    tr, _ = split(j.sel, j.opts.holdout, j.opts.seed)
    copy = center_views(j.cache, j.sel, tr[5:6], 64)
    save_image(copy, samples / "s7.png")  # the last sample in name order copies painting tr[5]
    j = judged_samples(samples, tmp_path / "cache", n=8, device="cpu", precision="fp32")
    stats, pairs = memorisation(j, k=3)
    assert pairs[0] == (7, int(tr[5]))
    assert stats["closest"][0]["distance"] < 0.05 * stats["real_to_real"]["median"]
    assert stats["closest_ratio"] < 0.2
    assert stats["n_samples"] == 8 and 0 <= stats["fake_below_real_p5"] <= 1
    sheet = pairs_sheet(j, pairs, height=32)
    assert sheet.shape[-2] == 3 * (32 + 8) + 8  # one row per pair
