"""The style-transfer schedule: its shape at every size, one plan for every caller, and results
that are not noise at the small sizes (measured by the content fraction)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from canstyle.imageio import read_metadata, save_image
from canstyle.nst import stylize as st
from canstyle.nst.quality import fractions
from canstyle.nst.stylize import StylizeOptions, plan_cost, plan_record, scale_plan


def _plan(**kw: object) -> list[tuple[int, int]]:
    opts = StylizeOptions(**kw)  # type: ignore[arg-type]
    return [(s.long, s.iterations) for s in scale_plan(opts, (opts.size, opts.size))]


def test_every_size_starts_small_and_budgets_by_cost() -> None:
    assert _plan(size=64) == [(64, 150)]
    assert _plan(size=128) == [(64, 150), (128, 56)]
    assert _plan(size=512) == [(64, 150), (128, 56), (256, 28), (512, 14)]
    assert _plan(size=768) == [(64, 150), (96, 72), (192, 36), (384, 18), (768, 9)]
    assert _plan(size=2048)[-1] == (2048, 8)  # never fewer than MIN_EVALS at the final size
    for size in (64, 100, 256, 512, 1000):
        plan = _plan(size=size)
        assert plan[0][0] == 64  # the composition is always settled at 64 px
        assert all(a[1] >= b[1] for a, b in zip(plan, plan[1:], strict=False))  # cheaper scales get more
    assert plan_cost(scale_plan(StylizeOptions(), (512, 512))) < 28


def test_overrides_quality_and_thin_scales() -> None:
    assert _plan(size=512, iterations=30) == [(64, 240), (128, 120), (256, 60), (512, 30)]
    assert _plan(size=512, coarse_iterations=300)[0] == (64, 300)
    assert _plan(size=512, quality="draft") == [(64, 75), (128, 28), (256, 14), (512, 7)]
    assert _plan(size=128, quality="fine") == [(64, 300), (128, 112)]
    # an explicit one-scale budget is kept (the plain-Gatys baseline of bench_nst.py)
    assert _plan(size=512, min_scale=512, iterations=500) == [(512, 500)]
    assert _plan(size=64, iterations=3, coarse_iterations=0) == [(64, 3)]
    # a 4:1 photo: the 64 px scale would be 16 px high, too thin for VGG, so it is dropped
    wide = scale_plan(StylizeOptions(size=512), (128, 512))
    assert [s.hw for s in wide] == [(32, 128), (64, 256), (128, 512)] and wide[0].iterations == 150
    assert plan_record(StylizeOptions(size=256), (1080, 1920)) == [[36, 64, 150], [72, 128, 56], [144, 256, 28]]


@pytest.fixture()
def recorded_plans(monkeypatch: pytest.MonkeyPatch) -> list[list[tuple[int, int, int]]]:
    """Record every plan the engine runs; skip the optimisation itself (this is about the plan)."""
    plans: list[list[tuple[int, int, int]]] = []
    real = st.scale_plan

    def spy(opts: StylizeOptions, final_hw: tuple[int, int]) -> list[st.Stage]:
        plan = real(opts, final_hw)
        plans.append([(*s.hw, s.iterations) for s in plan])
        return plan

    monkeypatch.setattr(st, "scale_plan", spy)
    monkeypatch.setattr(st, "_optimize", lambda engine, x0, *a: x0)
    return plans


def test_cli_pipeline_and_studio_run_the_same_plan(recorded_plans: list, vgg16_engine: st.StyleTransfer,
                                                   tmp_path: Path) -> None:
    from canstyle.cli import main
    from canstyle.pipeline import Artwork, Pipeline
    from canstyle.web.studio import stylize_options

    photo, painting = torch.rand(1, 3, 90, 160), torch.rand(1, 3, 64, 64)
    save_image(photo, tmp_path / "photo.png")
    save_image(painting, tmp_path / "art.png")
    want = [(36, 64, 75), (54, 96, 38)]  # draft at 96 px for a 16:9 photo
    # CLI
    assert main(["stylize", str(tmp_path / "photo.png"), str(tmp_path / "art.png"), "-o", str(tmp_path / "o.png"),
                 "--size", "96", "--quality", "draft", "--features", "vgg16", "--seed", "0", "--quiet"]) == 0
    assert recorded_plans.pop() == want
    assert read_metadata(tmp_path / "o.png")["plan"] == [list(s) for s in want]  # recorded with the output
    # Pipeline, with a painting of our own
    pipe = Pipeline.from_checkpoint(features="vgg16", device="cpu")
    pipe(photo, artwork=Artwork(0, painting, painting, 1), size=96, quality="draft",
         generator=torch.Generator().manual_seed(0))
    assert recorded_plans.pop() == want
    # studio: a job request's options, run by the engine as the job runner does
    opts = stylize_options({"size": 96, "style_strength": StylizeOptions().style_weight,
                            "preserve_color": "none", "quality": "draft"})
    vgg16_engine(photo, painting, opts)
    assert recorded_plans.pop() == want


@pytest.mark.parametrize("size", [64, 128])
def test_default_small_sizes_keep_the_subject(vgg16_engine: st.StyleTransfer, example_images, size: int) -> None:
    """Below the old 128 px coarsest scale the studio's draft gave pure noise (noise scores a
    content fraction near 0.9 here); the schedule now starts at 64 px whatever the size."""
    content, style = example_images
    opts = StylizeOptions(size=size)
    out = vgg16_engine(content, style, opts, generator=torch.Generator().manual_seed(0))
    noise = (0.5 + 0.25 * torch.randn(out.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    got, start = fractions(vgg16_engine, out, content, style, opts), fractions(vgg16_engine, noise, content, style, opts)
    assert start["content"] > 0.8  # what noise scores
    assert got["content"] <= 0.5, got
    assert got["style"] <= 0.1, got


def test_studio_balance_option_is_the_librarys_loss_scale() -> None:
    from pydantic import ValidationError

    from canstyle.web.schemas import JobRequest
    from canstyle.web.studio import stylize_options

    schema = JobRequest.model_json_schema()["properties"]["loss_scale"]
    assert schema["default"] == StylizeOptions().loss_scale and set(schema["enum"]) == {"none", "pair"}
    body = {"photos": ["demo-astronaut"], "style": {"upload": "u1"}}
    assert JobRequest(**body).loss_scale == StylizeOptions().loss_scale
    with pytest.raises(ValidationError):
        JobRequest(**body, loss_scale="bogus")
    req = JobRequest(**body, loss_scale="pair", style_strength=5).model_dump()
    opts = stylize_options(req)
    assert opts.loss_scale == "pair" and opts.style_weight == 5
    del req["loss_scale"]  # a job saved before the option existed
    assert stylize_options(req).loss_scale == "none"
