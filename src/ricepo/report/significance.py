"""Per-query paired significance of a method against GRPO (paired bootstrap over queries).

For one cell, each test query contributes d_q = NDCG@10(method) - NDCG@10(GRPO), each averaged over
the seeds that ran. The two-sided p-value is the share of B bootstrap means of the centred
differences (d - mean d, resampled with replacement, seeded) at least as far from 0 as the observed
mean (Efron & Tibshirani's paired bootstrap). B = 10,000; a cell is marked when p < 0.05.
"""

from __future__ import annotations

import numpy as np

RESAMPLES = 10_000
ALPHA = 0.05


def paired_bootstrap(a: list[float], b: list[float], resamples: int = RESAMPLES, seed: int = 0) -> float:
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    if len(d) < 2 or not d.any():
        return 1.0
    observed = d.mean()
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(d), size=(resamples, len(d)))
    means = (d - observed)[idx].mean(axis=1)
    return float((np.abs(means) >= abs(observed) - 1e-12).mean())
