"""Statistics for comparing tuners over a few seeds: the interquartile mean, bootstrap confidence
intervals (plain, and stratified over tasks), the probability of improvement and the optimality
gap (the set Agarwal et al., 2021, recommend for deep RL with few runs; computed with numpy and
scipy); per-task normalization; statistics of a trial's learning curve; and the optimism of a
study's top scores, measured by re-training its top trials on fresh seeds.

The run statistics take the scores of independent runs (study seeds) ``(n,)``; NaN runs are
refused rather than dropped, since a run that produced nothing is a result too.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from hyperjax import validate


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


def _along(statistic, s: np.ndarray, axis: int = -1) -> np.ndarray:
    """``statistic`` of every 1-d slice of ``s`` along ``axis`` (float64); for the IQM, the
    default of every interval here, one vectorised call instead of one per slice."""
    if statistic is iqm:
        from scipy import stats

        return stats.trim_mean(s, 0.25, axis=axis)
    return np.apply_along_axis(lambda row: np.float64(statistic(row)), axis, s)


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
    res = stats.bootstrap((a,), lambda s, axis=-1: _along(statistic, s, axis), confidence_level=confidence,
                          n_resamples=resamples, method="percentile", vectorized=True, rng=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def _tasks(scores, where: str) -> tuple[list[Any], list[np.ndarray]]:
    """``(task names, [runs of each task (n_t,)])`` of a ``(runs, tasks)`` matrix (tasks named by
    column index) or of a dict ``task -> (n_t,)``; every task needs a run, every score finite."""
    if isinstance(scores, Mapping):
        if not scores:
            raise ValueError(f"{where}: scores={scores!r} holds no task")
        names = list(scores)
        cols = [np.asarray(scores[n], np.float64) for n in names]
        for n, c in zip(names, cols):
            if c.ndim != 1 or c.size == 0:
                raise ValueError(f"{where}: scores[{n!r}]={scores[n]!r} must be a non-empty (runs,) list")
    else:
        a = np.asarray(scores, np.float64)
        if a.ndim != 2 or 0 in a.shape:
            raise ValueError(f"{where}: scores of shape {a.shape} must be a (runs, tasks) matrix with at least one "
                             "of each, or a dict task -> (runs,)")
        names, cols = list(range(a.shape[1])), list(a.T)
    for n, c in zip(names, cols):
        if not np.all(np.isfinite(c)):
            raise ValueError(f"{where}: scores of task {n!r} must be finite, got {c.tolist()}")
    return names, cols


def stratified_bootstrap_ci(scores, statistic=iqm, confidence: float = 0.95, resamples: int = 10_000,
                            seed: int = 0) -> tuple[float, float]:
    """Stratified percentile bootstrap interval ``(low, high)`` of an aggregate over tasks
    (Agarwal et al., 2021; rliable's ``get_interval_estimates`` with ``task_bootstrap=False``).

    ``scores``: a ``(runs, tasks)`` matrix, or a dict ``task -> (runs,)`` whose tasks may have
    different numbers of runs. Each resample draws, within every task independently, as many
    runs as the task has, with replacement, and applies ``statistic`` to all the resampled
    (run, task) scores together, flattened task by task into one ``(N,)`` array (``N``: the runs
    of all tasks); by default the IQM of that array, as rliable's aggregate IQM. Aggregates
    across tasks want normalized scores (:func:`normalize`). ``(nan, nan)`` when no task has 2
    runs (nothing to resample).
    """

    where = "stratified_bootstrap_ci"
    _, cols = _tasks(scores, where)
    if not 0 < confidence < 1:
        raise ValueError(f"{where}: confidence={confidence!r} must be in (0, 1)")
    resamples = validate.integer(where, "resamples", resamples, 1)
    if max(c.size for c in cols) < 2:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    n = sum(c.size for c in cols)
    # resamples in blocks of at most ~4M scores, so the memory does not grow with `resamples`
    block = max(1, 4_000_000 // n)
    values = []
    for start in range(0, resamples, block):
        b = min(block, resamples - start)
        # runs are drawn within each task only: a task's spread, never the gaps between tasks,
        # makes the interval (a task with one run, or constant scores, adds no width)
        draw = np.concatenate([c[rng.integers(0, c.size, (b, c.size))] for c in cols], axis=1)  # (b, N)
        values.append(_along(statistic, draw, axis=1))
    values = np.concatenate(values)
    alpha = 1 - confidence
    low, high = np.quantile(values, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def normalize(scores, low, high):
    """Min-max normalized scores ``(x - low) / (high - low)`` of each task, with given reference
    scores per task (e.g. a random policy's as ``low`` and a reference agent's as ``high``: 0 and 1
    after normalization), so that aggregates across tasks weigh them alike.

    ``scores``: a ``(runs, tasks)`` matrix with ``low``, ``high`` scalars or ``(tasks,)``; or a
    dict ``task -> (runs,)`` with ``low``, ``high`` scalars or dicts ``task -> value`` (covering
    its tasks). Returns the same form as ``scores`` (an ``(runs, tasks)`` array, or a dict of
    ``(runs,)`` arrays). ``high < low`` flips the scale (tasks where lower is better); ``high ==
    low`` raises ValueError.
    """
    where = "normalize"
    names, cols = _tasks(scores, where)

    def refs(ref, field: str) -> np.ndarray:
        if isinstance(ref, Mapping):
            missing = [n for n in names if n not in ref]
            if missing:
                raise ValueError(f"{where}: {field}={ref!r} has no value for task(s) {missing}")
            ref = [ref[n] for n in names]
        r = np.asarray(ref, np.float64)
        if r.ndim > 1 or (r.ndim == 1 and r.size != len(names)) or not np.all(np.isfinite(r)):
            raise ValueError(f"{where}: {field}={ref!r} must be a finite scalar or one value per task "
                             f"({len(names)} tasks)")
        return np.broadcast_to(r, (len(names),))

    lo, hi = refs(low, "low"), refs(high, "high")
    same = [n for n, a, b in zip(names, lo, hi) if a == b]
    if same:
        raise ValueError(f"{where}: low={low!r} and high={high!r} are equal for task(s) {same}")
    out = [(c - a) / (b - a) for c, a, b in zip(cols, lo, hi)]
    if isinstance(scores, Mapping):
        return dict(zip(names, out))
    return np.stack(out, axis=1)

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


CURVE_STATISTICS = ("final", "auc", "slope", "stability", "seed_std", "steps_to_threshold")


def curve_statistics(steps, scores, seed_scores=None, threshold: float | None = None) -> dict[str, float]:
    """Statistics of one learning curve: ``scores (n,)`` at env steps ``steps (n,)`` (increasing,
    ``n >= 1``), with the per-seed scores ``seed_scores (n, S)`` if known.

    Returns ``{name: float}`` with the names of ``CURVE_STATISTICS``:

    - ``final``: the last score.
    - ``auc``: the area under the curve over env steps (trapezoid rule) divided by the steps it
      spans, i.e. a mean score that rewards learning early; the score itself with one point.
    - ``slope``: least-squares slope, score per 1M env steps, over the last half of the points
      (at least 2; NaN with one point): is it still improving when it stopped?
    - ``stability``: standard deviation (``ddof=1``) of the scores over the same last half
      (NaN with one point).
    - ``seed_std``: standard deviation (``ddof=1``) across seeds at the last point (NaN without
      ``seed_scores`` or with one seed).
    - ``steps_to_threshold``: the env steps of the first point whose score is ``>= threshold``
      (NaN if none is, or ``threshold`` is None).

    A NaN score (a phase in which no episode ended, a failed seed) makes NaN of the statistics
    that read it rather than being skipped.
    """
    where = "curve_statistics"
    x = np.asarray(steps, np.float64)
    y = np.asarray(scores, np.float64)
    if x.ndim != 1 or x.size == 0 or y.shape != x.shape:
        raise ValueError(f"{where}: steps of shape {x.shape} and scores of shape {y.shape} must both be (n,), n >= 1")
    if not np.all(np.isfinite(x)) or np.any(np.diff(x) <= 0):
        raise ValueError(f"{where}: steps={x.tolist()} must be finite and increasing")
    if threshold is not None:
        threshold = validate.number(where, "threshold", threshold)
    n = x.size
    if n == 1:
        auc, slope, stability = float(y[0]), math.nan, math.nan
    else:
        auc = float(np.trapezoid(y, x) / (x[-1] - x[0]))
        k = max(2, (n + 1) // 2)  # the last half, its middle point included
        xs, ys = x[-k:], y[-k:]
        dx = xs - xs.mean()
        slope = float((dx * (ys - ys.mean())).sum() / (dx * dx).sum() * 1e6)
        stability = float(np.std(ys, ddof=1))
    seed_std = math.nan
    if seed_scores is not None:
        s = np.asarray(seed_scores, np.float64)
        if s.ndim != 2 or s.shape[0] != n:
            raise ValueError(f"{where}: seed_scores of shape {s.shape} must be (n, seeds) with n = {n}")
        if s.shape[1] >= 2:
            seed_std = float(np.std(s[-1], ddof=1))
    reached = math.nan
    if threshold is not None:
        hit = np.flatnonzero(y >= threshold)  # NaN compares False: a point with no score never reaches it
        if hit.size:
            reached = float(x[hit[0]])
    return {"final": float(y[-1]), "auc": auc, "slope": slope, "stability": stability, "seed_std": seed_std,
            "steps_to_threshold": reached}


EXPLORATION_STATISTICS = ("entropy_initial", "entropy_final", "entropy_mean", "entropy_drop")


def exploration_statistics(entropies) -> dict[str, float]:
    """How a trial's policy explored: ``entropies (n,)``, the policy's entropy (nats) in each of
    its phases (``Trial.entropy_curve``; NaN where unknown).

    Returns ``{name: float}`` with the names of ``EXPLORATION_STATISTICS``: ``entropy_initial``
    and ``entropy_final`` (the first and last known value), ``entropy_mean`` (over the known
    phases) and ``entropy_drop`` (initial minus final: how far the policy committed; near 0 for
    one that stopped learning or never started, negative when it grew). All NaN when none is
    known (a failed trial, or a store written before entropies were recorded).
    """
    e = np.asarray(entropies, np.float64).reshape(-1)
    known = e[np.isfinite(e)]
    if not known.size:
        return dict.fromkeys(EXPLORATION_STATISTICS, math.nan)
    first, last = float(known[0]), float(known[-1])
    return {"entropy_initial": first, "entropy_final": last, "entropy_mean": float(known.mean()),
            "entropy_drop": first - last}


def trial_statistics(result, threshold: float | None = None):
    """:func:`curve_statistics` and :func:`exploration_statistics` of every trial of ``result``
    (a ``StudyResult``) that reached a phase boundary: a pandas DataFrame with one row per such
    trial and the columns ``trial``, the ``CURVE_STATISTICS``, the ``EXPLORATION_STATISTICS``,
    ``final_score`` and ``status``. A PBT child's curve holds its own points only (from the
    phase at which it took over its parent's members)."""
    import pandas as pd

    columns = ["trial", *CURVE_STATISTICS, *EXPLORATION_STATISTICS, "final_score", "status"]
    rows = []
    for t in result.trials:
        if not t.curve:
            continue
        # seed_curve[i] lists the seeds' scores at the i-th boundary: (n, S)
        seeds = np.asarray(t.seed_curve, np.float64) if len(t.seed_curve) == len(t.curve) else None
        if seeds is not None and seeds.ndim != 2:
            seeds = None
        stats = curve_statistics(t.curve_steps, t.curve, seeds, threshold)
        stats.update(exploration_statistics(t.entropy_curve))
        rows.append({"trial": t.id, **stats, "final_score": t.final_score, "status": t.status})
    return pd.DataFrame(rows, columns=columns)


def _trial_agent(result, t):
    """The agent ``t`` trained with: the study's agent with ``t``'s bucket's static settings."""
    from hyperjax.study.buckets import bucket_agent

    base = result.best_agent  # the study's agent with the best trial's bucket's settings
    statics = set(base.static_names())
    # result.buckets[b] adds the bucket's slots and steps_per_phase to its static settings; a
    # study read back from a store written before the summary has none: the trial's own config
    # holds the structural values too
    bucket = result.buckets[t.bucket] if t.bucket < len(result.buckets) else t.config
    return bucket_agent(base, {n: v for n, v in bucket.items() if n in statics})


def _trial_schedule(result, t, names) -> list[tuple[int, dict[str, float]]]:
    """``[(start_step, values)]`` of ``t``'s traced hyperparameters over its training: one entry,
    or a PBT child's lineage (as ``StudyResult.best_schedule`` for the best)."""
    chain = result.lineage(t.id)
    if len(chain) == 1:
        return [(0, {n: float(t.config[n]) for n in names if n in t.config})]
    if t.bucket >= len(result.buckets):
        raise ValueError(f"optimism: trial {t.id} is a PBT child, and the study records no steps_per_phase to "
                         "replay its lineage with")
    return result.schedule(t.id)


def optimism(result, top_k: int = 3, seeds: int = 3, seed: int = 1, total_timesteps: int | None = None,
             eval_episodes: int = 32):
    """How much the study's top scores flatter their configurations: the ``top_k`` scored trials
    of ``result`` (a ``StudyResult``; ``Trial.scored``, ranked by ``final_score``) re-trained with
    ``hj.train`` on ``seeds`` fresh seeds (keys from ``seed``, not the study's: choose one other
    than the study's seed) and evaluated greedily on ``eval_episodes`` episodes per seed.

    A trial is re-trained with its bucket's agent and its traced hyperparameters (a PBT child
    with its lineage's schedule, as ``StudyResult.best_schedule``) for ``total_timesteps`` env
    steps per member, by default the steps it trained (``curve_steps[-1]``). Trials of one bucket
    with one set of values and the same steps train in one ``hj.train`` call (one compile); a PBT
    child's schedule in a call of its own.

    Returns a pandas DataFrame, one row per trial, best tuning score first: ``trial``,
    ``tuning_score`` (its ``final_score``), ``test_score`` (mean over the fresh seeds; NaN if one
    failed), ``test_std`` (``ddof=1``; NaN with one seed) and ``optimism = tuning_score -
    test_score`` (positive: the study's score was optimistic, by selection among noisy scores).
    ValueError if the study has no scored trial.
    """
    import pandas as pd

    from hyperjax.train import train

    where = "optimism"
    top_k = validate.integer(where, "top_k", top_k, 1)
    seeds = validate.integer(where, "seeds", seeds, 1)
    eval_episodes = validate.integer(where, "eval_episodes", eval_episodes, 1)
    if total_timesteps is not None:
        total_timesteps = validate.integer(where, "total_timesteps", total_timesteps, 1)
    scored = sorted((t for t in result.trials if t.scored), key=lambda t: (-t.final_score, t.id))[:top_k]
    if not scored:
        raise ValueError(f"{where}: the study has no scored trial (completed, or stopped while running, with a "
                         "finite final evaluation) to re-train")

    returns: dict[int, np.ndarray] = {}  # trial id -> (seeds,) evaluation returns
    groups: dict[tuple, list] = {}  # (bucket, steps) -> [(trial, agent, values)]: one train call each
    for t in scored:
        agent = _trial_agent(result, t)
        steps = int(t.curve_steps[-1]) if total_timesteps is None else total_timesteps
        schedule = _trial_schedule(result, t, agent.hparam_names())
        if len(schedule) > 1:  # K = 1 with a schedule
            r = train(agent, schedule=schedule, total_timesteps=steps, num_seeds=seeds, seed=seed,
                      eval_episodes=eval_episodes)
            returns[t.id] = r.eval_returns[0]
        else:
            groups.setdefault((t.bucket, steps), []).append((t, agent, schedule[0][1]))
    for (_, steps), members in groups.items():
        agent = members[0][1]
        values = {n: [v[n] for _, _, v in members] for n in members[0][2]}  # (K,) leaves
        r = train(agent, values, total_timesteps=steps, num_seeds=seeds, seed=seed, eval_episodes=eval_episodes)
        for i, (t, _, _) in enumerate(members):
            returns[t.id] = r.eval_returns[i]

    rows = []
    for t in scored:
        ret = returns[t.id]  # NaN where a seed failed: the mean is NaN too
        test = float(ret.mean())
        std = float(np.std(ret, ddof=1)) if ret.size > 1 else math.nan
        rows.append({"trial": t.id, "tuning_score": t.final_score, "test_score": test, "test_std": std,
                     "optimism": t.final_score - test})
    return pd.DataFrame(rows, columns=["trial", "tuning_score", "test_score", "test_std", "optimism"])
