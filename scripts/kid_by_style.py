"""KID of CAN samples against all real paintings and against the paintings outside some styles.

    python scripts/kid_by_style.py RUN [RUN ...] --data ../shared/art --exclude Post_Impressionism

A diagnostic for docs/can.md: when a CAN avoids one style that dominates the data, its KID
against all paintings grows. Comparing KID with and without that style's paintings shows how
much of a CAN/GAN KID gap comes from that one style. The judge, samples (seeds 0..n-1) and KID
are exactly those of ``canstyle evaluate``, so the "all" column reproduces its ``kid``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from canstyle.can.data import ensure_cache
from canstyle.can.dataset import select
from canstyle.can.evaluate import (
    Cache,
    EvalOptions,
    StyleFeatures,
    build_judge,
    kid,
    load_samples,
    split,
)
from canstyle.device import resolve_device, resolve_precision
from canstyle.weights import home


def kid_by_style(run: str, data: str, exclude: list[str], n: int) -> dict[str, object]:
    dev = resolve_device("auto")  # as evaluate does by default
    opts = EvalOptions()
    fake, classes, preset = load_samples(Path(run), n, dev)
    opts.image_size = preset or fake.shape[-1]
    cache = Cache(ensure_cache(data, 2 * opts.image_size, None))
    sel = select(cache, classes, 0)
    feat = StyleFeatures(opts, dev, resolve_precision("auto", dev))
    judge = build_judge(cache, sel, opts, feat, home() / "can-eval")
    tr, _ = split(sel, opts.holdout, opts.seed)
    labels = torch.cat([torch.as_tensor(sel.labels[tr], dtype=torch.long), judge.held_labels])
    _, hf = judge(feat(fake))
    _, reals = judge(torch.cat([judge.train_feats, judge.held_feats]))
    keep = ~torch.isin(labels, torch.as_tensor([sel.classes.index(s) for s in exclude]))
    k_all, s_all = kid(hf, reals)
    k_rest, s_rest = kid(hf, reals[keep])
    return {"run": run, "kid_all": k_all, "kid_all_std": s_all, "excluded": exclude,
            "n_real_rest": int(keep.sum()), "kid_rest": k_rest, "kid_rest_std": s_rest}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", help="CAN runs, checkpoints or exports")
    ap.add_argument("--data", required=True, help="the paintings the runs trained on")
    ap.add_argument("--exclude", nargs="+", default=["Post_Impressionism"], help="styles left out of 'rest'")
    ap.add_argument("-n", type=int, default=512, help="samples per run (seeds 0..n-1), as in evaluate")
    args = ap.parse_args()
    for run in args.runs:
        print(json.dumps(kid_by_style(run, args.data, args.exclude, args.n)), flush=True)


if __name__ == "__main__":
    main()
