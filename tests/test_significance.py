"""The paired bootstrap against GRPO, on inputs whose answer is known."""
import pytest

from ricepo.report.significance import paired_bootstrap


def test_identical_runs_are_not_different():
    assert paired_bootstrap([0.5, 0.2, 0.9], [0.5, 0.2, 0.9]) == 1.0


def test_a_consistent_gain_is_significant_and_a_symmetric_one_is_not():
    better = [0.1 * i for i in range(30)]
    assert paired_bootstrap([x + 0.05 for x in better], better) < 0.001     # every query gains .05
    noise = [0.2, -0.2] * 15                                                # mean difference exactly 0
    assert paired_bootstrap([x + n for x, n in zip(better, noise)], better) > 0.9


def test_seeded_and_symmetric():
    a, b = [0.3, 0.5, 0.1, 0.8, 0.4], [0.2, 0.5, 0.3, 0.6, 0.1]
    assert paired_bootstrap(a, b) == paired_bootstrap(a, b)
    assert paired_bootstrap(a, b) == pytest.approx(paired_bootstrap(b, a))
