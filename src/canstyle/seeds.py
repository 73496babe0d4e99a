"""Random seeds: one helper, so every seed canstyle draws and records comes from one range."""

from __future__ import annotations

import random

SEED_RANGE = 2**31  # fits every API (torch, numpy, the studio's JSON schema) as a signed int32


def draw_seed(span: int = 1) -> int:
    """A fresh seed in [0, SEED_RANGE - span], so that seeds seed .. seed + span - 1 are all valid."""
    return random.randrange(SEED_RANGE - span + 1)

# torch takes seeds below 2**64; staying below 2**63 leaves room for the offsets trainers add
# (seed + rank, seed + step) and fits a signed 64-bit integer everywhere. The largest seed a user
# may pass; drawn seeds stay in the smaller SEED_RANGE.
MAX_SEED = 2**63 - 1
