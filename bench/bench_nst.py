"""Benchmark: canstyle's default 512px stylisation against plain Gatys, in fp32 and in bf16.

Every run happens in this one process, on the same images, with the same feature network and
loss. The baseline is single-scale, fp32, L-BFGS with 500 evaluations from noise. Each result
is clamped to [0, 1] and its loss evaluated the same way, in fp32 at the full size.

Cost is reported in full-size evaluation equivalents: wall time divided by the time of one
fp32 forward and backward pass at the final size, measured in this run. That unit holds
across machines, where seconds do not. The ablation rows switch off one mechanism of the
default schedule each, so each mechanism shows what it earns.

    python bench/bench_nst.py            # writes bench/results/nst.json and docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch

from canstyle.device import cpu_has_native_bf16
from canstyle.imageio import load_rgb, save_image
from canstyle.nst.stylize import StyleTransfer, StylizeOptions, scale_plan
from canstyle.progress import Progress

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import machine, write_section  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def unit_seconds(engine: StyleTransfer, content, style, size: int, repeats: int = 3) -> float:
    """Fastest of ``repeats`` fp32 forward+backward passes at ``size`` x ``size``: one evaluation."""
    opts = StylizeOptions(size=size)
    t = engine.targets(content, [style], [1.0], (size, size), size, torch.float32)
    x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0), requires_grad=True)
    times = []
    for _ in range(repeats + 1):
        t0 = time.perf_counter()
        loss, _ = engine.losses(x, t, opts, torch.float32)
        loss.backward()
        times.append(time.perf_counter() - t0)
        x.grad = None
    return min(times[1:])  # the first pass warms oneDNN up


def run(engine: StyleTransfer, content, style, opts: StylizeOptions, seed: int, log_every: int):
    trace: list[tuple[int, float, float]] = []
    evals = [0]
    t0 = time.perf_counter()

    def cb(p: Progress) -> None:
        evals[0] += p.loss is not None
        if p.step % log_every == 0 or p.step == p.total:
            trace.append((p.step, round(time.perf_counter() - t0, 2), p.loss or 0.0))

    x = engine(content, style, opts, generator=torch.Generator().manual_seed(seed), callback=cb)
    return x, time.perf_counter() - t0, trace, evals[0]


def measure(name: str, engine: StyleTransfer, content, style, opts: StylizeOptions, args,
            unit_engine: StyleTransfer, ref: StylizeOptions, log_every: int = 10) -> tuple[dict, torch.Tensor]:
    # The unit is timed right before and after each row, so a machine whose load changes during
    # the benchmark still divides each row by what an evaluation cost while it ran.
    before = unit_seconds(unit_engine, content, style, args.size)
    x, secs, trace, evals = run(engine, content, style, opts, args.seed, log_every)
    unit = (before + unit_seconds(unit_engine, content, style, args.size)) / 2
    plan = scale_plan(opts, (args.size, args.size))
    r = {"name": name, "seconds": round(secs, 2), "unit_seconds": round(unit, 4),
         "equivalents": round(secs / unit, 2),
         "evaluations": evals, "precision": str(engine.dtype).replace("torch.", ""),
         "plan": [[s.long, s.iterations] for s in plan], "options": asdict(opts),
         "loss_fp32": engine.evaluate(x, content, [style], ref), "trace": trace}
    print(f"{name}: {secs:.1f} s = {r['equivalents']:.1f} eq, {evals} evaluations, "
          f"fp32 loss {r['loss_fp32']['total']:.4f}", flush=True)
    return r, x


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--content", default=str(ROOT / "examples/giraffe.jpg"))
    ap.add_argument("--style", default=str(ROOT / "examples/starry_night.jpg"))
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--baseline-evals", type=int, default=500)
    ap.add_argument("--features", default="vgg16")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-baseline", action="store_true", help="only time canstyle (exploration)")
    ap.add_argument("--no-ablations", action="store_true", help="skip the one-mechanism-off rows")
    ap.add_argument("--out", default=str(ROOT / "bench/results/nst.json"))
    ap.add_argument("--images", default="", help="folder to save the results in")
    ap.add_argument("--no-doc", action="store_true", help="do not update docs/benchmarks.md")
    args = ap.parse_args()

    content, style = square(load_rgb(args.content)), load_rgb(args.style)
    fp32 = StyleTransfer(args.features, "cpu", "fp32")
    default = StylizeOptions(size=args.size)
    rows, outs = [], {}
    r, outs["default_fp32"] = measure("default, fp32", fp32, content, style, default, args, fp32, default)
    rows.append(r)
    if cpu_has_native_bf16():
        bf16 = StyleTransfer(args.features, "cpu", "bf16")
        r, outs["default_bf16"] = measure("default, bf16", bf16, content, style, default, args, fp32, default)
        rows.append(r)
    if not args.no_ablations:
        for name, kw in [("no plateau stop", {"plateau": 0.0}), ("coarsest scale 128 px", {"min_scale": 128})]:
            r, _ = measure(f"default, fp32, {name}", fp32, content, style,
                           StylizeOptions(size=args.size, **kw), args, fp32, default)
            rows.append(r)
    if not args.skip_baseline:
        # Plain Gatys: one scale, the whole budget, and none of canstyle's additions (the
        # start-scale TV term would otherwise apply to its only scale).
        bopts = StylizeOptions(size=args.size, min_scale=args.size, iterations=args.baseline_evals,
                               plateau=0.0, start_tv_weight=0.0)
        r, outs["baseline"] = measure("baseline", fp32, content, style, bopts, args, fp32, default, 25)
        rows.append(r)
    results = {"machine": machine(), "size": args.size, "rows": rows}
    base = next((r for r in rows if r["name"] == "baseline"), None)
    if base is not None:
        for r in rows:
            r["loss_ratio"] = round(r["loss_fp32"]["total"] / base["loss_fp32"]["total"], 4)
            r["speedup"] = round(base["seconds"] / r["seconds"], 2)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1))
    if base is not None and not args.no_doc:
        write_section("nst", markdown(results, args))
    if args.images:
        for k, v in outs.items():
            save_image(v, Path(args.images) / f"bench_{k}.png", overwrite=True)


def markdown(r: dict, args: argparse.Namespace) -> str:
    u = [round(row["unit_seconds"], 2) for row in r["rows"]]
    lines = []
    for row in r["rows"]:
        plan = " / ".join(f"{long}:{n}" for long, n in row["plan"])
        lines.append(f"| {row['name']} | {plan} | {row['evaluations']} | {row['seconds']:.1f} s | "
                     f"**{row['equivalents']:.1f}** | {row['speedup']:.1f}x | {row['loss_fp32']['total']:.4f} | "
                     f"{row['loss_ratio']:.3f} |")
    return f"""## Style transfer, {args.size}x{args.size} from noise (`bench/bench_nst.py`)

Machine: {r["machine"]}. Content: `examples/giraffe.jpg` centre-cropped square; style:
`examples/starry_night.jpg`; features {args.features}; seed {args.seed}. All runs in one process.
Every final loss is that of the result clamped to [0, 1], evaluated in fp32 at {args.size}x{args.size}
with the default weights. **Cost** is in full-size evaluation equivalents: wall time divided by
one fp32 forward and backward pass at {args.size}x{args.size}, timed before and after each row
({min(u)}-{max(u)} s here); that unit holds across machines. The plan column is long side : evaluation budget per scale (a
plateau may end a scale sooner; the evaluations column counts those run).

| run | plan | evaluations | wall time | cost (eq) | speed-up vs baseline | final fp32 loss | loss / baseline |
| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |
{chr(10).join(lines)}
"""


def square(x: torch.Tensor) -> torch.Tensor:
    """Centre crop to a square, so that the default --size 512 gives a 512x512 result."""
    h, w = x.shape[-2:]
    s = min(h, w)
    return x[..., (h - s) // 2 : (h - s) // 2 + s, (w - s) // 2 : (w - s) // 2 + s]


if __name__ == "__main__":
    main()
