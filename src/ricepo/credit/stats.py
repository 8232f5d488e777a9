"""The z-score of docs/methods.md (Notation): (x - mean) / (std + 1e-6), std with n-1 (Bessel) or n."""

from __future__ import annotations

import math

EPS = 1e-6


def mean(xs: list[float]) -> float:
    return sum(xs) / len(xs)


def std(xs: list[float], bessel: bool) -> float:
    n = len(xs)
    if n - int(bessel) <= 0:
        return 0.0
    m = mean(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (n - int(bessel)))
