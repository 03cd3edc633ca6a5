"""Statistics for comparing tuners over a few seeds: the interquartile mean, bootstrap confidence
intervals, the probability of improvement and the optimality gap (the set Agarwal et al., 2021,
recommend for deep RL with few runs; computed with scipy).

Each function takes the scores of independent runs (study seeds) ``(n,)``; NaN runs are
refused rather than dropped, since a run that produced nothing is a result too.
"""

from __future__ import annotations

import math

import numpy as np


def _runs(x, where: str) -> np.ndarray:
    a = np.asarray(x, np.float64).ravel()
    if a.size == 0:
        raise ValueError(f"{where}: no runs given")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{where}: scores must be finite, got {a.tolist()}")
    return a


def iqm(x) -> float:
    """Interquartile mean: the mean of the middle 50% of the runs (25% trimmed at each end; with
    fewer than 4 runs, trimming removes ``floor(0.25 n)`` from each end, i.e. nothing)."""
    from scipy import stats

    return float(stats.trim_mean(_runs(x, "iqm"), 0.25))


def bootstrap_ci(x, statistic=iqm, confidence: float = 0.95, resamples: int = 10_000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap confidence interval ``(low, high)`` of ``statistic`` over the runs
    ``x (n,)``; ``(nan, nan)`` with fewer than 2 runs."""
    from scipy import stats

    a = _runs(x, "bootstrap_ci")
    if not 0 < confidence < 1:
        raise ValueError(f"bootstrap_ci: confidence={confidence!r} must be in (0, 1)")
    if a.size < 2:
        return math.nan, math.nan
    if np.all(a == a[0]):
        return float(a[0]), float(a[0])
    res = stats.bootstrap((a,), lambda s, axis=-1: np.apply_along_axis(statistic, axis, s), confidence_level=confidence,
                          n_resamples=resamples, method="percentile", vectorized=True, rng=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def probability_of_improvement(x, y) -> float:
    """``P(X > Y) + P(X = Y) / 2`` for a run ``X`` of ``x`` and a run ``Y`` of ``y`` drawn
    independently (the Mann-Whitney U statistic over ``len(x) * len(y)``)."""
    a, b = _runs(x, "probability_of_improvement"), _runs(y, "probability_of_improvement")
    diff = a[:, None] - b[None, :]
    return float(((diff > 0).sum() + 0.5 * (diff == 0).sum()) / diff.size)


def optimality_gap(x, threshold: float) -> float:
    """Mean shortfall below ``threshold``: ``mean(max(threshold - x, 0))``."""
    return float(np.maximum(threshold - _runs(x, "optimality_gap"), 0.0).mean())


def expected_alpha(r: float, phases: int) -> float:
    """HyperTrick's expected compute fraction with eviction rate ``r`` over ``phases`` phases:
    ``E[alpha] = sum_{p<P} (1 - r)^p / P`` (the expected share of trial-phases that run, when
    ``N (1 - r)^p`` trials are expected to reach phase ``p``; 37.75% for ``r = 0.25, P = 10``)."""
    if not 0 <= r < 1:
        raise ValueError(f"expected_alpha: r={r!r} must be in [0, 1)")
    if int(phases) < 1:
        raise ValueError(f"expected_alpha: phases={phases!r} must be >= 1")
    return sum((1 - r) ** p for p in range(int(phases))) / int(phases)


def min_alpha(r: float, phases: int) -> float:
    """The ``min[alpha]`` column of HyperTrick's results table: half of :func:`expected_alpha`
    (the talk's table gives 18.87% beside E[alpha] = 37.75% for ``P = 10`` and 30.51% beside
    61.02% for ``P = 5``, both at ``r = 25%``)."""
    return expected_alpha(r, phases) / 2


def compute_fraction(result, phases: int | None = None) -> float:
    """``alpha``: the share of the work that running every started trial to its end would have
    cost which the study actually ran: ``sum(phases run) / (trials started * phases)`` over the
    trials of ``result`` (a ``StudyResult``) that held a slot (a PBT child counts the phases it
    ran itself). ``phases``: the phases of a trial that runs to the end; by default read off the
    completed trials (ValueError if none completed). NaN if no trial started."""
    started = [t for t in result.trials if t.segments]
    if not started:
        return math.nan
    if phases is None:
        done = {t.phases for t in started if t.status == "completed"}
        if not done:
            raise ValueError("compute_fraction: no trial completed; pass phases=")
        phases = max(done)
    run = sum(t.phases - t.start_phase for t in started)
    return run / (len(started) * int(phases))


def summarize(x, confidence: float = 0.95, seed: int = 0) -> dict[str, float]:
    """``{"runs", "iqm", "iqm_low", "iqm_high", "mean", "median", "min", "max"}`` of ``x (n,)``."""
    a = _runs(x, "summarize")
    low, high = bootstrap_ci(a, iqm, confidence, seed=seed)
    return {"runs": int(a.size), "iqm": iqm(a), "iqm_low": low, "iqm_high": high, "mean": float(a.mean()),
            "median": float(np.median(a)), "min": float(a.min()), "max": float(a.max())}
