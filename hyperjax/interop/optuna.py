"""A hyperjax study as an Optuna study: ``to_optuna(store_dir, storage)`` writes what a study's
store holds into an Optuna storage, so ``optuna-dashboard`` and ``optuna.visualization`` can
show it. The store is only read (a finished, killed or running study); exporting again with
``overwrite=True`` refreshes the copy of a study that is still running.

How hyperjax maps onto Optuna (one Optuna trial per hyperjax trial, numbers equal to ids):

- **Direction** maximize; the objective value is the trial's ``final_score`` (the greedy
  evaluation return), named ``"final_score"``. So Optuna's best trial is the highest first
  evaluation; hyperjax's best (``summary["best"]`` in the study's attributes) is the leader
  that scored highest when the leaders were re-evaluated on fresh episodes at the end: the
  user attributes ``"reeval_score"`` and ``"reeval_scores"`` of the trials that were.
- **Params** are the search space's dimensions only: ``Float`` -> ``FloatDistribution``,
  ``Int`` -> ``IntDistribution`` (``step=q`` where Optuna can hold it: not with ``log``, and
  only when ``high - low`` is a multiple of ``q``; else ``step=1``), ``Choice`` ->
  ``CategoricalDistribution``. Choices Optuna cannot hold (tuples such as layer widths) become
  their JSON text, ``(64, 64)`` -> ``"[64, 64]"``. Settings outside the space (agent defaults,
  ``fixed``) were not searched: they are the trial's user attribute ``"fixed"``, not params, so
  importances and parameter plots only show what was tuned.
- **Intermediate values** are the learning curve: ``curve[i]`` at step ``curve_steps[i]`` (env
  steps per member, counted from the start of a PBT lineage). Optuna's RDB storage could hold
  NaN, but JSON consumers (the dashboard) cannot: NaN points are left out and their steps listed
  in the user attribute ``"nan_score_steps"``.
- **States**: ``completed`` -> COMPLETE (a non-finite final score -> FAIL, as Optuna fails an
  objective returning NaN); ``evicted`` (by the scheduler) -> PRUNED, without a value (the value
  is an evaluation score only completed trials have; the last training score is the last
  intermediate value); ``failed`` -> FAIL; ``stopped`` (the study's budget or time ran out) ->
  FAIL, as Optuna marks a trial its study interrupted: not a pruning, so samplers continuing the
  study do not count it against its configuration; ``running`` and ``paused`` -> RUNNING;
  ``queued`` -> WAITING. The hyperjax status and why a trial failed are user attributes.
- **Times**: ``datetime_start``/``datetime_complete`` are the store's ``created`` time plus the
  trial's first segment start and last segment end (study-clock seconds), in local time without
  a zone, as Optuna records its own.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import warnings
from typing import Any

from hyperjax import config as cfgmod
from hyperjax.space import Choice, Int
from hyperjax.store import check_directory, connect, exists, read_meta
from hyperjax.study.reader import read_trials
from hyperjax.study.records import Trial

METRIC = "final_score"
_CATEGORICAL_TYPES = (type(None), bool, int, float, str)


def import_optuna():
    """The ``optuna`` module, or ImportError saying how to install it."""
    try:
        import optuna
    except ImportError as e:
        raise ImportError("to_optuna needs Optuna: pip install 'hyperjax[optuna]' (or pip install optuna)") from e
    return optuna


# -- reading the store ------------------------------------------------------------------------
def read_store(store_dir: Any) -> tuple[dict, list[Trial]]:
    """``(meta, trials)`` of the study in ``store_dir``: the ``study`` table (``config``,
    ``versions``, ``created``, ``status``, ``summary``) and every trial, read in one read
    transaction so a running study gives one consistent tick."""
    directory = check_directory(store_dir, "to_optuna: store_dir")
    if not exists(directory):
        raise ValueError(f"to_optuna: store_dir={os.fspath(store_dir)!r} holds no hyperjax study")
    conn = connect(directory, readonly=True)
    try:
        conn.execute("BEGIN")
        meta = read_meta(conn)
        trials = read_trials(conn)
    finally:
        conn.close()
    return meta, trials


# -- params and distributions -----------------------------------------------------------------
def param_value(dim, value: Any) -> Any:
    """A configuration value as an Optuna param: choices Optuna cannot hold (tuples, lists)
    become their JSON text; numpy scalars become Python ones."""
    value = cfgmod.plain(value)
    if isinstance(dim, Choice) and not isinstance(value, _CATEGORICAL_TYPES):
        return json.dumps(value)
    return value


def distribution(optuna, dim) -> Any:
    """The Optuna distribution of a search-space dimension (see the module docstring)."""
    d = optuna.distributions
    if isinstance(dim, Choice):
        return d.CategoricalDistribution([param_value(dim, c) for c in dim.choices])
    if isinstance(dim, Int):
        step = dim.q if not dim.log and (dim.high - dim.low) % dim.q == 0 else 1
        return d.IntDistribution(int(dim.low), int(dim.high), log=bool(dim.log), step=int(step))
    return d.FloatDistribution(float(dim.low), float(dim.high), log=bool(dim.log))


def in_range(dist, value: float) -> bool:
    """Whether a number lies in a Float/IntDistribution's range and on its step grid."""
    step = getattr(dist, "step", None) or 0
    on_grid = step in (0, 1) or (value - dist.low) % step == 0
    return dist.low <= value <= dist.high and on_grid


def trial_params(optuna, trial: Trial, space, dists: dict) -> tuple[dict, dict]:
    """``(params, distributions)`` of one trial. A numeric value outside its dimension's range
    (which the study does not produce) gets a widened copy of the distribution rather than
    failing the export; a value that is not among a choice's choices is a ValueError."""
    params, out = {}, {}
    for name, dim in space.dims.items():
        if name not in trial.config:
            raise ValueError(f"to_optuna: trial {trial.id} has no value for {name!r} (config {trial.config!r})")
        v = param_value(dim, trial.config[name])
        dist = dists[name]
        if isinstance(dim, Choice):
            if v not in dist.choices:
                raise ValueError(f"to_optuna: trial {trial.id} has {name}={v!r}, not among the choices {dist.choices!r}")
        elif not in_range(dist, v):
            lo, hi = min(dist.low, v), max(dist.high, v)
            dist = (optuna.distributions.IntDistribution(int(lo), int(hi), log=dist.log) if isinstance(dim, Int)
                    else optuna.distributions.FloatDistribution(float(lo), float(hi), log=dist.log))
        params[name], out[name] = v, dist
    return params, out


# -- curves, states, times, attributes --------------------------------------------------------
def intermediate_values(trial: Trial) -> tuple[dict[int, float], list[int]]:
    """``({env step: score}, [env steps whose score is NaN])`` from the trial's curve."""
    values, nan_steps = {}, []
    for step, score in zip(trial.curve_steps, trial.curve):
        if math.isnan(score):
            nan_steps.append(int(step))
        else:
            values[int(step)] = float(score)
    return values, nan_steps


def trial_state(optuna, trial: Trial) -> tuple[Any, float | None, str]:
    """``(TrialState, value or None, fail reason or "")`` for a hyperjax trial's status."""
    S = optuna.trial.TrialState
    status = trial.status
    if status == "completed":
        if math.isnan(trial.final_score):
            return S.FAIL, None, "the final evaluation score is NaN"
        return S.COMPLETE, float(trial.final_score), ""
    if status == "evicted":
        return S.PRUNED, None, ""
    if status == "failed":
        return S.FAIL, None, trial.end_reason or "failed"
    if status == "stopped":
        if trial.scored:  # evaluated when the study's end stopped it (user attr "status": "stopped")
            return S.COMPLETE, float(trial.final_score), ""
        return S.FAIL, None, "stopped: the study ended (budget or time) while it was unfinished"
    if status in ("running", "paused"):
        return S.RUNNING, None, ""
    if status == "queued":
        return S.WAITING, None, ""
    raise ValueError(f"to_optuna: trial {trial.id} has an unknown status {status!r}")


def _local(created: datetime.datetime, seconds: float) -> datetime.datetime:
    # Optuna records naive local times (datetime.now()); the store's clock is UTC-based
    return (created + datetime.timedelta(seconds=float(seconds))).astimezone().replace(tzinfo=None)


def trial_times(trial: Trial, created: datetime.datetime, study_seconds: float) -> tuple[datetime.datetime, datetime.datetime]:
    """``(start, end)`` datetimes of a trial: ``created`` plus its first segment's start and last
    segment's end; a trial that never held a slot gets the study's end for both."""
    start = trial.start_time if math.isfinite(trial.start_time) else study_seconds
    end = trial.end_time if math.isfinite(trial.end_time) else start
    return _local(created, start), _local(created, max(end, start))


def jsonable(v: Any) -> Any:
    """``v`` as strict JSON can hold it: plain containers, non-finite floats as ``None``."""
    v = cfgmod.plain(v)
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, list):
        return [jsonable(x) for x in v]
    if isinstance(v, dict):
        return {k: jsonable(x) for k, x in v.items()}
    return v


def trial_user_attrs(trial: Trial, space, lineage: list[int], fail_reason: str, nan_steps: list[int]) -> dict:
    """What Optuna has no field for: ids, status, slots and segments, PBT parent and lineage,
    env steps, per-seed final scores, bucket, the settings outside the space."""
    attrs = {
        "hyperjax_trial": trial.id,
        "status": trial.status,
        "end_reason": trial.end_reason,
        "origin": trial.origin,
        "parent": trial.parent,
        "lineage": lineage,
        "start_phase": trial.start_phase,
        "phases": trial.phases,
        "slot": trial.slot,
        "segments": [dict(zip(("slot", "start_s", "end_s", "start_tick", "end_tick"), seg)) for seg in trial.segments],
        "env_steps": trial.env_steps,
        "compute_seconds": trial.compute_seconds,
        "seeds": len(trial.seeds),
        "final_scores": trial.final_scores,
        "last_score": trial.last_score,
        "bucket": trial.bucket,
        "fixed": {k: v for k, v in trial.config.items() if k not in space.dims},
    }
    if math.isfinite(trial.reeval_score):  # a leader re-evaluated when the study ended
        attrs["reeval_score"] = trial.reeval_score
        attrs["reeval_scores"] = trial.reeval_scores
    if fail_reason:
        attrs["fail_reason"] = fail_reason
    if nan_steps:
        attrs["nan_score_steps"] = nan_steps
    return {k: jsonable(v) for k, v in attrs.items()}


def study_user_attrs(meta: dict, store_dir: str) -> dict:
    """The study's configuration (one attribute per top-level key: agent, space, scheduler,
    budget, ...), the versions that wrote it, its created time, status and summary."""
    versions = meta.get("versions") or {}
    attrs = dict(meta.get("config") or {})
    attrs.update({
        "hyperjax_version": versions.get("hyperjax"),
        "versions": versions,
        "created": meta.get("created"),
        "status": meta.get("status"),
        "summary": meta.get("summary"),
        "store": store_dir,
    })
    return {k: jsonable(v) for k, v in attrs.items()}


def lineage_ids(trial: Trial, by_id: dict[int, Trial]) -> list[int]:
    """The trial's PBT ancestors' ids and its own, oldest first."""
    chain = [trial.id]
    while by_id[chain[-1]].parent in by_id:  # None (no parent) is never a key
        chain.append(by_id[chain[-1]].parent)
    return chain[::-1]


def frozen_trials(optuna, meta: dict, trials: list[Trial]) -> list[Any]:
    """One ``optuna.trial.FrozenTrial`` per hyperjax trial, in id order."""
    space = cfgmod.space_from_dict(meta["config"]["space"])
    created = datetime.datetime.fromisoformat(meta["created"])
    if created.tzinfo is None:
        created = created.replace(tzinfo=datetime.timezone.utc)
    study_seconds = float((meta.get("summary") or {}).get("seconds") or 0.0)
    dists = {name: distribution(optuna, dim) for name, dim in space.dims.items()}
    by_id = {t.id: t for t in trials}
    out = []
    for t in trials:
        params, trial_dists = trial_params(optuna, t, space, dists)
        state, value, reason = trial_state(optuna, t)
        values, nan_steps = intermediate_values(t)
        ft = optuna.trial.create_trial(
            state=state, value=value, params=params, distributions=trial_dists,
            user_attrs=trial_user_attrs(t, space, lineage_ids(t, by_id), reason, nan_steps),
            intermediate_values=values)
        if state != optuna.trial.TrialState.WAITING:
            start, end = trial_times(t, created, study_seconds)
            ft.datetime_start = start
            ft.datetime_complete = end if state.is_finished() else None
        out.append(ft)
    return out


# -- writing ----------------------------------------------------------------------------------
def open_storage(optuna, storage: Any) -> Any:
    """``storage`` as an ``optuna.storages.BaseStorage`` (a database URL opens an RDBStorage)."""
    if isinstance(storage, optuna.storages.BaseStorage):
        return storage
    if not isinstance(storage, str) or not storage:
        raise ValueError(f"to_optuna: storage={storage!r} must be a database URL such as 'sqlite:///optuna.db' "
                         "or an optuna.storages.BaseStorage")
    try:
        return optuna.storages.RDBStorage(storage)
    except Exception as e:  # SQLAlchemy's errors name neither the argument nor what was expected
        raise ValueError(f"to_optuna: storage={storage!r} is not a database URL Optuna can open ({e})") from e


def to_optuna(store_dir: Any, storage: Any, study_name: str | None = None, *, overwrite: bool = False):
    """Writes the hyperjax study stored in ``store_dir`` into an Optuna storage.

    Args:
      store_dir: a hyperjax study's store directory (only read; the study may be finished,
        killed or still running: a running study is exported as of its last committed tick).
      storage: an Optuna database URL (``"sqlite:///optuna.db"``, any SQLAlchemy URL) or an
        ``optuna.storages.BaseStorage``.
      study_name: the Optuna study's name; default: the store directory's name.
      overwrite: delete an Optuna study of that name first; otherwise an existing name is a
        ValueError.

    Returns:
      The ``optuna.Study`` (direction maximize), one trial per hyperjax trial in id order
      (Optuna ``number`` == hyperjax id); see the module docstring for the mapping.

    Example::

        hj.to_optuna("runs/cartpole", "sqlite:///optuna.db")
        # then: optuna-dashboard sqlite:///optuna.db
        # or:   optuna.visualization.plot_intermediate_values(
        #           optuna.load_study(study_name="cartpole", storage="sqlite:///optuna.db"))
    """
    optuna = import_optuna()
    if not isinstance(overwrite, bool):
        raise ValueError(f"to_optuna: overwrite={overwrite!r} must be True or False")
    meta, trials = read_store(store_dir)
    directory = os.path.abspath(os.fspath(store_dir))
    if study_name is None:
        study_name = os.path.basename(directory)
    if not isinstance(study_name, str) or not study_name:
        raise ValueError(f"to_optuna: study_name={study_name!r} must be a non-empty string")
    # every trial is converted before anything is written, so a bad store leaves no partial study
    frozen = frozen_trials(optuna, meta, trials)
    store = open_storage(optuna, storage)
    if study_name in optuna.get_all_study_names(store):
        if not overwrite:
            raise ValueError(f"to_optuna: storage already holds a study named study_name={study_name!r}; "
                             "pass overwrite=True to replace it or choose another study_name")
        optuna.delete_study(study_name=study_name, storage=store)
    study = optuna.create_study(storage=store, study_name=study_name, direction="maximize")
    try:
        with warnings.catch_warnings():  # set_metric_names is marked experimental
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names([METRIC])
        for k, v in study_user_attrs(meta, directory).items():
            study.set_user_attr(k, v)
        study.add_trials(frozen)
    except BaseException:
        optuna.delete_study(study_name=study_name, storage=store)
        raise
    return study
