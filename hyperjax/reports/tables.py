"""The data behind each figure, as tidy tables (pandas), from a :class:`~hyperjax.reports.source.StudyData`.

Pure functions of the study's records: the interactive and the static figures draw the same
tables, and tests check the tables against the store.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import pandas as pd

from hyperjax.reports.source import NotApplicable, StudyData
from hyperjax.space import Choice, Int
from hyperjax.study.records import Trial


def config_text(config: dict[str, Any], sep: str = "<br>") -> str:
    """``name = value`` lines of a configuration (floats to 4 significant digits)."""
    return sep.join(f"{k} = {v:.4g}" if isinstance(v, float) else f"{k} = {v}" for k, v in config.items())


def tuned_config(data: StudyData, trial: Trial) -> dict[str, Any]:
    """The trial's values of the tuned dimensions only (the rest of a config is fixed)."""
    return {n: trial.config[n] for n in data.result.space.names if n in trial.config}


def trial_score(t: Trial) -> float:
    """The final evaluation of an evaluated trial (``Trial.scored``), else its last finite curve
    score (NaN if none)."""
    if t.scored:
        return float(t.final_score)
    finite = [c for c in t.curve if math.isfinite(c)]
    return float(finite[-1]) if finite else math.nan


def study_steps_at(data: StudyData, seconds: float) -> int:
    """Env steps the study had used (all members) by the tick that recorded an observation at
    ``seconds``: the first tick of the clock at or after that time."""
    clock = data.clock
    i = int(np.searchsorted(clock["seconds"].to_numpy(), seconds - 1e-9, side="left"))
    return int(clock["env_steps"].iloc[min(i, len(clock) - 1)]) if len(clock) else 0


def study_end(data: StudyData) -> tuple[float, int]:
    """``(seconds, env steps)`` where the study stands: its end, or its last committed tick."""
    res = data.result
    seconds = float(res.seconds) if res.seconds else float(data.clock["seconds"].max() if len(data.clock) else 0.0)
    steps = int(res.env_steps) if res.env_steps else (int(data.clock["env_steps"].max()) if len(data.clock) else 0)
    return seconds, steps


# -- 1. optimisation history ------------------------------------------------------------------------
def history(data: StudyData) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Completed trials' final scores and the best so far.

    Raises :class:`NotApplicable` before the first trial completes.

    Returns:
      points: one row per evaluated trial (``Trial.scored``: completed, or stopped by the
        study's end): ``trial``, ``seconds``
        (when it completed), ``env_steps`` (study env steps by then), ``score``, ``config``.
      best: the best-so-far step function: a row each time the best improved, plus one at the
        study's end (``trial`` -1) holding the last value; ``seconds``, ``env_steps``, ``score``,
        ``trial``. Non-decreasing; its last score is the highest first evaluation (the study's
        ``best`` may be another leader, chosen by the final re-evaluation).
    """
    rows = []
    for t in data.result.trials:
        if t.scored and t.curve_times:
            done = t.end_time if math.isfinite(t.end_time) else t.curve_times[-1]
            rows.append({"trial": t.id, "seconds": done, "env_steps": study_steps_at(data, t.curve_times[-1]),
                         "score": float(t.final_score), "config": config_text(tuned_config(data, t))})
    if not rows:
        raise NotApplicable("no trial has completed yet")
    points = pd.DataFrame(rows, columns=["trial", "seconds", "env_steps", "score", "config"])
    points = points.sort_values(["seconds", "trial"], kind="stable").reset_index(drop=True)
    best_rows, best = [], -math.inf
    for r in points.itertuples():
        if r.score > best:
            best = r.score
            best_rows.append({"seconds": r.seconds, "env_steps": r.env_steps, "score": r.score, "trial": r.trial})
    if best_rows:
        end_s, end_steps = study_end(data)
        best_rows.append({"seconds": max(end_s, best_rows[-1]["seconds"]),
                          "env_steps": max(end_steps, best_rows[-1]["env_steps"]), "score": best, "trial": -1})
    return points, pd.DataFrame(best_rows, columns=["seconds", "env_steps", "score", "trial"])


# -- 2. learning curves -----------------------------------------------------------------------------
def curves(data: StudyData) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Every trial's learning curve, where each stopped, and the best trial's.

    Returns:
      points: one row per (trial, phase boundary): ``trial``, ``status``, ``env_steps`` (per
        member), ``score``, ``seconds``; a PBT child's curve starts with its parent's point at
        the exploit (``fork`` True there), so lineages read as one line.
      ends: the last point of every evicted, failed or stopped trial: ``trial``, ``status``,
        ``env_steps``, ``score`` (its last finite score), ``reason``.
      best: the best trial's curve, its PBT ancestors' parts first: ``env_steps``, ``score``.
    """
    res = data.result
    by_id = {t.id: t for t in res.trials}
    rows, ends = [], []
    for t in res.trials:
        if t.parent is not None and t.curve and t.parent in by_id:
            p = by_id[t.parent]
            i = t.start_phase - p.start_phase - 1  # the parent's point at the exploit
            if 0 <= i < len(p.curve):
                rows.append({"trial": t.id, "status": t.status, "env_steps": p.curve_steps[i], "score": p.curve[i],
                             "seconds": p.curve_times[i], "fork": True})
        for s, c, w in zip(t.curve_steps, t.curve, t.curve_times):
            rows.append({"trial": t.id, "status": t.status, "env_steps": s, "score": c, "seconds": w, "fork": False})
        if t.status in ("evicted", "failed", "stopped") and t.curve:
            finite = [i for i, c in enumerate(t.curve) if math.isfinite(c)]
            i = finite[-1] if finite else len(t.curve) - 1
            ends.append({"trial": t.id, "status": t.status, "env_steps": t.curve_steps[i],
                         "score": t.curve[i] if finite else math.nan, "reason": t.end_reason})
    if not rows:
        raise NotApplicable("no trial has a score yet")
    points = pd.DataFrame(rows, columns=["trial", "status", "env_steps", "score", "seconds", "fork"])
    ends_df = pd.DataFrame(ends, columns=["trial", "status", "env_steps", "score", "reason"])
    steps, scores = res.best_curve
    return points, ends_df, pd.DataFrame({"env_steps": steps, "score": scores})


def exploration(data: StudyData) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The policy's entropy in every trial's phases.

    Returns:
      points: one row per (trial, phase) with a known entropy: ``trial``, ``status``,
        ``env_steps`` (per member, at the phase's end), ``entropy`` (nats).
      best: the best trial's, its PBT ancestors' parts first: ``env_steps``, ``entropy``.

    Raises :class:`NotApplicable` when no trial has a known entropy (none reached a phase
    boundary yet, or the store was written before entropies were recorded).
    """
    res = data.result
    rows = [{"trial": t.id, "status": t.status, "env_steps": s, "entropy": e}
            for t in res.trials for s, e in zip(t.curve_steps, t.entropy_curve) if math.isfinite(e)]
    if not rows:
        raise NotApplicable("no policy entropy recorded yet")
    steps, values = res.best_series("entropy_curve")
    return (pd.DataFrame(rows, columns=["trial", "status", "env_steps", "entropy"]),
            pd.DataFrame({"env_steps": steps, "entropy": values}))


# -- 3. parallel coordinates ------------------------------------------------------------------------
@dataclasses.dataclass
class Axis:
    """One axis of the parallel-coordinates plot: ``values (n,)`` in plotted units (log10 of the
    value on log dimensions, the index of the choice on Choice dimensions), the ``range`` shown
    and ``tickvals``/``ticktext`` in those units."""

    name: str
    kind: str  # "linear", "log" or "choice"
    values: np.ndarray
    range: tuple[float, float]
    tickvals: list[float]
    ticktext: list[str]


def _log_ticks(lo: float, hi: float) -> tuple[list[float], list[str]]:
    """Log10 positions and labels of round values between ``lo`` and ``hi`` (values > 0)."""
    from matplotlib.ticker import LogLocator

    for subs in ((1.0,), (1.0, 3.0), (1.0, 2.0, 5.0)):
        vals = [v for v in LogLocator(base=10, subs=subs).tick_values(lo, hi) if lo * 0.999 <= v <= hi * 1.001]
        if len(vals) >= 3:
            break
    if len(vals) < 2:
        vals = sorted({lo, hi})
    return [math.log10(v) for v in vals], [f"{v:.3g}" for v in vals]


def _axis(name: str, dim, raw: list) -> Axis:
    if isinstance(dim, Choice):
        idx = {repr(c): i for i, c in enumerate(dim.choices)}
        values = np.asarray([idx.get(repr(v), np.nan) for v in raw], np.float64)
        n = len(dim.choices)
        return Axis(name, "choice", values, (-0.5, n - 0.5), list(range(n)), [str(c) for c in dim.choices])
    x = np.asarray(raw, np.float64)
    lo, hi = float(dim.low), float(dim.high)
    finite = x[np.isfinite(x)]
    if len(finite):  # a PBT perturbation may step past the space's bounds: show all of it
        lo, hi = min(lo, float(finite.min())), max(hi, float(finite.max()))
    if dim.log and lo > 0:
        tv, tt = _log_ticks(lo, hi)
        return Axis(name, "log", np.log10(np.where(x > 0, x, np.nan)), (math.log10(lo), math.log10(hi)), tv, tt)
    from matplotlib.ticker import MaxNLocator

    ticks = [float(v) for v in MaxNLocator(5, integer=isinstance(dim, Int)).tick_values(lo, hi) if lo <= v <= hi]
    return Axis(name, "linear", x, (lo, hi), ticks, [f"{v:.4g}" for v in ticks])


def parallel(data: StudyData) -> tuple[list[Axis], np.ndarray, np.ndarray]:
    """Axes over the tuned hyperparameters of every trial with a finite score.

    Returns ``(axes, scores (n,), trial ids (n,))``; ``scores`` is the final evaluation of a
    completed trial, else its last score (:func:`trial_score`). Raises :class:`NotApplicable`
    if no trial has a finite score yet.
    """
    res = data.result
    kept = [t for t in res.trials if math.isfinite(trial_score(t))]
    if not kept:
        raise NotApplicable("no trial has a score yet")
    axes = [_axis(name, dim, [t.config.get(name) for t in kept]) for name, dim in res.space.dims.items()]
    return axes, np.asarray([trial_score(t) for t in kept]), np.asarray([t.id for t in kept])


# -- 5. slot timeline -------------------------------------------------------------------------------
def timeline(data: StudyData) -> pd.DataFrame:
    """Which trial held which slot when: one row per (trial, segment), in the store's
    ``segments`` order (trial, then segment index): ``trial``, ``slot``, ``start``, ``end``
    (study seconds; a segment still open ends where the study stands, ``open`` True),
    ``status`` (the trial's), ``reason``, ``config``."""
    end_s, _ = study_end(data)
    if not any(t.segments for t in data.result.trials):
        raise NotApplicable("no trial has started yet")
    rows = []
    for t in data.result.trials:
        cfg = config_text(tuned_config(data, t))
        for slot, a, b, _, _ in t.segments:
            is_open = not math.isfinite(b)
            end = max(end_s, float(a)) if is_open else float(b)
            rows.append({"trial": t.id, "slot": int(slot), "start": float(a), "end": end,
                         "open": is_open, "status": t.status, "reason": t.end_reason, "config": cfg})
    return pd.DataFrame(rows, columns=["trial", "slot", "start", "end", "open", "status", "reason", "config"])


# -- 6. PBT lineage ---------------------------------------------------------------------------------
def is_pbt(data: StudyData) -> bool:
    return data.result.scheduler == "pbt" or any(t.origin == "pbt" for t in data.result.trials)


def lineage(data: StudyData) -> tuple[pd.DataFrame, pd.DataFrame]:
    """PBT trials as nodes over phases, in the lane of the slot they ran in.

    Returns:
      nodes: one row per (trial, phase boundary): ``trial``, ``phase`` (phases since the
        lineage began, 1-based), ``slot``, ``score``, ``env_steps``, ``status``, ``config``.
      edges: one row per exploit: ``parent``, ``child``, ``phase`` (where the child forked off:
        the parent's phase), ``parent_slot``, ``child_slot``, ``child_phase`` (the child's first
        point, or the fork phase if it has none yet).

    Raises :class:`NotApplicable` for a study without PBT.
    """
    if not is_pbt(data):
        raise NotApplicable("not a PBT study", kind=True)
    res = data.result
    by_id = {t.id: t for t in res.trials}
    nodes, edges = [], []
    for t in res.trials:
        cfg = config_text(tuned_config(data, t))
        for i, (s, c) in enumerate(zip(t.curve_steps, t.curve)):
            nodes.append({"trial": t.id, "phase": t.start_phase + i + 1, "slot": t.slot, "score": c, "env_steps": s,
                          "status": t.status, "config": cfg})
        if t.parent is not None and t.parent in by_id:
            edges.append({"parent": t.parent, "child": t.id, "phase": t.start_phase,
                          "parent_slot": by_id[t.parent].slot, "child_slot": t.slot,
                          "child_phase": t.start_phase + (1 if t.curve else 0)})
    node_cols = ["trial", "phase", "slot", "score", "env_steps", "status", "config"]
    edge_cols = ["parent", "child", "phase", "parent_slot", "child_slot", "child_phase"]
    return pd.DataFrame(nodes, columns=node_cols), pd.DataFrame(edges, columns=edge_cols)


# -- the summary at the top of the report -----------------------------------------------------------
def summary_rows(data: StudyData) -> list[tuple[str, str]]:
    """``(label, value)`` rows describing the study: status, scheduler and proposer, trials by
    status, the best score and configuration, time, env steps and budget, slot utilisation."""
    res = data.result
    s = res.summary()
    cfg = data.config
    counts = {st: sum(t.status == st for t in res.trials) for st in ("running", "paused", "queued")}
    by_status = ", ".join(f"{s[k]} {k}" for k in ("completed", "evicted", "failed", "stopped"))
    by_status += "".join(f", {v} {k}" for k, v in counts.items() if v)
    notes = {"running": "running (a process is writing the store)",
             "interrupted": "interrupted before it finished (hj.resume(store) continues it)"}
    rows = [("status", notes.get(data.status, data.status))]
    if data.directory:
        rows.append(("store", data.directory))
    if cfg.get("agent"):
        rows.append(("agent", f"{cfg['agent'].get('name', '?')} on {cfg['agent'].get('env', '?')}"))
    rows.append(("scheduler", str(res.scheduler)))
    if cfg.get("proposer") is not None:
        rows.append(("proposer", str(cfg["proposer"] if isinstance(cfg["proposer"], str) else cfg["proposer"].get("object"))))
    rows.append(("trials", f"{s['trials']} ({by_status})"))
    rows.append(("slots", str(res.slots)))
    best = "-" if res.best is None else f"{res.best_score:.4g} (trial {res.best.id}, found at {res.found_best_at:.1f} s)"
    if res.best is not None and math.isfinite(res.best.reeval_score):
        n = sum(math.isfinite(t.reeval_score) for t in res.trials)
        if res.best.reseed_scores:
            best += (f"; its configuration {res.best.reseed_score:.4g} retrained on {len(res.best.reseed_scores)} fresh "
                     f"seeds, the highest of the {n} leaders (policy re-evaluated: {res.best.reeval_score:.4g})")
        else:
            best += f"; {res.best.reeval_score:.4g} re-evaluated on fresh episodes, the highest of the {n} leaders"
    rows.append(("best score", best))
    if (res.selection or {}).get("retrain_dropped"):
        rows.append(("final choice", "the highest first evaluation: retraining the leaders on fresh seeds was "
                                     "dropped (expected to take more than a quarter of max_seconds)"))
    if res.best is not None:
        rows.append(("best configuration", config_text(tuned_config(data, res.best), sep="; ")))
    budget = cfg.get("budget")
    steps = f"{int(res.env_steps):,}" + (f" of {int(budget):,} ({100 * res.env_steps / budget:.0f}%)" if budget else "")
    rows.append(("env steps", steps))
    rows.append(("study time", f"{res.seconds:.1f} s over {res.ticks} ticks"))
    if res.timing:
        rows.append(("tuner overhead", f"{100 * s['tuner_fraction']:.1f}% of the study time"))
    if res.slot_utilization:
        rows.append(("slot utilisation", ", ".join(f"{k.replace('_', ' ')} {100 * v:.0f}%"
                                                   for k, v in res.slot_utilization.items())))
    if data.meta.get("created"):
        rows.append(("created", str(data.meta["created"])))
    return rows


def top_trials(data: StudyData, n: int = 10) -> pd.DataFrame:
    """The first ``n`` evaluated trials in the study's order (``StudyResult.ranking``: the
    re-evaluated leaders first, the best on top): ``trial``, ``final score``, ``re-evaluated``
    and ``retrained`` (when any was), the tuned hyperparameters, ``env steps``."""
    res = data.result
    reeval = any(math.isfinite(t.reeval_score) for t in res.trials)
    reseed = any(t.reseed_scores for t in res.trials)
    done = res.ranking()[:n]
    rows = [{"trial": t.id, "final score": round(t.final_score, 4),
             **({"re-evaluated": round(t.reeval_score, 4) if math.isfinite(t.reeval_score) else None} if reeval else {}),
             **({"retrained": round(t.reseed_score, 4) if t.reseed_scores else None} if reseed else {}),
             **{k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in tuned_config(data, t).items()},
             "env steps": t.env_steps} for t in done]
    return pd.DataFrame(rows)
