"""Schedulers on synthetic learning curves, through the study's own engine and policies.

:class:`SyntheticPool` stands in for a bucket's :class:`~hyperjax.study.pool.Pool`: a member's
state is one number, its skill, and a phase of training moves it toward the configuration's cap
at the configuration's speed; the phase score is the skill plus noise. Everything else is the
real thing: :class:`~hyperjax.study.engine.Study` runs its ticks, the policies of
``hyperjax.study.policies`` decide (HyperTrick, ASHA, median, none, successive halving,
Hyperband, PBT: exploit copies the skill, explore moves the configuration), the engine applies.
So a simulation measures the decision code a study runs, in milliseconds, with no agent.

The configuration space is the unit square ``{"quality", "speed"}``: cap ``q = Phi^-1(quality)``
(a standard normal over the space), time constant ``tau = 0.5 + 3.5 speed`` phases, so a trial
run without interruption scores ``q (1 - exp(-t / tau)) + noise`` after ``t`` phases: slow
starters can overtake fast ones, as RL learning curves do.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import numpy as np
from scipy import stats

from hyperjax.analysis import expected_alpha
from hyperjax.proposers import make_proposer
from hyperjax.rng import as_key, generator_state, load_generator, numpy_rng
from hyperjax.schedulers.specs import scheduler_spec
from hyperjax.space import Float, SearchSpace
from hyperjax.study.engine import Study
from hyperjax.study.policies import POLICIES

SPACE = SearchSpace({"quality": Float(0.0, 1.0), "speed": Float(0.0, 1.0)})


def cap_and_rate(hp: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Cap ``q`` and per-phase rate ``1 - exp(-1 / tau)`` of configurations ``{name: (n,)}``."""
    q = stats.norm.ppf(np.clip(np.asarray(hp["quality"], np.float64), 1e-4, 1 - 1e-4))
    tau = 0.5 + 3.5 * np.clip(np.asarray(hp["speed"], np.float64), 0.0, 1.0)
    return q, 1.0 - np.exp(-1.0 / tau)


def true_final(config: dict[str, float], phases: int) -> float:
    """The noiseless score of ``config`` trained ``phases`` phases from scratch."""
    q, rate = cap_and_rate({k: np.asarray([v]) for k, v in config.items()})
    return float(q[0] * (1.0 - (1.0 - rate[0]) ** phases))


@dataclasses.dataclass
class _Metrics:
    return_sum: np.ndarray  # (M, 1)
    return_count: np.ndarray  # (M, 1)
    failed: np.ndarray  # (M, 1)
    entropy: np.ndarray  # (M, 1): NaN, a synthetic member has no policy


class _Evaluator:
    """``runner.evaluate``: a completed trial's final score is its noiseless skill."""

    def evaluate(self, keys, state, num_episodes):
        return np.repeat(state["skill"][:, None], num_episodes, axis=1)


class SyntheticPool:
    """The interface of ``pool.Pool`` over synthetic members (one env step per phase)."""

    def __init__(self, slots: int, seeds: int, noise: float, rng: np.random.Generator):
        self.index, self.bucket, self.offset, self.agent = 0, {}, 0, None
        self.slots, self.seeds, self.steps = slots, seeds, 1
        self.members = self.size = slots * seeds
        self.compact_sizes: tuple[int, ...] = ()  # no compaction: every member runs every tick
        self.advanced_index = None
        self.noise, self.rng = noise, rng
        self.trial = np.full(slots, -1, np.int64)
        self.hp = {n: np.full(slots, 0.5, np.float32) for n in SPACE.names}
        self.last_member_score = np.full(self.members, np.nan)
        self.state = {"skill": np.zeros(self.members)}
        self.runner, self.eval_keys = _Evaluator(), None
        self.just_failed: set[int] = set()
        self._new: list[int] = []
        self._resume: list[tuple[int, Any]] = []

    def members_of(self, slot: int) -> np.ndarray:
        return slot * self.seeds + np.arange(self.seeds)

    def expand(self, rows: np.ndarray) -> np.ndarray:
        return rows

    def set_hp(self, slot: int, values: dict[str, float]) -> None:
        for n, v in values.items():
            self.hp[n][slot] = v

    def take(self, slot: int) -> Any:
        return {"skill": self.state["skill"][self.members_of(slot)].copy()}

    def stage_new(self, slot: int) -> None:
        self._new.append(slot)
        self.last_member_score[self.members_of(slot)] = np.nan

    def stage_resume(self, slot: int, saved: Any, last_scores: np.ndarray) -> None:
        self._resume.append((slot, saved))
        self.last_member_score[self.members_of(slot)] = last_scores

    def flush(self) -> bool:
        skill = self.state["skill"].copy()
        for slot in self._new:
            skill[self.members_of(slot)] = 0.0
        for slot, saved in self._resume:
            skill[self.members_of(slot)] = saved["skill"]
        ran = bool(self._new or self._resume)
        self._new, self._resume = [], []
        self.state = {"skill": skill}
        return ran

    def copy_from(self, source_slot: dict[int, int]) -> None:
        src = np.arange(self.members)
        for s, f in source_slot.items():
            src[self.members_of(s)] = self.members_of(f)
        self.state = {"skill": self.state["skill"][src]}
        self.last_member_score = self.last_member_score[src]

    def advance(self) -> _Metrics:
        q, rate = cap_and_rate({n: np.repeat(v, self.seeds) for n, v in self.hp.items()})
        skill = self.state["skill"] + (q - self.state["skill"]) * rate
        self.state = {"skill": skill}
        score = skill + self.noise * self.rng.normal(size=self.members)
        return _Metrics(score[:, None], np.ones((self.members, 1)), np.zeros((self.members, 1), bool),
                        np.full((self.members, 1), np.nan))

    def occupied(self) -> np.ndarray:
        return np.flatnonzero(self.trial >= 0)

    def state_dict(self) -> dict:
        return {"trial": self.trial.copy(), "hp": {n: v.copy() for n, v in self.hp.items()},
                "last_member_score": self.last_member_score.copy(), "rng": generator_state(self.rng)}

    def load_state_dict(self, d: dict) -> None:
        self.trial = np.asarray(d["trial"], np.int64).copy()
        self.hp = {n: np.asarray(v, np.float32).copy() for n, v in d["hp"].items()}
        self.last_member_score = np.asarray(d["last_member_score"], np.float64).copy()
        self.rng = load_generator(d["rng"])


class SimResult(NamedTuple):
    scheduler: str
    trials: int
    alive_after_phase: list[int]  # trials that went on past (or completed) each phase
    compute_fraction: float  # phases run / (trials * P): the paper's alpha
    slot_utilization: float  # busy slot-ticks / slot-ticks, while work was waiting
    overall_utilization: float  # busy slot-ticks / slot-ticks over the whole study
    best_found_rank: int  # true rank (1 = best noiseless final score of all trials) of the pick
    ticks: int


def simulate(scheduler: Any, *, slots: int = 32, trials: int | None = 256, phases: int = 10, seed: int = 0,
             noise: float = 0.1, proposer: str = "random", budget: int | None = None) -> SimResult:
    """Runs ``scheduler`` (a name or spec) over ``trials`` synthetic trials of ``phases`` phases
    through ``slots`` slots, with the real engine and policy; PBT runs ``slots`` lineages for
    ``phases`` phases. ``budget`` (in trial-phases) defaults to ``trials * phases``.
    ``trials=None`` (with a ``budget``): as many as the budget affords, as ``tune`` without
    ``max_trials`` (HyperTrick's N from the budget)."""
    if trials is None and budget is None:
        raise ValueError("simulate: trials=None needs a budget")
    spec = scheduler_spec(scheduler)
    key = as_key(seed, "simulate: seed")
    k_prop, k_pool, k_rng, k_study = jax.random.split(key, 4)
    pool = SyntheticPool(slots, 1, noise, numpy_rng(k_pool))
    prop = make_proposer(proposer, SPACE, int(np.asarray(jax.random.key_data(k_prop))[-1]) % (2**31 - 1))
    budget = budget or (slots if spec.kind == "pbt" else trials) * phases
    study = Study(agent=None, space=SPACE, structural=(), buckets=[{}], pools=[pool], proposer=prop, num_phases=phases,
                  seeds=1, budget=budget, max_seconds=None, eval_episodes=1, base_hp={}, key=k_study,
                  scheduler_name=spec.name)
    max_trials = None if spec.kind in ("brackets", "pbt") else trials
    policy = POLICIES[spec.kind](study, spec, max_trials, numpy_rng(k_rng))
    res = study.run(policy)
    started = [t for t in res.trials if t.segments]
    alive = [sum(1 for t in started if t.phases > p + 1 or (t.phases == p + 1 and t.status == "completed"))
             for p in range(phases)]
    run = sum(t.phases - t.start_phase for t in started)
    finals = np.asarray([true_final({n: t.config[n] for n in SPACE.names}, phases) for t in started])
    best = res.best
    rank = (int(np.sum(finals > true_final({n: best.config[n] for n in SPACE.names}, phases))) + 1
            if best is not None else len(started) + 1)
    return SimResult(spec.name, len(started), alive, run / max(len(started) * phases, 1),
                     res.slot_utilization["while_queued"], res.slot_utilization["overall"], rank, res.ticks)


__all__ = ["SPACE", "SimResult", "SyntheticPool", "cap_and_rate", "expected_alpha", "simulate", "true_final"]
