"""hyperjax.analysis: IQM, bootstrap intervals, probability of improvement, optimality gap."""

import math

import numpy as np
import pytest

from hyperjax import analysis


def test_iqm_is_the_mean_of_the_middle_half():
    assert analysis.iqm([1, 2, 3, 4, 5, 6, 7, 100]) == pytest.approx(np.mean([3, 4, 5, 6]))
    assert analysis.iqm([5.0, 1.0, 3.0]) == pytest.approx(3.0)  # fewer than 4 runs: nothing trimmed
    assert analysis.iqm([2.0]) == 2.0


def test_bootstrap_interval_covers_the_truth_at_its_rate():
    """Over 200 samples of 10 normal runs, the 95% interval of the mean holds the true mean in
    about 95% of them (percentile intervals undercover slightly at n = 10: 0.85-0.98 allowed)."""
    rng = np.random.default_rng(0)
    hits = 0
    for i in range(200):
        x = rng.normal(3.0, 1.0, 10)
        low, high = analysis.bootstrap_ci(x, np.mean, resamples=2000, seed=i)
        assert low < np.mean(x) < high
        hits += low <= 3.0 <= high
    assert 0.85 <= hits / 200 <= 0.98, hits


def test_intervals_of_degenerate_samples():
    assert all(math.isnan(v) for v in analysis.bootstrap_ci([1.0]))
    assert analysis.bootstrap_ci([2.0, 2.0, 2.0]) == (2.0, 2.0)


def test_probability_of_improvement_and_optimality_gap():
    assert analysis.probability_of_improvement([3, 4], [1, 2]) == 1.0
    assert analysis.probability_of_improvement([1, 2], [3, 4]) == 0.0
    assert analysis.probability_of_improvement([1, 2], [1, 2]) == 0.5
    a, b = [1.0, 5.0, 3.0], [2.0, 4.0]
    assert analysis.probability_of_improvement(a, b) + analysis.probability_of_improvement(b, a) == pytest.approx(1.0)
    assert analysis.optimality_gap([100, 40, 60], 50) == pytest.approx(10 / 3)


def test_summary_and_bad_input():
    s = analysis.summarize([1.0, 2.0, 3.0, 4.0, 10.0])
    assert s["runs"] == 5 and s["median"] == 3.0 and s["min"] == 1.0 and s["max"] == 10.0
    assert s["iqm_low"] <= s["iqm"] <= s["iqm_high"]
    with pytest.raises(ValueError, match="iqm: scores must be finite"):
        analysis.iqm([1.0, float("nan")])
    with pytest.raises(ValueError, match="summarize: no runs given"):
        analysis.summarize([])
    with pytest.raises(ValueError, match="confidence=1.5"):
        analysis.bootstrap_ci([1.0, 2.0], confidence=1.5)
