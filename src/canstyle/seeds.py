"""Random seeds: one helper, so every seed canstyle draws and records comes from one range."""

from __future__ import annotations

import random

SEED_RANGE = 2**31  # fits every API (torch, numpy, the studio's JSON schema) as a signed int32


def draw_seed(span: int = 1) -> int:
    """A fresh seed in [0, SEED_RANGE - span], so that seeds seed .. seed + span - 1 are all valid."""
    return random.randrange(SEED_RANGE - span + 1)

# The largest seed a user may pass; drawn seeds stay in the smaller SEED_RANGE. torch's CPU
# generator accepts 64-bit seeds but keeps only their low 32 bits, so 2**32 painted exactly what
# seed 0 painted: larger seeds are refused rather than silently repeating smaller ones.
MAX_SEED = 2**32 - 1
