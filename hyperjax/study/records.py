"""Trial records and study results (host side, plain Python and numpy).

Trials are the unit of record, slots the unit of compute: a :class:`Trial` is one configuration
with its seeds; it holds a slot while it runs (several slots in turn if it was paused and
resumed by a synchronous scheduler) and keeps its learning curve at every phase boundary.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

# Statuses a trial goes through: queued -> running [-> paused -> running ...] -> one of the
# final ones. "stopped" means the study ended (time or budget) while it was running, queued or
# paused; a trial stopped while running was evaluated like a completed one.
FINAL = ("completed", "evicted", "failed", "stopped")


@dataclasses.dataclass
class Trial:
    """One configuration and everything recorded about it.

    ``curve[i]`` is the trial's score (mean over seeds of the training-episode return in the
    second half of the phase) at the ``i``-th phase boundary it reached, ``curve_steps[i]`` the
    env steps per member at that boundary. ``final_score`` is the mean greedy evaluation return
    over held-apart episodes, set for completed trials and for trials the study's end stopped
    while they ran (NaN for the others). ``entropy_curve[i]`` is the policy's entropy (nats, the
    mean over the phase's updates, minibatches and seeds) in the phase ending at boundary ``i``:
    how much the policy still explores (NaN where a seed failed; empty in stores written before
    it was recorded). ``reeval_score`` is the objective of its re-evaluation on fresh episodes
    when the study ended (``tune(reevaluate=...)``: set for the leading trials only, NaN for the
    others; ``reeval_scores`` the per-seed mean returns). ``reseed_score`` is the objective of
    its configuration retrained from scratch on fresh seeds when the study ended
    (``tune(reevaluate_seeds=R)``; ``reseed_scores`` the ``R * seeds`` runs' mean returns, run
    major; ``-inf`` when a run diverged).
    """

    id: int
    config: dict[str, Any]
    u: np.ndarray  # (d,) point of the unit cube it came from
    bucket: int
    seeds: tuple[int, ...]
    origin: str = "proposer"  # or "pbt" (an exploit/explore child)
    parent: int | None = None  # PBT: the trial whose state it copied
    status: str = "queued"
    end_reason: str = ""
    phases: int = 0  # phase boundaries reached (PBT children count from their parent's)
    start_phase: int = 0  # phases already behind it when it started (PBT children: the parent's)
    curve: list[float] = dataclasses.field(default_factory=list)
    curve_steps: list[int] = dataclasses.field(default_factory=list)
    curve_times: list[float] = dataclasses.field(default_factory=list)  # study seconds at each boundary
    seed_curve: list[list[float]] = dataclasses.field(default_factory=list)  # per seed, at each boundary
    entropy_curve: list[float] = dataclasses.field(default_factory=list)  # policy entropy in each phase
    final_score: float = math.nan
    final_scores: list[float] = dataclasses.field(default_factory=list)  # per seed
    env_steps: int = 0  # env steps it consumed, all seeds together
    compute_seconds: float = 0.0  # its share of the tick times while it held a slot
    segments: list[list] = dataclasses.field(default_factory=list)  # [slot, start_s, end_s, start_tick, end_tick]
    reeval_score: float = math.nan  # the final re-evaluation's objective (leaders only)
    reeval_scores: list[float] = dataclasses.field(default_factory=list)  # its per-seed mean returns
    reseed_score: float = math.nan  # its configuration retrained on fresh seeds (leaders only)
    reseed_scores: list[float] = dataclasses.field(default_factory=list)  # those runs' mean returns

    @property
    def slot(self) -> int:
        """The slot it ran in last (-1 if it never ran)."""
        return self.segments[-1][0] if self.segments else -1

    @property
    def start_time(self) -> float:
        return self.segments[0][1] if self.segments else math.nan

    @property
    def end_time(self) -> float:
        return self.segments[-1][2] if self.segments else math.nan

    @property
    def scored(self) -> bool:
        """Completed, or stopped while running, with a finite final evaluation: a candidate for
        the best."""
        return self.status in ("completed", "stopped") and math.isfinite(self.final_score)

    @property
    def last_score(self) -> float:
        return self.curve[-1] if self.curve else math.nan

    @property
    def last_entropy(self) -> float:
        return self.entropy_curve[-1] if self.entropy_curve else math.nan

    def row(self) -> dict[str, Any]:
        """A flat dict for the trials DataFrame (config values as ``config/<name>`` columns)."""
        out = {
            "trial": self.id,
            "status": self.status,
            "end_reason": self.end_reason,
            "bucket": self.bucket,
            "origin": self.origin,
            "parent": -1 if self.parent is None else self.parent,
            "phases": self.phases,
            "final_score": self.final_score,
            "reeval_score": self.reeval_score,
            "reseed_score": self.reseed_score,
            "last_score": self.last_score,
            "entropy": self.last_entropy,
            "env_steps": self.env_steps,
            "compute_seconds": self.compute_seconds,
            "slot": self.slot,
            "start_time": self.start_time,
            "end_time": self.end_time,
            "seeds": len(self.seeds),
        }
        out.update({f"config/{k}": v for k, v in self.config.items()})
        return out

    def state_dict(self) -> dict[str, Any]:
        """Plain data (lists, numbers, strings; ``u`` an array); :meth:`from_state` inverts it."""
        d = dataclasses.asdict(self)
        d["u"] = np.asarray(self.u, np.float64)
        d["seeds"] = list(self.seeds)
        d["config"] = {k: _plain(v) for k, v in self.config.items()}
        return d

    @classmethod
    def from_state(cls, d: dict[str, Any]) -> "Trial":
        d = dict(d)
        d["u"] = np.asarray(d["u"], np.float64)
        d["seeds"] = tuple(d["seeds"])
        d["segments"] = [list(seg) for seg in d["segments"]]
        return cls(**d)


def _plain(v):
    return v.item() if isinstance(v, np.generic) else v


# What a study optimises (``tune(objective=...)``): the scheduler's and the proposer's score at
# each phase boundary, and what ranks evaluated trials for the best.
OBJECTIVES = ("final", "auc", "lcb")


def phase_objective(objective: str, curve: list[float], seed_scores: np.ndarray) -> float:
    """The objective at a phase boundary, from the trial's curve so far (``curve[-1]`` the mean
    over seeds at this boundary, finite) and this boundary's per-seed scores ``(S,)``:
    ``"final"``: ``curve[-1]``; ``"auc"``: the mean of the finite curve points so far (the
    area under the curve per env step, phases being equal); ``"lcb"``: the mean over seeds minus
    their standard deviation (ddof 1), which prefers what works on every seed."""
    if objective == "final":
        return float(curve[-1])
    if objective == "auc":
        c = np.asarray(curve, np.float64)
        return float(c[np.isfinite(c)].mean())
    return float(np.mean(seed_scores) - np.std(seed_scores, ddof=1))


def final_objective(objective: str, trial: "Trial") -> float:
    """The objective of an evaluated trial, what ranks it for the best: ``"final"``: its mean
    greedy evaluation ``final_score``; ``"auc"``: the mean of its finite curve points (training
    returns at every phase boundary); ``"lcb"``: the mean of its per-seed evaluations minus their
    standard deviation (ddof 1). NaN when it has no finite final evaluation (it was not
    evaluated, or failed)."""
    if not math.isfinite(trial.final_score) or trial.status in ("failed", "evicted"):
        return math.nan
    if objective == "final":
        return trial.final_score
    if objective == "auc":
        c = np.asarray(trial.curve, np.float64)
        c = c[np.isfinite(c)]
        return float(c.mean()) if c.size else math.nan
    v = np.asarray(trial.final_scores, np.float64)
    return float(v.mean() - v.std(ddof=1))


@dataclasses.dataclass
class StudyResult:
    """What ``tune`` returns.

    Attributes:
      trials: every trial, in the order they were created.
      best: the study's choice among the completed trials and those the study's end stopped
        while they ran (evaluated then; ``best.status`` says which), never a failed one;
        ``None`` if no trial was evaluated. With ``tune(reevaluate=k)`` the k leading trials by
        the objective were evaluated again on fresh episodes when the study ended and ``best``
        is the one that scored highest there (its ``reeval_score``), or with
        ``reevaluate_seeds`` the one whose configuration scored highest retrained on fresh
        seeds (``reseed_score``); :attr:`best_score` stays its first evaluation, which may be
        below another trial's. Else (the default) the trial with the highest objective.
      best_state: the best trial's member states (leading axis = its seeds): ``.params`` are the
        trained Flax parameters.
      best_agent: the agent (static settings of the best trial's bucket).
      found_best_at: study seconds at which the best trial's final score was recorded.
      seconds: wall time; ``timing`` splits it into ``setup`` (building the pools), ``train``
        (advancing members), ``evaluate``, ``tuner`` (scheduling, refills, recording, host
        round-trips) and ``compile`` (measured, taken out of the section it happened in).
      env_steps: env steps used by all members of all trials.
      slot_utilization: occupied slot-ticks / slot-ticks, ``"while_queued"`` (ticks at which
        more work was waiting) and ``"overall"``; ``"compute"``: occupied member-phases /
        member-phases the device ran (``tune(compact=True)`` runs fewer members when few slots
        are occupied, so idle slots cost less than their share of ``"overall"`` says).
      objective: what the study optimised (``OBJECTIVES``); it ranks the trials for
        :attr:`best` (:func:`final_objective`; for ``"final"``, the ``final_score``), and the
        re-evaluation of the leaders with it.
      selection: how :attr:`best` was chosen: ``{"reevaluate": k, "reevaluate_seeds": R,
        "retrain_dropped": bool}`` (``tune``'s arguments resolved; ``retrain_dropped``: the
        retraining ``"auto"`` chose was dropped because it would have taken more than a quarter
        of ``max_seconds``); ``None`` for a study stored before it was recorded.
    """

    trials: list[Trial]
    best: Trial | None
    best_state: Any
    best_agent: Any
    scheduler: str
    space: Any
    slots: int
    seconds: float
    env_steps: int
    ticks: int
    found_best_at: float
    timing: dict[str, float]
    slot_utilization: dict[str, float]
    buckets: list[dict[str, Any]]
    proposer: Any = None
    objective: str = "final"
    selection: dict[str, Any] | None = None

    @property
    def best_config(self) -> dict[str, Any] | None:
        return None if self.best is None else dict(self.best.config)

    @property
    def best_score(self) -> float:
        """The best trial's ``final_score`` (mean greedy evaluation return)."""
        return math.nan if self.best is None else self.best.final_score

    @property
    def best_objective(self) -> float:
        """The best trial's objective (``final_objective``; equals :attr:`best_score` for
        ``objective="final"``)."""
        return math.nan if self.best is None else final_objective(self.objective, self.best)

    @property
    def best_curve(self) -> tuple[np.ndarray, np.ndarray]:
        """``(env_steps (n,), scores (n,))`` of the best trial, its PBT ancestors' segments first."""
        return self.best_series("curve")

    def best_series(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """``(env_steps (n,), values (n,))`` of the best trial's per-boundary record ``name``
        (``"curve"``, ``"entropy_curve"``), its PBT ancestors' segments first; empty without a
        best."""
        if self.best is None:
            return np.zeros(0, np.int64), np.zeros(0)
        chain = self.lineage(self.best.id)
        steps: list[int] = []
        values: list[float] = []
        for i, t in enumerate(chain):
            # an ancestor's points up to where the next generation forked off it
            own = getattr(t, name)
            upto = chain[i + 1].start_phase - t.start_phase if i + 1 < len(chain) else len(own)
            steps.extend(t.curve_steps[:len(own)][:upto])
            values.extend(own[:upto])
        return np.asarray(steps, np.int64), np.asarray(values, np.float64)

    def best_schedule(self) -> list[tuple[int, dict[str, float]]]:
        """The best trial's traced hyperparameters over its training, oldest first:
        ``[(start_step, values), ...]`` with env steps per member. One entry unless PBT changed
        them (a child continues its parent's members from the parent's phase with its own
        values); ``hj.train(agent, schedule=...)`` replays it on fresh seeds (PBT's pick is a
        schedule: its last values alone do not reproduce it). Empty without a best."""
        return [] if self.best is None else self.schedule(self.best.id)

    def schedule(self, trial_id: int) -> list[tuple[int, dict[str, float]]]:
        """Trial ``trial_id``'s traced hyperparameters over its training, as
        :meth:`best_schedule` gives the best trial's."""
        t = next(x for x in self.trials if x.id == trial_id)
        names = self.best_agent.hparam_names()
        steps = int(self.buckets[t.bucket]["steps_per_phase"])
        out: list[tuple[int, dict[str, float]]] = []
        for t in self.lineage(trial_id):
            entry = (t.start_phase * steps, {n: float(t.config[n]) for n in names if n in t.config})
            if out and out[-1][0] == entry[0]:
                out[-1] = entry  # a child that took over at once
            else:
                out.append(entry)
        return out

    @property
    def best_params(self) -> Any:
        return None if self.best_state is None else self.best_state.params

    def evaluate_best(self, episodes: int = 64, seed: int = 1) -> float:
        """The best trial's trained policy evaluated greedily on ``episodes`` fresh episodes per
        seed (keys from ``seed``, apart from the study's), mean over episodes and seeds."""
        if self.best_state is None:
            raise ValueError("the study has no completed trial to evaluate")
        import jax

        from hyperjax.population import get_runner

        runner = get_runner(self.best_agent)
        n = len(self.best.seeds)
        keys = jax.random.split(jax.random.key(seed), n)
        state = runner.place(self.best_state)
        returns = np.asarray(jax.device_get(runner.evaluate(keys, state, int(episodes))))[:n]
        return float(returns.mean())

    def lineage(self, trial_id: int) -> list[Trial]:
        """The trial and its PBT ancestors, oldest first."""
        by_id = {t.id: t for t in self.trials}
        chain = [by_id[trial_id]]
        while chain[-1].parent is not None:
            chain.append(by_id[chain[-1].parent])
        return chain[::-1]

    def dataframe(self):
        """One row per trial: status, scores, env steps, slot and times, ``config/<name>``."""
        import pandas as pd

        return pd.DataFrame([t.row() for t in self.trials])

    def curves(self):
        """Long-format curves: one row per (trial, phase boundary)."""
        import pandas as pd

        rows = [
            {"trial": t.id, "env_steps": s, "score": c, "seconds": w}
            for t in self.trials
            for s, c, w in zip(t.curve_steps, t.curve, t.curve_times)
        ]
        return pd.DataFrame(rows, columns=["trial", "env_steps", "score", "seconds"])

    def timeline(self):
        """Which trial held which slot, when: one row per (trial, slot segment)."""
        import pandas as pd

        rows = [
            {"trial": t.id, "slot": s, "start": a, "end": b, "start_tick": ta, "end_tick": tb, "status": t.status}
            for t in self.trials
            for s, a, b, ta, tb in t.segments
        ]
        return pd.DataFrame(rows, columns=["trial", "slot", "start", "end", "start_tick", "end_tick", "status"])

    def ranking(self) -> list[Trial]:
        """The evaluated trials (``Trial.scored``) in the study's order: the leaders it
        re-evaluated when it ended first, by what chose among them (their configurations
        retrained on fresh seeds, else their policies re-evaluated on fresh episodes; so the
        best is first), then the others by final score (ties: the earlier trial)."""
        reseed = any(t.reseed_scores for t in self.trials)

        def key(t):
            chose = t.reseed_score if reseed else t.reeval_score
            led = bool(t.reseed_scores) if reseed else math.isfinite(t.reeval_score)
            return (not led, -chose if led else 0.0, -t.final_score, t.id)

        return sorted((t for t in self.trials if t.scored), key=key)

    def best_so_far(self):
        """``(seconds, best objective)`` each time the highest first evaluation improved (the
        objective is the final score unless the study optimised another): the incumbent while
        the study ran (the final re-evaluation may then choose another leader as :attr:`best`)."""
        done = sorted(
            (t.end_time, final_objective(self.objective, t)) for t in self.trials if t.scored
        )
        out, best = [], -math.inf
        for when, score in done:
            if score > best:
                best = score
                out.append((when, score))
        return out

    def summary(self) -> dict[str, Any]:
        """Counts and headline numbers, JSON-friendly."""
        counts = {s: 0 for s in ("completed", "evicted", "failed", "stopped")}
        for t in self.trials:
            if t.status in counts:
                counts[t.status] += 1
        return {
            "scheduler": self.scheduler,
            **({"objective": self.objective, "best_objective": self.best_objective} if self.objective != "final" else {}),
            "trials": len(self.trials),
            **counts,
            "best_score": self.best_score,
            "best_config": self.best_config,
            "best_status": None if self.best is None else self.best.status,
            **({"best_reeval_score": self.best.reeval_score}
               if self.best is not None and math.isfinite(self.best.reeval_score) else {}),
            **({"best_reseed_score": self.best.reseed_score}
               if self.best is not None and math.isfinite(self.best.reseed_score) else {}),
            **({"selection": dict(self.selection)} if self.selection is not None else {}),
            "seconds": round(self.seconds, 2),
            "found_best_at": round(self.found_best_at, 2),
            "env_steps": int(self.env_steps),
            "tuner_fraction": round(self.timing.get("tuner", 0.0) / max(self.seconds, 1e-9), 4),
            "slot_utilization": {k: round(v, 4) for k, v in self.slot_utilization.items()},
        }
