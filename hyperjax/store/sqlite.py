"""The study store: one directory, one writer, many readers.

::

    DIR/study.sqlite     SQLite (WAL): the study, trials, observations, segments, decisions,
                         ticks and the host-state snapshots; one transaction per tick
    DIR/checkpoints/     orbax: every pool's members, paused members, the best trial's and
                         the leaders' (those the final re-evaluation chooses among), at
                         snapshot ticks (the newest ``keep`` complete ones kept)
    DIR/params/          orbax: the final members of trials as they complete (``keep_params``)
    DIR/lock             held (flock) by the process writing the store

Tables (readable with ``sqlite3`` or ``pandas.read_sql`` without hyperjax; JSON in TEXT columns):

- ``study(key, value)``: ``config`` (the whole study configuration), ``versions``, ``created``,
  ``status`` (``running``/``finished``), ``summary`` (counters, timing, best) as JSON.
- ``trials``: one row per trial (``id``, ``status``, ``end_reason``, ``bucket``, ``origin``,
  ``parent``, ``phases``, ``start_phase``, ``final_score``, ``final_scores``, ``env_steps``,
  ``compute_seconds``, ``config``, ``u``, ``params_tick``: the ``params/`` checkpoint holding its
  final members, or NULL; ``reeval_score``, ``reeval_scores``: its re-evaluation on fresh
  episodes when the study ended, for the leading trials (``tune(reevaluate=...)``), else NULL
  and ``[]``; ``reseed_score``, ``reseed_scores``: its configuration retrained on fresh seeds
  then (``reevaluate_seeds``; NULL for ``-inf``, a diverged run, with the runs' NaN in the list)).
- ``observations``: every phase boundary of every trial (``trial``, ``phase`` (0-based index in
  its curve), ``env_steps`` per member, ``score`` (mean over seeds; NULL if non-finite),
  ``seed_scores`` (JSON), ``seconds`` (study clock), ``tick``, ``entropy``: the policy's entropy
  in the phase, NULL if non-finite or not recorded).
- ``segments``: which slot a trial held when (``trial``, ``idx``, ``slot``, ``start``, ``end``,
  ``start_tick``, ``end_tick``).
- ``decisions``: every decision (``tick``, ``seq``, ``action``, ``trial``, ``pool``, ``slot``,
  ``source``, ``reason``).
- ``ticks``: one row per tick (``tick``, ``seconds``, ``env_steps``, ``trials``, ``running``,
  ``best_trial``, ``best_score``, ``snapshot``: 1 where the host state and a checkpoint were saved).
- ``snapshots(tick, state)``: the host state (msgpack, see ``serialize``) at snapshot ticks.
- ``final(key, state)``: ``host``, the host state when the study finished (not a resume point;
  what reports read of its surrogate, which may have fitted after the last snapshot).

A tick whose checkpoint did not complete (a kill during the write) is not a resume point: the
study resumes from the newest snapshot whose checkpoint is complete and restores, and the ticks
after it are run again (on the same machine and device count, with the same results).

Several processes (``hyperjax.distributed``): every process opens a ``StudyStore`` on the same
directory, which must be on a filesystem they all see. Process 0 alone holds the lock and writes
SQLite; every process writes the checkpoint shards of its own devices, for the ticks process 0
chose (its choice of snapshot ticks is broadcast).
"""

from __future__ import annotations

import concurrent.futures
import datetime
import fcntl
import json
import math
import os
import queue
import sqlite3
import threading
import time
import warnings
from typing import Any

import numpy as np

from hyperjax import distributed
from hyperjax.store import serialize
from hyperjax.store.checkpoint import Checkpoints

FILE = "study.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS study (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS trials (
    id INTEGER PRIMARY KEY, status TEXT, end_reason TEXT, bucket INTEGER, origin TEXT, parent INTEGER,
    phases INTEGER, start_phase INTEGER, final_score REAL, final_scores TEXT, env_steps INTEGER,
    compute_seconds REAL, config TEXT, u TEXT, seeds INTEGER, params_tick INTEGER, reeval_score REAL,
    reeval_scores TEXT, reseed_score REAL, reseed_scores TEXT);
CREATE TABLE IF NOT EXISTS observations (
    trial INTEGER, phase INTEGER, env_steps INTEGER, score REAL, seed_scores TEXT, seconds REAL, tick INTEGER,
    entropy REAL, PRIMARY KEY (trial, phase));
CREATE TABLE IF NOT EXISTS segments (
    trial INTEGER, idx INTEGER, slot INTEGER, start REAL, "end" REAL, start_tick INTEGER, end_tick INTEGER,
    PRIMARY KEY (trial, idx));
CREATE TABLE IF NOT EXISTS decisions (
    tick INTEGER, seq INTEGER, action TEXT, trial INTEGER, pool INTEGER, slot INTEGER, source INTEGER, reason TEXT,
    PRIMARY KEY (tick, seq));
CREATE TABLE IF NOT EXISTS ticks (
    tick INTEGER PRIMARY KEY, seconds REAL, env_steps INTEGER, trials INTEGER, running INTEGER,
    best_trial INTEGER, best_score REAL, snapshot INTEGER);
CREATE TABLE IF NOT EXISTS snapshots (tick INTEGER PRIMARY KEY, state BLOB);
CREATE TABLE IF NOT EXISTS final (key TEXT PRIMARY KEY, state BLOB);
"""


class StoreLocked(RuntimeError):
    """Another live process is writing the store."""


def _lock(f, tries: int = 20) -> bool:
    """Takes the writer's exclusive lock on ``f``; False if a writer holds it. A reader asking
    :func:`writer_alive` holds a shared lock for microseconds, so a few retries tell the two
    apart."""
    for i in range(tries):
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            time.sleep(0.01 * (i + 1))
    return False


def writer_alive(directory: str) -> bool:
    """Whether a process holds the writer lock of the store in ``directory`` (a running study),
    as opposed to one that stopped without finishing (killed). Tries a shared lock without
    waiting and lets go at once."""
    path = os.path.join(directory, "lock")
    if not os.path.isfile(path):
        return False
    try:
        with open(path) as f:
            try:
                fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(f, fcntl.LOCK_UN)
            return False
    except OSError:  # unreadable: assume a writer, as the store's own status says
        return True


def load_meta(directory: str) -> dict[str, Any]:
    """The ``study`` table of the store in ``directory`` (``config``, ``created``, ``status``,
    ...), read through a read-only connection."""
    conn = connect(directory, readonly=True)
    try:
        return read_meta(conn)
    finally:
        conn.close()


def read_snapshot(conn: sqlite3.Connection, upto: int | None = None) -> tuple[int, dict] | None:
    """``(tick, host state)`` of the newest snapshot (at or before tick ``upto``), or None."""
    row = conn.execute("SELECT tick, state FROM snapshots WHERE tick <= ? ORDER BY tick DESC LIMIT 1",
                       (2**62 if upto is None else int(upto),)).fetchone()
    return None if row is None else (int(row[0]), serialize.loads(row[1]))


def read_final_state(conn: sqlite3.Connection) -> dict | None:
    """The host state a finished study wrote at its end, or None (a study still running or
    killed, or a store written before it was kept)."""
    try:
        row = conn.execute("SELECT state FROM final WHERE key = 'host'").fetchone()
    except sqlite3.OperationalError:  # no such table: an older store, opened read-only
        return None
    return None if row is None else serialize.loads(row[0])


def _num(x) -> float | None:
    return float(x) if x is not None and math.isfinite(float(x)) else None


def _json(x) -> str:
    return json.dumps(x, default=lambda v: v.item() if isinstance(v, np.generic) else list(v))


def check_directory(directory: Any, field: str = "store") -> str:
    """``directory`` as an absolute path a store can be made in, or ValueError naming the
    problem (empty, not a path, an existing file, a parent that is a file or not writable)."""
    if not isinstance(directory, (str, os.PathLike)) or not os.fspath(directory):
        raise ValueError(f"{field}={directory!r} must be a directory path")
    path = os.path.abspath(os.fspath(directory))
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"{field}={os.fspath(directory)!r} exists and is not a directory")
    parent = path
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise ValueError(f"{field}={os.fspath(directory)!r}: {parent!r} is a file, not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"{field}={os.fspath(directory)!r}: {parent!r} is not writable")
    return path


def exists(directory: str) -> bool:
    return os.path.isfile(os.path.join(directory, FILE))


def connect(directory: str, readonly: bool = False) -> sqlite3.Connection:
    path = os.path.join(directory, FILE)
    if readonly:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{directory!r} holds no hyperjax study ({FILE} is missing)")
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    else:
        conn = sqlite3.connect(path, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")  # a committed tick survives a power cut too
        conn.executescript(_SCHEMA)
        _add_missing_columns(conn)
    conn.row_factory = sqlite3.Row
    return conn


# columns added after the first stores were written: (table, column, type); an older store gets
# them (NULL in its old rows) when a writer opens it
_ADDED_COLUMNS = (("observations", "entropy", "REAL"), ("trials", "reeval_score", "REAL"),
                  ("trials", "reeval_scores", "TEXT"), ("trials", "reseed_score", "REAL"),
                  ("trials", "reseed_scores", "TEXT"))


def _add_missing_columns(conn: sqlite3.Connection) -> None:
    for table, column, kind in _ADDED_COLUMNS:
        if column not in {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")


def read_meta(conn: sqlite3.Connection) -> dict[str, Any]:
    return {r["key"]: json.loads(r["value"]) for r in conn.execute("SELECT key, value FROM study")}


class _Writer:
    """One daemon thread running submitted functions in order. Daemon, unlike a
    ``ThreadPoolExecutor``'s, so that a process whose study failed exits without waiting for a
    checkpoint write stuck at a barrier with a dead peer."""

    def __init__(self, name: str):
        self._queue: queue.Queue = queue.Queue()
        threading.Thread(target=self._run, name=name, daemon=True).start()

    def submit(self, fn) -> concurrent.futures.Future:
        fut: concurrent.futures.Future = concurrent.futures.Future()
        self._queue.put((fn, fut))
        return fut

    def _run(self) -> None:
        while True:
            fn, fut = self._queue.get()
            if fn is None:
                return
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                fut.set_result(fn())
            except BaseException as e:
                fut.set_exception(e)

    def shutdown(self) -> None:
        self._queue.put((None, None))


class StudyStore:
    """The writer: creates or reopens the store in ``directory`` and holds its lock (process 0
    of a multi-process study; the other processes' stores write checkpoint shards only).

    Args:
      directory: the store's directory (created if missing).
      snapshot_every: ticks between snapshots of the host state and device checkpoints (the
        resume points; records are written every tick regardless).
      snapshot_seconds: and at least this many seconds between snapshots (a snapshot due while
        the previous checkpoint is still being written is skipped too): bounds what snapshots
        cost when ticks are short. ``0``: every ``snapshot_every``-th tick, each write queued
        behind the previous one.
      keep: complete snapshots (and checkpoints) kept, besides those still being written;
        older ones are pruned.
      keep_params: keep every completed trial's final members under ``params/`` (else only
        those of each trial that became the best).
    """

    def __init__(self, directory: str, snapshot_every: int = 1, snapshot_seconds: float = 5.0, keep: int = 2,
                 keep_params: bool = True):
        self.directory = check_directory(directory)
        os.makedirs(self.directory, exist_ok=True)
        self.primary = distributed.is_primary()
        self.snapshot_every, self.keep, self.keep_params = int(snapshot_every), int(keep), bool(keep_params)
        self.snapshot_seconds = float(snapshot_seconds)
        self._last_snapshot = -math.inf
        # Checkpoints are written on one worker thread, in order (a tick's final parameters
        # before its snapshot), while the study trains; JAX arrays are immutable, so the
        # device state handed over cannot change under the writer.
        self._writer = _Writer("hyperjax-store")
        self._pending: list[concurrent.futures.Future] = []
        self._snapshots: list[concurrent.futures.Future] = []
        self.checkpoints = Checkpoints(os.path.join(self.directory, "checkpoints"))
        self.params = Checkpoints(os.path.join(self.directory, "params"))
        self.seconds = {"sqlite": 0.0, "checkpoint": 0.0}
        self.conn = self._lock_file = None
        if not self.primary:
            return
        self._lock_file = open(os.path.join(self.directory, "lock"), "a+")
        if not _lock(self._lock_file):
            self._lock_file.seek(0)
            holder = self._lock_file.read().strip() or "another process"
            self._lock_file.close()
            raise StoreLocked(
                f"store {self.directory!r} is being written by {holder}; one writer at a time "
                "(read it with hj.load_study while it runs)"
            ) from None
        self._lock_file.seek(0)
        self._lock_file.truncate()
        self._lock_file.write(f"pid {os.getpid()}")
        self._lock_file.flush()
        self.conn = connect(self.directory)

    # -- the study row -------------------------------------------------------------------------
    def create(self, config: dict, versions: dict) -> None:
        """Starts a new study in an empty store."""
        with self.conn:
            now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
            for k, v in (("config", config), ("versions", versions), ("created", now), ("status", "running")):
                self.conn.execute("INSERT OR REPLACE INTO study VALUES (?, ?)", (k, _json(v)))

    # -- resume points ---------------------------------------------------------------------------
    def resume_points(self) -> list[int]:
        """Snapshot ticks whose checkpoints (and the final-params checkpoints they rely on)
        are complete, newest first."""
        done = set(self.checkpoints.complete())
        params_done = set(self.params.complete())
        needed = sorted(r[0] for r in self.conn.execute("SELECT DISTINCT params_tick FROM trials WHERE params_tick IS NOT NULL"))
        out = []
        for (tick,) in self.conn.execute("SELECT tick FROM snapshots ORDER BY tick DESC"):
            if tick in done and all(p in params_done for p in needed if p <= tick):
                out.append(int(tick))
        return out

    def snapshot(self, tick: int) -> dict:
        row = self.conn.execute("SELECT state FROM snapshots WHERE tick = ?", (tick,)).fetchone()
        return serialize.loads(row[0])

    def rewind(self, tick: int, trials: list) -> None:
        """Makes the records agree with the host state of ``tick`` (the resume point): rows of
        later ticks are deleted (they are recorded again, identically, as the study re-runs them)
        and every trial row is rewritten from ``trials``. ``tick = 0``: a fresh start."""
        with self.conn:
            for table in ("observations", "decisions"):
                self.conn.execute(f"DELETE FROM {table} WHERE tick > ?", (tick,))
            self.conn.execute("DELETE FROM ticks WHERE tick > ?", (tick,))
            self.conn.execute("DELETE FROM snapshots WHERE tick > ?", (tick,))
            self.conn.execute("DELETE FROM trials WHERE id >= ?", (len(trials),))
            self.conn.execute("DELETE FROM segments WHERE trial >= ?", (len(trials),))
            params_tick = dict(self.conn.execute("SELECT id, params_tick FROM trials").fetchall())
            for t in trials:
                pt = params_tick.get(t.id)
                self._write_trial(t, pt if pt is not None and pt <= tick else None)
            self.conn.execute("INSERT OR REPLACE INTO study VALUES ('status', ?)", (_json("running"),))
        later = [t for t in self.checkpoints.complete() if t > tick]
        self.checkpoints.remove(later)
        self.checkpoints.remove_partial()
        self.params.remove([t for t in self.params.complete() if t > tick])
        self.params.remove_partial()

    # -- writing a tick --------------------------------------------------------------------------
    def _write_trial(self, t, params_tick) -> None:
        self.conn.execute(
            "INSERT OR REPLACE INTO trials (id, status, end_reason, bucket, origin, parent, phases, start_phase, "
            "final_score, final_scores, env_steps, compute_seconds, config, u, seeds, params_tick, reeval_score, "
            "reeval_scores, reseed_score, reseed_scores) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (t.id, t.status, t.end_reason, t.bucket, t.origin, t.parent, t.phases, t.start_phase, _num(t.final_score),
             _json(t.final_scores), t.env_steps, t.compute_seconds, _json(t.config), _json([float(x) for x in t.u]),
             len(t.seeds), params_tick, _num(t.reeval_score), _json(t.reeval_scores), _num(t.reseed_score),
             _json(t.reseed_scores)))
        self.conn.execute("DELETE FROM segments WHERE trial = ?", (t.id,))
        self.conn.executemany(
            "INSERT INTO segments VALUES (?,?,?,?,?,?,?)",
            [(t.id, i, s[0], _num(s[1]), _num(s[2]), s[3], s[4]) for i, s in enumerate(t.segments)])

    def persist(self, study, policy, changes: dict, final: bool = False) -> None:
        """Writes what tick ``study.tick`` changed; at snapshot ticks also the host state and a
        checkpoint of the device state (started first, written in the background)."""
        tick = study.tick
        t0 = time.perf_counter()
        self._pending = [f for f in self._pending if not f.done()]
        snap = not final and tick > 0 and tick % self.snapshot_every == 0
        if self.snapshot_seconds > 0:  # rate-limited: not while the last one is being written
            snap = snap and not self._pending and t0 - self._last_snapshot >= self.snapshot_seconds
        if distributed.multi_process() and not final:  # every process saves its shards of the same ticks
            snap = distributed.broadcast_flag(snap)
        completed = changes["completed"]
        if not self.keep_params:  # only a new best trial's
            completed = {k: v for k, v in completed.items() if study.best is not None and k == study.best.id}
            if final and study.best is not None and not completed:
                # the final choice among re-evaluated leaders may be one that never was the best
                # when it completed: its members are saved now (every process: each its shards)
                unsaved = False
                if self.primary:
                    row = self.conn.execute("SELECT params_tick FROM trials WHERE id = ?", (study.best.id,)).fetchone()
                    unsaved = row is None or row[0] is None
                if distributed.broadcast_flag(unsaved):
                    completed = {study.best.id: study.best_state}
        # The final write follows the last tick's own write of the same tick number: its
        # parameters get a number of their own (the last tick's would otherwise be overwritten:
        # trials completed at the last tick of a time-limited study lost their saved members).
        params_at = tick + 1 if final else tick
        if completed:
            self._write(self.params, params_at, {str(k): v for k, v in completed.items()})
        if snap:
            self._last_snapshot = t0
            self._snapshots = [f for f in self._snapshots if not f.done()]
            self._snapshots.append(self._write(self.checkpoints, tick, study.device_state()))
        if final:
            # A finished study needs no resume point: snapshots not yet started are dropped
            # (with one process: with several, each joins the same saves' barriers); every
            # final-parameters write is waited for before the store says "finished".
            if not distributed.multi_process():
                for f in self._snapshots:
                    f.cancel()
            self.wait()
        if not self.primary:
            self.seconds["checkpoint"] += time.perf_counter() - t0
            return
        t1 = time.perf_counter()
        state = serialize.dumps(study.state_dict(policy)) if snap or final else None
        counts = study.counts()
        summary = study.summary_record()
        with self.conn:
            params_tick = dict(self.conn.execute(
                f"SELECT id, params_tick FROM trials WHERE id IN ({','.join('?' * len(changes['trials']))})",
                sorted(changes["trials"])).fetchall()) if changes["trials"] else {}
            for tid in sorted(changes["trials"]):
                self._write_trial(study.trials[tid], params_at if tid in completed else params_tick.get(tid))
            rows = []
            for tid, i in changes["observations"]:
                t = study.trials[tid]
                ent = _num(t.entropy_curve[i]) if i < len(t.entropy_curve) else None
                rows.append((tid, i, t.curve_steps[i], _num(t.curve[i]), _json(t.seed_curve[i]), t.curve_times[i], tick,
                             ent))
            self.conn.executemany("INSERT OR REPLACE INTO observations (trial, phase, env_steps, score, seed_scores, "
                                  "seconds, tick, entropy) VALUES (?,?,?,?,?,?,?,?)", rows)
            self.conn.executemany(
                "INSERT OR REPLACE INTO decisions VALUES (?,?,?,?,?,?,?,?)",
                [(tick, i, d.action.value, d.trial, d.pool, d.slot, d.source, d.reason)
                 for i, d in enumerate(changes["decisions"])])
            if not final:
                best = study.best
                self.conn.execute(
                    "INSERT OR REPLACE INTO ticks VALUES (?,?,?,?,?,?,?,?)",
                    (tick, study.now(), study.used, len(study.trials), counts.get("running", 0),
                     -1 if best is None else best.id, None if best is None else _num(best.final_score), int(snap)))
            if final:
                self.conn.execute("INSERT OR REPLACE INTO final VALUES ('host', ?)", (state,))
            if snap:
                self.conn.execute("INSERT OR REPLACE INTO snapshots VALUES (?, ?)", (tick, state))
                old = self._prunable()
                self.conn.executemany("DELETE FROM snapshots WHERE tick = ?", [(t,) for t in old])
            self.conn.execute("INSERT OR REPLACE INTO study VALUES ('summary', ?)", (_json(summary),))
            self.conn.execute("INSERT OR REPLACE INTO study VALUES ('status', ?)",
                              (_json("finished" if final else "running"),))
        t2 = time.perf_counter()
        if snap or final:  # checkpoints of pruned snapshots (at the end, every write has finished)
            self._remove_unkept_checkpoints()
        self.seconds["checkpoint"] += (t1 - t0) + (time.perf_counter() - t2)
        self.seconds["sqlite"] += t2 - t1

    def _remove_unkept_checkpoints(self) -> None:
        """Deletes the complete checkpoints no snapshot row refers to any more."""
        kept = {r[0] for r in self.conn.execute("SELECT tick FROM snapshots")}
        self.checkpoints.remove([t for t in self.checkpoints.complete() if t not in kept])

    def _prunable(self) -> list[int]:
        """Snapshot ticks older than the newest ``keep`` whose checkpoints are complete. Those
        still being written are kept besides (checkpoints complete in tick order, so a pruned
        snapshot's checkpoint is complete and can be deleted): when writes fall behind the
        ticks, the store still holds ``keep`` resume points."""
        done = set(self.checkpoints.complete())
        ticks = [r[0] for r in self.conn.execute("SELECT tick FROM snapshots ORDER BY tick DESC")]
        complete = [t for t in ticks if t in done]
        keep = max(self.keep, 1)
        return [t for t in ticks if t < complete[keep - 1]] if len(complete) > keep else []

    def _write(self, checkpoints: Checkpoints, tick: int, tree) -> concurrent.futures.Future:
        def write():
            try:
                checkpoints.save(tick, tree)
            except Exception as e:  # a failed write leaves an older resume point; the study goes on
                warnings.warn(f"store: writing the checkpoint of tick {tick} failed ({type(e).__name__}: {e})",
                              stacklevel=1)

        fut = self._writer.submit(write)
        self._pending.append(fut)
        return fut

    def wait(self) -> None:
        """Blocks until every checkpoint handed to the writer is written (or was cancelled)."""
        for f in self._pending:
            if not f.cancelled():
                f.result()
        self._pending = []

    def close(self, wait: bool = True) -> None:
        """Waits for checkpoint writes (unless ``wait`` is False: after a failure, when a write
        may be stuck at a barrier with a dead peer and a resume starts from the last complete
        snapshot anyway), closes the database and releases the lock."""
        try:
            if wait:
                self.wait()
                self.checkpoints.close()
                self.params.close()
                if self.conn is not None:  # every write has finished: prune to ``keep`` again
                    with self.conn:
                        self.conn.executemany("DELETE FROM snapshots WHERE tick = ?", [(t,) for t in self._prunable()])
                    self._remove_unkept_checkpoints()
            self._writer.shutdown()
            if self.conn is not None:
                self.conn.close()
        finally:
            if self._lock_file is not None:
                fcntl.flock(self._lock_file, fcntl.LOCK_UN)
                self._lock_file.close()
