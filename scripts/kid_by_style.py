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

import torch

from canstyle.can.evaluate import judged_samples, split
from canstyle.can.metrics import kid


def kid_by_style(run: str, data: str, exclude: list[str], n: int) -> dict[str, object]:
    j = judged_samples(run, data, n)
    tr, _ = split(j.sel, j.opts.holdout, j.opts.seed)  # the order of judge.train_feats
    labels = torch.cat([torch.as_tensor(j.sel.labels[tr], dtype=torch.long), j.judge.held_labels])
    _, hf = j.judge(j.feat(j.fake))
    _, reals = j.judge(torch.cat([j.judge.train_feats, j.judge.held_feats]))
    keep = ~torch.isin(labels, torch.as_tensor([j.sel.classes.index(s) for s in exclude]))
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
