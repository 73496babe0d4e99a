"""Benchmark: canstyle's default 512px stylisation against a plain Gatys baseline.

Both runs happen in this one process, on the same images, with the same
feature network and the same loss definition. The baseline is single-scale,
fp32, L-BFGS with 500 evaluations, from noise. Each result's final loss is
evaluated the same way, in fp32 at the full size.

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

from canstyle.imageio import load_rgb, save_image
from canstyle.nst.stylize import StyleTransfer, StylizeOptions
from canstyle.progress import Progress

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import machine, write_section  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def run(engine: StyleTransfer, content, style, opts: StylizeOptions, seed: int, log_every: int):
    trace: list[tuple[int, float, float]] = []
    t0 = time.perf_counter()

    def cb(p: Progress) -> None:
        if p.step % log_every == 0 or p.step == p.total:
            trace.append((p.step, round(time.perf_counter() - t0, 2), p.loss or 0.0))

    x = engine(content, style, opts, generator=torch.Generator().manual_seed(seed), callback=cb)
    return x, time.perf_counter() - t0, trace


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--content", default=str(ROOT / "examples/giraffe.jpg"))
    ap.add_argument("--style", default=str(ROOT / "examples/starry_night.jpg"))
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--baseline-evals", type=int, default=500)
    ap.add_argument("--features", default="vgg16")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-baseline", action="store_true", help="only time canstyle (exploration)")
    ap.add_argument("--only-baseline", action="store_true", help="only run the baseline (exploration)")
    ap.add_argument("--out", default=str(ROOT / "bench/results/nst.json"))
    ap.add_argument("--images", default="", help="folder to save both results in")
    ap.add_argument("--no-doc", action="store_true", help="do not update docs/benchmarks.md")
    args = ap.parse_args()

    content, style = square(load_rgb(args.content)), load_rgb(args.style)
    fast = StyleTransfer(args.features, "cpu", "auto")
    default = StylizeOptions(size=args.size)
    results: dict = {}
    outs = {}
    if not args.only_baseline:
        x, secs, trace = run(fast, content, style, default, args.seed, 10)
        results["canstyle"] = {"seconds": secs, "precision": str(fast.dtype), "options": asdict(default),
                               "loss_fp32": fast.evaluate(x, content, [style], default), "trace": trace}
        print(f"canstyle default: {secs:.1f} s, fp32 loss {results['canstyle']['loss_fp32']['total']:.5f}")
        outs["canstyle"] = x
    if not args.skip_baseline:
        base = StyleTransfer(args.features, "cpu", "fp32")
        bopts = StylizeOptions(size=args.size, min_scale=args.size, iterations=args.baseline_evals,
                               coarse_iterations=0)
        xb, bsecs, btrace = run(base, content, style, bopts, args.seed, 25)
        results["baseline"] = {"seconds": bsecs, "precision": "fp32", "options": asdict(bopts),
                               "loss_fp32": base.evaluate(xb, content, [style], default), "trace": btrace}
        outs["baseline"] = xb
        print(f"baseline: {bsecs:.1f} s, fp32 loss {results['baseline']['loss_fp32']['total']:.5f}")
    if "baseline" in results and "canstyle" in results:
        lb, lf = results["baseline"]["loss_fp32"]["total"], results["canstyle"]["loss_fp32"]["total"]
        results["speedup"] = bsecs / secs
        results["loss_ratio"] = lf / lb
        print(f"speed-up {results['speedup']:.2f}x, loss ratio {results['loss_ratio']:.4f}")
    results["machine"] = machine()
    if "speedup" in results and not args.no_doc:
        write_section("nst", markdown(results, args))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1))
    if args.images:
        for k, v in outs.items():
            save_image(v, Path(args.images) / f"bench_{k}.png", overwrite=True)


def markdown(r: dict, args: argparse.Namespace) -> str:
    c, b = r["canstyle"], r["baseline"]
    o = c["options"]
    return f"""## Style transfer, {args.size}x{args.size} from noise (`bench/bench_nst.py`)

Machine: {r["machine"]}. Content: `examples/giraffe.jpg` centre-cropped square; style:
`examples/starry_night.jpg`; features {args.features}; seed {args.seed}. Both runs in one process;
both final losses evaluated the same way, in fp32 at {args.size}x{args.size}, with the default weights.

| run | what | wall time | final fp32 loss |
| --- | --- | ---: | ---: |
| baseline | single scale, fp32, L-BFGS, {args.baseline_evals} evaluations | {b["seconds"]:.1f} s | {b["loss_fp32"]["total"]:.4f} |
| canstyle default | scales {StylizeOptions(**o).scales()}, {o["coarse_iterations"]} iterations per coarse scale + {o["iterations"]} at full size, {c["precision"].replace("torch.", "")} autocast | {c["seconds"]:.1f} s | {c["loss_fp32"]["total"]:.4f} |

**Speed-up {r["speedup"]:.2f}x** with a final loss ratio of {r["loss_ratio"]:.3f} (canstyle / baseline).
"""


def square(x: torch.Tensor) -> torch.Tensor:
    """Centre crop to a square, so that the default --size 512 gives a 512x512 result."""
    h, w = x.shape[-2:]
    s = min(h, w)
    return x[..., (h - s) // 2 : (h - s) // 2 + s, (w - s) // 2 : (w - s) // 2 + s]


if __name__ == "__main__":
    main()
