"""Generation, export, the pipeline's loader, and the evaluation metrics."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from canstyle.can.data import Cache, prepare
from canstyle.can.dataset import select
from canstyle.can.evaluate import classifier_key, split
from canstyle.can.generate import (
    export_generator,
    load_generator,
    parse_seeds,
    sample,
    seed_noise,
)
from canstyle.can.metrics import kid, nn_distance, norm_entropy
from canstyle.can.train import TrainOptions, train
from canstyle.cli import main
from canstyle.errors import CanstyleError
from canstyle.imageio import load_rgb, read_metadata
from canstyle.weights import read_metadata as st_metadata
from tests.helpers import assert_fails_cleanly, make_folders


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("can-gen")
    prepare(make_folders(root / "src", per_style=6), root / "cache", size=64)
    opts = TrainOptions(steps=4, batch_size=8, width=0.25, n_samples=4, checkpoint_every=4, sample_every=4)
    res = train(str(root / "cache"), str(root / "runs"), opts, precision="fp32", seed=5)
    assert res.run_dir is not None
    return root / "cache", res.run_dir


def test_export_and_load_generator(run: tuple[Path, Path], tmp_path: Path) -> None:
    _, run_dir = run
    out = export_generator(run_dir, tmp_path / "g.safetensors")
    meta = st_metadata(out)
    assert json.loads(meta["classes"]) == ["Baroque", "Impressionism", "Ukiyo_e"]
    assert json.loads(meta["config"])["preset"] == 64
    g1, cfg1, classes1 = load_generator(out)
    g2, cfg2, classes2 = load_generator(run_dir)  # a run folder: its newest checkpoint, EMA weights
    assert cfg1 == cfg2 and classes1 == classes2 and not g1.training
    a, b = sample(g1, [0, 1]), sample(g2, [0, 1])
    assert a.shape == (2, 3, 64, 64) and torch.allclose(a, b, atol=1e-6)
    half = export_generator(run_dir, tmp_path / "h.safetensors", half=True)
    assert half.stat().st_size < 0.6 * out.stat().st_size
    with pytest.raises(CanstyleError, match="exists"):
        export_generator(run_dir, out)


def test_each_seed_is_independent_of_the_batch(run: tuple[Path, Path]) -> None:
    g, _, _ = load_generator(run[1])
    together = sample(g, [3, 7, 9], batch=3)
    alone = sample(g, [7])
    assert torch.allclose(together[1:2], alone, atol=1e-5)
    z = seed_noise(7, 100, truncation=0.5)
    assert float(z.abs().max()) <= 0.5 and torch.equal(z, seed_noise(7, 100, truncation=0.5))
    assert parse_seeds("0-2,9") == [0, 1, 2, 9]
    assert parse_seeds("3,1,1,0-3") == [3, 1, 0, 2]  # each seed once, in the order asked
    assert len(parse_seeds("0-999999,0-999999")) == 1_000_000  # the limit counts distinct seeds
    for bad, match in (("5-1", "bad"), ("0-99999999", "more than"), (str(2**64), "too large")):
        with pytest.raises(CanstyleError, match=match):
            parse_seeds(bad)
    with pytest.raises(CanstyleError, match="positive"):
        seed_noise(1, 100, truncation=float("nan"))  # NaN compares false with everything


def test_generate_and_export_cli(run: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, run_dir = run
    out = tmp_path / "gen"
    assert_fails_cleanly(capsys, ["generate", str(run_dir), "-n", "3", "--seeds", "5-7", "-o", str(out)],
                         "not both")  # which one would win is not for the user to guess
    assert main(["generate", str(run_dir), "--seeds", "5-7", "-o", str(out), "--grid"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["grid.png", "seed0005.png", "seed0006.png", "seed0007.png"]
    meta = read_metadata(out / "seed0007.png")
    assert meta["seed"] == 7 and meta["command"] == "generate" and meta["classes"][0] == "Baroque"
    assert load_rgb(out / "seed0007.png").shape == (1, 3, 64, 64)
    assert_fails_cleanly(capsys, ["generate", str(run_dir), "--seeds", "7", "-o", str(out)],
                         "output exists", "seed0007.png")  # no silent overwrite
    assert meta["checkpoint"].endswith(".pt")  # a run folder is recorded as the checkpoint it used
    assert main(["export", str(run_dir), "-o", str(tmp_path / "e.safetensors")]) == 0
    assert load_generator(tmp_path / "e.safetensors")[2] == ["Baroque", "Impressionism", "Ukiyo_e"]
    assert_fails_cleanly(capsys, ["export", str(tmp_path / "e.safetensors"), "-o", str(tmp_path / "f.safetensors")],
                         "is an exported generator")


def test_evaluate_cli(run: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str],
                      isolated_home: Path) -> None:
    cache, run_dir = run
    few = make_folders(tmp_path / "few", per_style=2)  # too few of the generator's own styles
    assert_fails_cleanly(capsys, ["evaluate", str(run_dir), "--data", str(few), "-n", "4", "--device", "cpu", "-q"],
                         "the data the generator was trained on")
    report = tmp_path / "m.json"
    assert main(["evaluate", str(run_dir), "--data", str(cache), "-n", "12", "--json", str(report),
                 "--classifier-size", "64", "--device", "cpu", "--precision", "fp32"]) == 0
    m = json.loads(report.read_text())
    assert m["n_samples"] == 12 and m["classes"] == ["Baroque", "Impressionism", "Ukiyo_e"]
    for key in ("fake_entropy", "real_entropy", "fake_marginal_entropy"):
        assert 0 <= m[key] <= 1
    assert m["heldout_accuracy"] >= 2 / 3  # colour-coded styles are easy for the judge
    assert m["heldout_balanced_accuracy"] >= 2 / 3 and m["judge_temperature"] > 0
    assert np.isfinite(m["kid"]) and m["nn_distance_fake"] > 0
    assert np.isfinite(m["kid_balanced"]) and m["kid_balanced_reals"] % 3 == 0  # equal per style
    assert sum(m["fake_style_share"].values()) == pytest.approx(1, abs=1e-3)
    assert list((isolated_home / "home" / "can-eval").glob("features-*.safetensors"))  # cached real features
    from canstyle.can.evaluate import EvalOptions, evaluate

    seen: list = []
    again = evaluate(run_dir, cache, n=12, opts=EvalOptions(classifier_size=64), device="cpu",
                     precision="fp32", callback=seen.append)
    assert json.loads(json.dumps(again)) == m  # the cached features give the same judge and numbers
    assert [p.stage for p in seen] == ["generate", "judge"] and seen[0].total == 12  # one Progress shape


def test_balanced_pick_takes_the_smallest_style_count_of_each() -> None:
    from canstyle.can.metrics import balanced_pick

    labels = torch.tensor([0] * 9 + [1] * 3 + [2] * 5)
    idx = balanced_pick(labels, seed=0)
    assert torch.bincount(labels[idx]).tolist() == [3, 3, 3]
    assert len(set(idx.tolist())) == 9  # without replacement
    assert torch.equal(idx, balanced_pick(labels, seed=0)) and not torch.equal(idx, balanced_pick(labels, seed=1))


def test_cli_bad_inputs_fail_early(run: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                   ) -> None:
    cache, run_dir = run
    gen = tmp_path / "g.safetensors"
    export_generator(run_dir, gen)
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(gen.read_bytes()[: gen.stat().st_size // 2])  # header intact, tensors cut off
    report = tmp_path / "m.json"
    report.write_text("{}")
    cases = [
        (["generate", str(cut), "-o", str(tmp_path / "o")], "damaged or incomplete"),
        (["generate", str(gen), "-o", str(tmp_path / "o"), "-n", "2000", "--grid"], "at most 1024"),
        (["evaluate", str(gen), "--data", str(cache), "--json", str(report)], "output exists"),
        (["evaluate", str(gen), "--data", str(cache), "--classifier-size", "0"], "classifier-size"),
        (["generate", str(run_dir / "config.json"), "-o", str(tmp_path / "o")], "cannot read checkpoint"),
    ]
    for argv, match in cases:
        assert_fails_cleanly(capsys, argv, match)
    assert report.read_text() == "{}" and not (tmp_path / "o").exists()


def test_judge_needs_three_paintings_per_style(tmp_path: Path, isolated_home: Path) -> None:
    from canstyle.can.evaluate import evaluate

    prepare(make_folders(tmp_path / "src", per_style=2), tmp_path / "cache", size=64)
    samples = tmp_path / "samples"
    samples.mkdir()
    for i in range(2):
        Image.new("RGB", (32, 32), (40 * i, 90, 200)).save(samples / f"s{i}.png")
    with pytest.raises(CanstyleError, match="at least 3 per style"):
        evaluate(samples, tmp_path / "cache", device="cpu", precision="fp32")


def test_metric_functions() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 16, generator=g)
    same, _ = kid(x[:100], x[100:])
    near, _ = kid(x[:100], x[100:] + 0.3)
    far, _ = kid(x[:100], x[100:] + 1.0)
    assert abs(same) < near < far and abs(same) < 0.02 * far
    p = torch.tensor([[1 / 3] * 3, [1.0, 0.0, 0.0]])
    assert torch.allclose(norm_entropy(p), torch.tensor([1.0, 0.0]), atol=1e-6)
    imgs = torch.rand(5, 3, 32, 32, generator=g)
    d = nn_distance(imgs[:2], imgs)
    assert torch.allclose(d, torch.zeros(2), atol=1e-6)  # memorised samples sit at distance 0


def test_judge_features_are_keyed_by_cache_content(run: tuple[Path, Path], tmp_path: Path) -> None:
    """A copied cache (another CANSTYLE_HOME, another machine) reuses the judge's features."""
    import shutil

    cache = Cache(run[0])
    copy = Cache(shutil.copytree(run[0], tmp_path / "elsewhere" / "cache"))
    key = classifier_key(cache, select(cache), {"size": 64})
    assert classifier_key(copy, select(copy), {"size": 64}) == key
    assert classifier_key(cache, select(cache), {"size": 128}) != key
    assert classifier_key(cache, select(cache, ["Baroque", "Ukiyo_e"]), {"size": 64}) != key
    copy.meta["pixels_sha1"] = "another painting somewhere in the middle"
    assert classifier_key(copy, select(copy), {"size": 64}) != key


def test_heldout_split_is_stratified(run: tuple[Path, Path]) -> None:
    sel = select(Cache(run[0]))
    tr, held = split(sel, 0.2, 0)
    assert len(set(tr) & set(held)) == 0 and len(tr) + len(held) == len(sel.indices)
    assert sorted(np.bincount(sel.labels[held]).tolist()) == [1, 1, 1]


def test_generate_cli_defaults_to_the_embedded_can(tmp_path: Path) -> None:
    from canstyle.assets import DEFAULT_CAN

    out = tmp_path / "gen"
    assert main(["generate", "--seeds", "3", "-o", str(out), "-q"]) == 0
    meta = read_metadata(out / "seed0003.png")
    assert meta["checkpoint"] == str(DEFAULT_CAN) and len(meta["classes"]) == 13
    assert load_rgb(out / "seed0003.png").shape == (1, 3, 128, 128)
