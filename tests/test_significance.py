"""The paired bootstrap against GRPO, on inputs whose answer is known."""

import itertools

import pytest

from ricepo.report.significance import RESAMPLES, paired_bootstrap


def exact_bootstrap_p(d: list[int]) -> float:
    """The bootstrap p-value with every one of the n^n resamples counted once instead of drawn:
    the share of resamples of the centred differences whose mean is at least as far from 0 as the
    observed mean. Integer differences keep the count exact (centred and scaled by n)."""
    n, total = len(d), sum(d)
    centred = [n * x - total for x in d]
    hits = sum(abs(sum(centred[i] for i in idx)) >= n * abs(total) for idx in itertools.product(range(n), repeat=n))
    return hits / n**n


# The Monte Carlo estimate of p from RESAMPLES draws has standard error sqrt(p(1-p)/B) <= 0.005;
# three of them is the tolerance.
TOLERANCE = 3 * 0.5 / RESAMPLES**0.5


@pytest.mark.parametrize(
    "hundredths, exact",
    [
        ([10, 0, -20, 20, 30], 1164 / 3125),  # noisy, mean +0.08: far from significant
        ([12, -5, 9, 15, -3, 8], 2074 / 46656),  # mean +0.06 against spread 0.07: just significant
    ],
)
def test_p_equals_the_exact_bootstrap_count_on_noisy_differences(hundredths, exact):
    assert exact_bootstrap_p(hundredths) == pytest.approx(exact)  # the hand-pinned count is the enumeration's
    p = paired_bootstrap([x / 100 for x in hundredths], [0.0] * len(hundredths))
    assert p == pytest.approx(exact, abs=TOLERANCE)
    # the same differences on other baselines: p depends on the differences only
    assert paired_bootstrap([0.5 + x / 100 for x in hundredths], [0.5] * len(hundredths)) == pytest.approx(p, abs=1e-12)


def test_identical_runs_are_not_different():
    assert paired_bootstrap([0.5, 0.2, 0.9], [0.5, 0.2, 0.9]) == 1.0


def test_a_consistent_gain_is_significant_and_a_symmetric_one_is_not():
    better = [0.1 * i for i in range(30)]
    assert paired_bootstrap([x + 0.05 for x in better], better) < 0.001  # every query gains .05
    noise = [0.2, -0.2] * 15  # mean difference exactly 0
    assert paired_bootstrap([x + n for x, n in zip(better, noise)], better) > 0.9


def test_seeded_and_symmetric():
    a, b = [0.3, 0.5, 0.1, 0.8, 0.4], [0.2, 0.5, 0.3, 0.6, 0.1]
    assert paired_bootstrap(a, b) == paired_bootstrap(a, b)
    assert paired_bootstrap(a, b) == pytest.approx(paired_bootstrap(b, a))
    assert paired_bootstrap(a, b, seed=1) != paired_bootstrap(a, b)  # the seed is used
