"""Reading a study back from its store: ``load_study(dir)`` returns the ``StudyResult`` a live
study returns, from a finished, killed or running study (the store is opened read-only)."""

from __future__ import annotations

import json
import math
import os
from typing import Any

import jax
import numpy as np

from hyperjax import config as cfgmod
from hyperjax.store import check_directory, connect, exists, read_meta
from hyperjax.study.buckets import bucket_agent, enumerate_buckets
from hyperjax.study.records import StudyResult, Trial


def member_like(agent, seeds: int, base_hp: dict[str, float]) -> Any:
    """Shapes and dtypes (``jax.ShapeDtypeStruct`` on the first device) of one trial's members
    ``(seeds, ...)`` for ``agent``: what a checkpoint is restored into."""
    hp = agent.hparams(**base_hp)
    keys = jax.random.split(jax.random.key(0), seeds)
    shapes = jax.eval_shape(jax.vmap(lambda k: agent.init(k, hp)), keys)
    dev = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=dev), shapes)


def _float(x) -> float:
    return math.nan if x is None else float(x)


def read_trials(conn) -> list[Trial]:
    """Every trial of a store, with its curve and slot segments."""
    trials = {}
    for r in conn.execute("SELECT * FROM trials ORDER BY id"):
        trials[r["id"]] = Trial(
            id=r["id"], config=json.loads(r["config"]), u=np.asarray(json.loads(r["u"]), np.float64), bucket=r["bucket"],
            seeds=tuple(range(r["seeds"])), origin=r["origin"], parent=r["parent"], status=r["status"],
            end_reason=r["end_reason"], phases=r["phases"], start_phase=r["start_phase"],
            final_score=_float(r["final_score"]), final_scores=json.loads(r["final_scores"]), env_steps=r["env_steps"],
            compute_seconds=r["compute_seconds"])
        if "reeval_score" in r.keys():  # stores written before the final re-evaluation lack it
            trials[r["id"]].reeval_score = _float(r["reeval_score"])
            trials[r["id"]].reeval_scores = json.loads(r["reeval_scores"] or "[]")
        if "reseed_score" in r.keys():
            scores = json.loads(r["reseed_scores"] or "[]")
            trials[r["id"]].reseed_scores = [math.nan if v is None else float(v) for v in scores]
            # NULL is -inf when a run diverged (NaN among the runs), else no retraining
            diverged = any(math.isnan(v) for v in trials[r["id"]].reseed_scores)
            trials[r["id"]].reseed_score = -math.inf if r["reseed_score"] is None and diverged else _float(r["reseed_score"])
    for r in conn.execute("SELECT * FROM observations ORDER BY trial, phase"):
        t = trials[r["trial"]]
        t.curve.append(_float(r["score"]))
        t.curve_steps.append(r["env_steps"])
        t.curve_times.append(r["seconds"])
        t.seed_curve.append(json.loads(r["seed_scores"]))
        t.entropy_curve.append(_float(r["entropy"]) if "entropy" in r.keys() else math.nan)
    for r in conn.execute("SELECT * FROM segments ORDER BY trial, idx"):
        trials[r["trial"]].segments.append([r["slot"], _float(r["start"]), _float(r["end"]), r["start_tick"], r["end_tick"]])
    for t in trials.values():  # JSON has no tuples: tuple-valued settings (layer widths) come back as lists
        t.config = {k: tuple(v) if isinstance(v, list) else v for k, v in t.config.items()}
    return [trials[i] for i in sorted(trials)]


def _read_store(directory: str, where: str) -> tuple[str, dict, list[Trial], dict]:
    """The checked directory, study metadata, trials and each trial's ``params_tick``."""
    directory = check_directory(directory, f"{where}: directory")
    if not exists(directory):
        raise ValueError(f"{where}: {directory!r} holds no hyperjax study")
    conn = connect(directory, readonly=True)
    try:
        meta = read_meta(conn)
        trials = read_trials(conn)
        params_tick = dict(conn.execute("SELECT id, params_tick FROM trials").fetchall())
    finally:
        conn.close()
    return directory, meta, trials, params_tick


def load_study(directory: str, params: bool = True) -> StudyResult:
    """The :class:`StudyResult` of the study stored in ``directory``.

    Works while the study runs (it reads the last committed tick) and after it was killed.
    ``params=False`` skips reading the best trial's parameters (``best_state`` is then
    ``None``). A running or killed study's running trials keep the status they had.
    """
    directory, meta, trials, params_tick = _read_store(directory, "load_study")
    c = meta["config"]
    s = meta.get("summary") or {}
    agent = cfgmod.agent_from_dict(c["agent"])
    space = cfgmod.space_from_dict(c["space"])
    buckets, _ = enumerate_buckets(space, agent)
    best_id = s.get("best", -1)
    best = trials[best_id] if best_id is not None and 0 <= best_id < len(trials) else None
    best_agent = agent if best is None else bucket_agent(agent, buckets[best.bucket])
    best_state = None
    if best is not None and params and params_tick.get(best.id) is not None:
        best_state = _final_members(directory, trials, params_tick, best.id, agent, buckets, c["fixed"])
    return StudyResult(
        trials=trials, best=best, best_state=best_state, best_agent=best_agent,
        scheduler=s.get("scheduler", c["scheduler"]["name"]), space=space, slots=s.get("slots", c["slots"]),
        seconds=s.get("seconds", 0.0), env_steps=s.get("env_steps", 0), ticks=s.get("ticks", 0),
        found_best_at=_float(s.get("found_best_at")), timing=s.get("timing", {}),
        slot_utilization=s.get("slot_utilization", {}), buckets=s.get("buckets", []),
        objective=c.get("objective", "final"), selection=s.get("selection"),
    )


def load_trial_params(directory: str, trial_id: int) -> tuple[Any, Any]:
    """Trial ``trial_id``'s agent (its structural bucket's settings) and final members.

    Returns ``(agent, members)``: ``members`` is a ``MemberState`` whose leaves have a leading
    axis ``(seeds, ...)``, one member per seed, as numpy arrays. Only evaluated trials
    (completed, or stopped while running by the study's end) have saved members (every one with
    ``keep_params=True``, the default; else only the best).

    Raises:
      ValueError: ``directory`` holds no study, ``trial_id`` is not one of its trials, or the
        trial has no saved members (the message names the trial, its status and the trials
        that have some).
    """
    where = "load_trial_params"
    directory, meta, trials, params_tick = _read_store(directory, where)
    if isinstance(trial_id, (bool, np.bool_)) or not isinstance(trial_id, (int, np.integer)) \
            or not 0 <= trial_id < len(trials):
        raise ValueError(f"{where}: trial_id={trial_id!r} is not a trial of this study (ids 0..{len(trials) - 1})")
    trial_id = int(trial_id)
    saved = [t.id for t in trials if params_tick.get(t.id) is not None]
    t = trials[trial_id]
    c = meta["config"]
    agent = cfgmod.agent_from_dict(c["agent"])
    buckets, _ = enumerate_buckets(cfgmod.space_from_dict(c["space"]), agent)
    members = None
    if params_tick.get(trial_id) is not None:
        members = _final_members(directory, trials, params_tick, trial_id, agent, buckets, c["fixed"])
    if members is None:
        why = t.status + (f": {t.end_reason}" if t.end_reason else "")
        raise ValueError(
            f"{where}: trial {trial_id} has no saved parameters (status {why}; only evaluated trials' "
            f"final members are kept, all of them with keep_params=True); trials with saved parameters: "
            f"{', '.join(map(str, saved)) or 'none yet'}")
    return bucket_agent(agent, buckets[t.bucket]), members


def _final_members(directory: str, trials: list[Trial], params_tick: dict, trial_id: int, agent, buckets,
                   fixed: dict) -> Any:
    """Trial ``trial_id``'s final members from ``params/`` (``None`` if not written yet)."""
    from hyperjax.store.checkpoint import Checkpoints

    tick = params_tick[trial_id]
    defaults = agent.HParams()
    base_hp = {n: float(fixed.get(n, getattr(defaults, n))) for n in agent.hparam_names()}
    # every trial saved at that tick, each shaped by its own bucket's agent
    like = {str(t.id): member_like(bucket_agent(agent, buckets[t.bucket]), len(t.seeds), base_hp)
            for t in trials if params_tick.get(t.id) == tick}
    try:
        return jax.device_get(Checkpoints(os.path.join(directory, "params")).restore(tick, like)[str(trial_id)])
    except FileNotFoundError:
        return None
