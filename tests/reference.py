"""Independent reference computations shared by several test files (brute force, no shortcuts)."""

from __future__ import annotations

import itertools


def brute_pass_at_k(n: int, c: int, k: int) -> float:
    """Share of all size-k subsets of n samples (c correct) that contain at least one correct sample."""
    samples = [True] * c + [False] * (n - c)
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(samples[i] for i in s) for s in subsets) / len(subsets)
