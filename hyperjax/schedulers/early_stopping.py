"""Asynchronous early-stopping rules at phase boundaries, as pure JAX functions.

Every rule has the same shape::

    state = scheduler.init()
    state, keep = scheduler.decide(state, phase, score, arrived)
    state = scheduler.retarget(state, num_trials)   # HyperTrick's N changed: no recompile

- ``phase``  ``(W,)`` int: the phase (0-based) each slot's trial has just finished.
- ``score``  ``(W,)`` float: its score at that boundary (higher is better).
- ``arrived`` ``(W,)`` bool: which slots reached a boundary now; the others are untouched.
- ``keep``   ``(W,)`` bool: True where an arrived trial continues (and for slots that did not
  arrive). Arrivals are processed in slot order; pass slots sorted by arrival time.

A non-finite score (a failed member) is never kept and never recorded, so it can neither
survive nor move a quantile. The state records every score seen per phase, so decisions depend
on the history exactly as the asynchronous algorithms specify.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class RecordState:
    scores: jax.Array  # (num_phases, capacity) recorded scores, NaN where empty
    count: jax.Array  # (num_phases,) int32 scores recorded per phase
    # (num_phases,) float32: arrivals per phase that continue unconditionally (HyperTrick's
    # N (1 - sqrt r)(1 - r)^p; zero for the other rules). A leaf, not a constant of the
    # compiled rule, so that revising N does not compile again.
    free: jax.Array


class Scheduler(NamedTuple):
    name: str
    init: Callable[[], RecordState]
    decide: Callable[..., tuple[RecordState, jax.Array]]
    num_phases: int
    retarget: Callable[[RecordState, int], RecordState]  # the state for another N (HyperTrick)


Rule = Callable[[jax.Array, jax.Array, jax.Array, jax.Array, jax.Array], jax.Array]
# rule(phase, count_before, recorded_row_including_this_score, score, free[phase]) -> keep (bool)


def _make(name: str, num_phases: int, capacity: int, rule: Rule, free: Callable[[int], list[float]] | None = None,
          num_trials: int = 0) -> Scheduler:
    def free_row(n: int) -> jax.Array:
        return jnp.asarray(free(int(n)) if free is not None else [0.0] * num_phases, jnp.float32)

    def init() -> RecordState:
        return RecordState(jnp.full((num_phases, capacity), jnp.nan, jnp.float32), jnp.zeros(num_phases, jnp.int32),
                           free_row(num_trials))

    def retarget(state: RecordState, n: int) -> RecordState:
        return state.replace(free=free_row(n))

    def decide(state: RecordState, phase, score, arrived):
        phase = jnp.clip(jnp.asarray(phase, jnp.int32), 0, num_phases - 1)
        score = jnp.asarray(score, jnp.float32)

        def one(st: RecordState, x):
            p, s, a = x
            ok = jnp.isfinite(s)
            c = st.count[p]
            record = jnp.logical_and(a, ok)
            i = jnp.minimum(c, capacity - 1)
            row = st.scores[p].at[i].set(jnp.where(record, s, st.scores[p, i]))  # unchanged unless recorded
            keep = jnp.where(a, jnp.logical_and(ok, rule(p, c, row, s, st.free[p])), True)
            st = st.replace(scores=st.scores.at[p].set(row), count=st.count.at[p].add(record.astype(jnp.int32)))
            return st, keep

        return jax.lax.scan(one, state, (phase, score, jnp.asarray(arrived, bool)))

    return Scheduler(name, init, decide, num_phases, retarget)


def _check_common(num_phases: int, capacity: int) -> None:
    for field, v in (("num_phases", num_phases), ("capacity", capacity)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"scheduler: {field}={v!r} must be an integer >= 1")


def hypertrick(num_trials: int, eviction_rate: float, num_phases: int, capacity: int | None = None) -> Scheduler:
    """HyperTrick (Heinrich & Frosio, arXiv 1902.02725).

    With ``N = num_trials`` and eviction rate ``r``: the earliest ``N (1 - sqrt r)(1 - r)^(P-1)``
    trials to finish phase ``P`` (1-based) continue unconditionally; a later one is terminated
    if its score is in the bottom ``sqrt r`` quantile of the phase-``P`` scores recorded so far
    (itself included). The expected number alive after phase ``P`` is ``N (1 - r)^P``.
    """
    if not (isinstance(eviction_rate, (int, float)) and 0.0 < eviction_rate < 1.0):
        raise ValueError(f"hypertrick: r={eviction_rate!r} must be in (0, 1)")
    _check_common(num_phases, num_trials)
    sr = math.sqrt(eviction_rate)

    def free(n: int) -> list[float]:
        return [n * (1 - sr) * (1 - eviction_rate) ** p for p in range(num_phases)]

    def rule(p, count_before, row, s, free_p):
        q = jnp.nanquantile(row, sr)
        return jnp.logical_or(count_before.astype(jnp.float32) < jnp.floor(free_p), s >= q)

    return _make("hypertrick", num_phases, capacity or num_trials, rule, free, num_trials)


def asha(eta: float, num_phases: int, capacity: int) -> Scheduler:
    """ASHA (Li et al. 2020) in its stopping form: a trial reaching a rung continues iff it is in
    the top ``1/eta`` of that rung's scores so far (itself included; the first arrivals, while
    fewer than ``eta`` are recorded, continue only if they are the best so far)."""
    if not (isinstance(eta, (int, float)) and eta >= 2):
        raise ValueError(f"asha: eta={eta!r} must be >= 2")
    _check_common(num_phases, capacity)

    def rule(p, count_before, row, s, free_p):
        n = count_before + 1
        better = jnp.sum(jnp.where(jnp.isnan(row), False, row > s))  # strictly better recorded
        k = jnp.maximum(1, jnp.floor(n / eta).astype(jnp.int32))
        return better < k

    return _make("asha", num_phases, capacity, rule)


def median_stopping(num_phases: int, capacity: int, min_recorded: int = 5) -> Scheduler:
    """Median stopping (Golovin et al. 2017): stop a trial whose phase score is below the median
    of the scores other trials recorded at that phase, once ``min_recorded`` of them exist."""
    _check_common(num_phases, capacity)

    def rule(p, count_before, row, s, free_p):
        med = jnp.nanmedian(row)
        return jnp.logical_or(count_before < min_recorded, s >= med)

    return _make("median", num_phases, capacity, rule)


def no_stopping(num_phases: int, capacity: int) -> Scheduler:
    """Plain population random search: every trial runs every phase."""
    _check_common(num_phases, capacity)
    return _make("none", num_phases, capacity, lambda p, c, row, s, free_p: jnp.asarray(True))
