"""What a report reads: a study's :class:`~hyperjax.study.records.StudyResult` plus, when it
comes from a store, the store's ``ticks`` table, its status and configuration, and the newest
snapshot's surrogate state.

The store is opened read-only (``hj.load_study(dir, params=False)`` and one read-only SQLite
connection), so a report works on a finished, a killed or a running study, while the study's
process holds the store.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np
import pandas as pd

from hyperjax.store import connect, exists, read_final_state, read_meta, read_snapshot, writer_alive
from hyperjax.study.reader import load_study
from hyperjax.study.records import StudyResult


class NotApplicable(ValueError):
    """A figure that does not apply to this study; the message says why. ``figures``/``report``
    skip such figures instead of drawing them empty. ``kind=True``: not for this kind of study
    (no PBT, no surrogate), left out of the report silently; else there is nothing to show yet
    (no completed trial, too few trials), which the report says."""

    def __init__(self, message: str, kind: bool = False):
        super().__init__(message)
        self.kind = kind


@dataclasses.dataclass
class StudyData:
    """Everything the figures read, loaded once.

    Attributes:
      result: the study (``best_state`` is not loaded).
      directory: the store it was read from (``None`` for a ``StudyResult`` handed over).
      status: ``"finished"``, ``"running"`` (a process is writing the store),
        ``"interrupted"`` (killed before it finished; ``hj.resume`` continues it) or ``"live"``
        (a ``StudyResult`` with no store).
      config: the study's configuration (``hyperjax.config``), ``{}`` without a store.
      meta: the store's other ``study`` rows (``created``, ``versions``).
      clock: one row per tick: ``tick``, ``seconds`` (study clock), ``env_steps`` (used by all
        members so far); from the store's ``ticks`` table, else rebuilt from the trials.
      uses_surrogate: the study has a BNN surrogate (fitted or not).
      surrogate: ``{"tick": snapshot tick (-1: live), "state": BNN proposer state, "target":
        the fidelity it predicts at (env steps per member, or None: the largest it was told)}``
        of the surrogate the study used (its BNN proposer, or the BNN a curve-extrapolation
        scheduler reads), from the live proposer or the newest snapshot; ``None`` if the study
        used none or had not fitted it yet.
    """

    result: StudyResult
    directory: str | None = None
    status: str = "live"
    config: dict = dataclasses.field(default_factory=dict)
    meta: dict = dataclasses.field(default_factory=dict)
    clock: pd.DataFrame | None = None
    uses_surrogate: bool = False
    surrogate: dict | None = None
    cache: dict = dataclasses.field(default_factory=dict, repr=False)

    def cached(self, key: str, fn):
        """``fn(self)``, computed once per ``key`` (a :class:`NotApplicable` too): the
        interactive and the static figure of a report share the model-based tables."""
        if key not in self.cache:
            try:
                self.cache[key] = (fn(self), None)
            except NotApplicable as e:
                self.cache[key] = (None, e)
        value, err = self.cache[key]
        if err is not None:
            raise err
        return value


def load(source: Any) -> StudyData:
    """``source`` (a store directory, a ``StudyResult`` or a ``StudyData``) as :class:`StudyData`."""
    if isinstance(source, StudyData):
        return source
    if isinstance(source, StudyResult):
        surrogate = live_surrogate(source.proposer)
        return StudyData(result=source, clock=clock_from_trials(source), surrogate=surrogate,
                         uses_surrogate=surrogate is not None or hasattr(source.proposer, "posterior"))
    if isinstance(source, (str, os.PathLike)):
        return load_store(os.fspath(source))
    raise ValueError(f"report: source={source!r} must be a store directory, a StudyResult or a StudyData")


def load_store(directory: str) -> StudyData:
    """Reads the store in ``directory`` (read-only; the study may be running)."""
    directory = os.path.abspath(directory)
    if not os.path.isdir(directory) or not exists(directory):
        raise ValueError(f"report: store={directory!r} holds no hyperjax study")
    result = load_study(directory, params=False)
    conn = connect(directory, readonly=True)
    try:
        meta = read_meta(conn)
        # read after load_study: a running study may have committed more ticks since; keep only
        # those the trials already reflect
        last = max(int(result.ticks), 0)
        ticks = pd.read_sql_query("SELECT tick, seconds, env_steps, best_trial, best_score FROM ticks "
                                  "WHERE tick <= ? ORDER BY tick", conn, params=(last,))
        config = meta.get("config", {})
        proposer = config.get("proposer")
        uses = (isinstance(proposer, str) and proposer.startswith("bnn")) or \
            (config.get("scheduler") or {}).get("name") == "extrapolate"
        # the host state is decoded only where a surrogate may be in it (a user's own proposer
        # object may be one): a large study's snapshot runs to megabytes
        snapshot = None
        if uses or isinstance(proposer, dict):
            # a finished study's end state: its surrogate may have fitted after the last snapshot
            final = read_final_state(conn) if meta.get("status") == "finished" else None
            snapshot = (last, final) if final is not None else read_snapshot(conn, last)
    finally:
        conn.close()
    config = meta.pop("config", {})
    status = meta.pop("status", "running")
    meta.pop("summary", None)
    if status == "running" and not writer_alive(directory):
        status = "interrupted"
    surrogate = None
    if snapshot is not None:
        tick, state = snapshot
        found = bnn_state([state.get("proposer"), *state.get("observers", [])])
        if found is not None:
            surrogate = {"tick": tick, "state": found, "target": full_budget(config)}
    return StudyData(result=result, directory=directory, status=status, config=config, meta=meta,
                     clock=ticks, uses_surrogate=bool(uses or surrogate is not None), surrogate=surrogate)


def bnn_state(states: list) -> dict | None:
    """The first of ``states`` (proposer and observer ``state_dict``s) that is a BNN proposer's
    with a fitted posterior."""
    for s in states:
        if isinstance(s, dict) and s.get("posterior") is not None and "warp" in s:
            return s
    return None


def live_surrogate(proposer) -> dict | None:
    """The surrogate state of a live study's proposer (a ``StudyResult`` from ``tune``)."""
    if proposer is None or not hasattr(proposer, "state_dict"):
        return None
    found = bnn_state([proposer.state_dict()])
    if found is None:
        return None
    return {"tick": -1, "state": found, "target": getattr(proposer, "target_budget", None)}


def full_budget(config: dict) -> float | None:
    """Env steps per member of a trial that runs to the end (the fidelity the study's surrogate
    predicts at), from the study's configuration."""
    if not config.get("phase_steps") or not config.get("trial_steps"):
        return None
    return float(config["trial_steps"] // config["phase_steps"] * config["phase_steps"])


def clock_from_trials(result: StudyResult) -> pd.DataFrame:
    """The study's clock rebuilt from the trials' observations (for a ``StudyResult`` with no
    store): one row per distinct observation time (a tick records all its observations at one
    study time), ``env_steps`` the env steps used by all members up to then.

    A trial used ``env_steps / len(curve)`` env steps (all seeds) per phase: every phase of a
    bucket is the same number of updates.
    """
    used: dict[float, float] = {}
    for t in result.trials:
        if not t.curve:
            continue
        per_phase = t.env_steps / len(t.curve)
        for when in t.curve_times:
            used[when] = used.get(when, 0.0) + per_phase
    times = np.asarray(sorted(used), np.float64)
    steps = np.cumsum([used[w] for w in times]).round().astype(np.int64)
    return pd.DataFrame({"tick": np.arange(1, len(times) + 1), "seconds": times, "env_steps": steps,
                         "best_trial": -1, "best_score": np.nan})
