"""Slot-level simulation of schedulers on synthetic learning curves (no agent).

Trials flow through ``W`` slots that advance in lockstep, one phase per tick, as the vectorised
population does; a slot freed by an eviction or a completion is refilled at once from the queue
of ``N`` trials. Used by ``benchmarks/schedulers.py`` and the tests.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import numpy as np

from hyperjax.schedulers.specs import SPECS


class SimResult(NamedTuple):
    scheduler: str
    alive_after_phase: list[int]  # trials that went on past (or completed) each phase
    compute_fraction: float  # phases run / (N * P)
    slot_utilization: float  # busy slot-ticks / slot-ticks, while trials were still queued
    overall_utilization: float  # busy slot-ticks / slot-ticks over the whole study
    best_found_rank: int  # true rank (1 = best final score of all N) of the trial picked as best
    ticks: int


def synthetic_curves(rng: np.random.Generator, n: int, phases: int, noise: float = 0.1) -> np.ndarray:
    """``(n, phases)`` saturating curves with crossing: quality q ~ N(0, 1), speed tau ~ U(0.5, 4)."""
    q = rng.normal(size=(n, 1))
    tau = rng.uniform(0.5, 4.0, size=(n, 1))
    t = np.arange(1, phases + 1)[None]
    return q * (1.0 - np.exp(-t / tau)) + noise * rng.normal(size=(n, phases))


def _finish(name, curves, ran, kept_at, completed, busy_q, ticks_q, busy, ticks) -> SimResult:
    n, p = curves.shape
    alive = [int(np.sum(kept_at > ph)) for ph in range(p)]
    final = np.where(completed, curves[:, -1], -np.inf)
    best = int(np.argmax(final))
    true_rank = int(np.sum(curves[:, -1] > curves[best, -1])) + 1
    return SimResult(name, alive, float(ran.sum() / (n * p)), float(busy_q / max(ticks_q, 1)),
                     float(busy / max(ticks, 1)), true_rank, ticks)


def simulate_async(name: str, curves: np.ndarray, slots: int, rng: np.random.Generator, **kw) -> SimResult:
    """HyperTrick, ASHA, median stopping or none, with immediate refill."""
    n, p = curves.shape
    spec = SPECS.get(name)
    if spec is None or spec.kind != "asynchronous":
        allowed = ", ".join(k for k, v in SPECS.items() if v.kind == "asynchronous")
        raise ValueError(f"scheduler {name!r} is not an asynchronous rule; allowed: {allowed}")
    sched = spec(**kw).build(n, p, n)
    decide = jax.jit(sched.decide)
    state = sched.init()
    slot = np.full(slots, -1)
    phase_done = np.zeros(n, int)  # phases each trial has run
    kept_at = np.zeros(n, int)  # phases survived (== phase_done unless evicted at the last)
    completed = np.zeros(n, bool)
    queue = list(range(n))
    busy_q = ticks_q = busy = ticks = 0
    while queue or (slot >= 0).any():
        for i in np.flatnonzero(slot < 0):
            if queue:
                slot[i] = queue.pop(0)
        active = np.flatnonzero(slot >= 0)
        busy += len(active)
        ticks += slots
        if queue:
            busy_q += len(active)
            ticks_q += slots
        trials = slot[active]
        order = rng.permutation(len(trials))  # simultaneous arrivals: random order
        trials = trials[order]
        ph = phase_done[trials]
        scores = curves[trials, ph]
        phase_done[trials] += 1
        pad = slots - len(trials)  # fixed shapes: one compiled decide for every tick
        state, keep = decide(state, np.pad(ph, (0, pad)), np.pad(scores, (0, pad)).astype(np.float32),
                             np.pad(np.ones(len(trials), bool), (0, pad)))
        keep = np.asarray(keep)[: len(trials)]
        for t, k, a in zip(trials, keep, active[order]):
            if k:
                kept_at[t] = phase_done[t]
            if not k or phase_done[t] == p:
                completed[t] = bool(k and phase_done[t] == p)
                slot[a] = -1
    return _finish(name, curves, phase_done, kept_at, completed, busy_q, ticks_q, busy, ticks)


def simulate_successive_halving(curves: np.ndarray, slots: int, eta: int = 3, name: str = "successive_halving") -> SimResult:
    """Synchronous successive halving: rung ``i`` runs its trials to phase ``min(eta^i, P)`` in
    waves of ``slots``; only when the whole rung is done are the top ``1/eta`` promoted (paused
    trials resume from a checkpoint)."""
    n, p = curves.shape
    rungs = [min(eta**i, p) for i in range(int(math.ceil(math.log(p, eta))) + 1)]
    rungs = sorted(set(rungs))
    members = np.arange(n)
    phase_done = np.zeros(n, int)
    kept_at = np.zeros(n, int)
    completed = np.zeros(n, bool)
    busy = ticks = busy_q = ticks_q = 0
    for ri, target in enumerate(rungs):
        for w in range(0, len(members), slots):
            wave = members[w : w + slots]
            length = target - phase_done[wave].min()
            work = (target - phase_done[wave]).sum()
            busy += work
            ticks += slots * length
            if ri < len(rungs) - 1 or w + slots < len(members):  # trials still waiting to run
                busy_q += work
                ticks_q += slots * length
            phase_done[wave] = target
        scores = curves[members, target - 1]
        if target == p:
            completed[members] = True
            kept_at[members] = p
            break
        keep = max(1, len(members) // eta)
        top = members[np.argsort(-scores)[:keep]]
        kept_at[top] = target
        kept_at[np.setdiff1d(members, top)] = target - 1  # stopped at the rung itself
        members = top
    return _finish(name, curves, phase_done, kept_at, completed, busy_q, ticks_q, busy, ticks)
