"""TensorBoard logging of a study, through tensorboardX (no TensorFlow).

Under ``logdir``, one TensorBoard run per directory::

    study/         study/* progress counters once per tick against env steps (all members of
                   all trials); the configuration (text); the hparams experiment
    trials/0007/   trial/score at every phase boundary against env steps per member, and
                   trial/entropy (the policy's entropy in the phase); for a
                   completed trial its hparams session (tuned values -> trial/final_score,
                   the greedy evaluation, and trial/score, its last training score)

Why a run per trial, not tags ``trial/<id>/score`` in one run: TensorBoard draws a tag of every
run in one chart, so all learning curves share the ``trial/score`` chart and the run selector
(with its regex filter) picks trials; the hparams plugin's table has a row per run, so a row
is that trial and its curve. One run with a tag per trial would be hundreds of charts. A
trial's event file is open only while it runs, so at most ``slots`` are.

The files are written on a worker thread (an event file flush is an fsync: a few ms each, per
open file, per tick), flushed after every tick, so a killed study's events are on disk up to
about its last tick. A resumed study re-runs the ticks after its last snapshot: every event
file the resuming process opens starts with a purge event (what ``SummaryWriter(purge_step=)``
writes: TensorBoard drops that run's earlier events at or after the first step written again),
so no step appears twice or out of order.
"""

from __future__ import annotations

import itertools
import os
import time
from typing import Any

from hyperjax.callbacks.common import Worker, study_scalars, trial_points
from hyperjax.config import plain

FINAL_SCORE = "trial/final_score"
SCORE = "trial/score"
ENTROPY = "trial/entropy"


def hparam_value(v: Any) -> bool | int | float | str:
    """A configuration value as the hparams plugin holds it: numbers, strings and booleans as
    they are (numpy scalars as Python ones), anything else (tuples of layer widths) as str."""
    v = plain(v)
    return v if isinstance(v, (bool, int, float, str)) else str(v)


def trial_hparams(trial, names: tuple[str, ...]) -> dict[str, bool | int | float | str]:
    """The tuned values of ``trial`` (its configuration restricted to the space's ``names``)."""
    return {n: hparam_value(trial.config[n]) for n in names if n in trial.config}


def config_text(config: dict) -> str:
    """The study configuration as a Markdown code block (YAML) for TensorBoard's text plugin."""
    import yaml

    body = yaml.safe_dump(config, sort_keys=False, default_flow_style=None)
    return "\n".join("    " + line for line in body.splitlines())


def trial_run(trial_id: int) -> str:
    """The run (directory under ``logdir``) of trial ``trial_id``."""
    return os.path.join("trials", f"{trial_id:04d}")


class EventFile:
    """One event file of a run (tensorboardX's synchronous writer: no thread of its own),
    starting with a purge at ``purge_step``."""

    _serial = itertools.count()

    def __init__(self, directory: str, purge_step: int):
        from tensorboardX.event_file_writer import EventsWriter
        from tensorboardX.proto.event_pb2 import SessionLog

        os.makedirs(directory, exist_ok=True)
        # Files are named by the second they were opened: a suffix keeps two opened in the same
        # second (a trial paused and resumed) from overwriting each other.
        self.writer = EventsWriter(os.path.join(directory, "events"), f".{os.getpid()}.{next(self._serial)}")
        self.write(None, purge_step, session_log=SessionLog(status=SessionLog.START))

    def write(self, summary, step: int, **fields) -> None:
        from tensorboardX.proto.event_pb2 import Event

        event = Event(wall_time=time.time(), step=int(step), **fields)
        if summary is not None:
            event.summary.CopyFrom(summary)
        self.writer.write_event(event)

    def scalar(self, tag: str, value: float, step: int) -> None:
        from tensorboardX.summary import scalar

        self.write(scalar(tag, float(value)), step)


class TensorBoard:
    """Logs a study for TensorBoard (see the module docstring for the layout). Pass it as
    ``hj.tune(..., callbacks=[hj.callbacks.TensorBoard("runs/study1")])`` and look with
    ``tensorboard --logdir runs/study1``.

    Args:
      logdir: the directory of this study's runs (created if missing). One study per logdir:
        a resumed study writes into the same one.
      log_curves: every trial's learning curve (``trials/<id>``, tag ``trial/score``) and its
        policy's entropy (``trial/entropy``).
      log_hparams: the hparams table (tuned values -> final score) of completed trials.
    """

    def __init__(self, logdir: str | os.PathLike, log_curves: bool = True, log_hparams: bool = True):
        if not isinstance(logdir, (str, os.PathLike)) or not os.fspath(logdir):
            raise ValueError(f"TensorBoard: logdir={logdir!r} must be a directory path")
        if os.path.exists(logdir) and not os.path.isdir(logdir):
            raise ValueError(f"TensorBoard: logdir={os.fspath(logdir)!r} exists and is not a directory")
        for field, v in (("log_curves", log_curves), ("log_hparams", log_hparams)):
            if not isinstance(v, bool):
                raise ValueError(f"TensorBoard: {field}={v!r} must be True or False")
        self.logdir = os.path.abspath(os.fspath(logdir))
        self.log_curves, self.log_hparams = log_curves, log_hparams
        self._worker: Worker | None = None
        # the worker's: the study run's file, open trial files, whether the experiment is written
        self._study: EventFile | None = None
        self._trials: dict[int, EventFile] = {}
        self._experiment = False

    def __repr__(self) -> str:
        return f"TensorBoard({self.logdir!r})"

    # -- the study's thread: copy what the tick changed, hand it over ---------------------------
    def __call__(self, study, changes) -> None:
        final = bool(changes.get("final"))
        p = study.progress()
        if not Worker.running(self._worker):
            self._worker = Worker("hyperjax-tensorboard", self._handle, self._close)
            # a new study's configuration (a resumed one's first call is at tick >= 2 and has it)
            config = dict(study.config) if study.tick <= 1 and study.config else None
            self._worker.put("start", (int(p["env_steps"]), config))
        completed = []
        if self.log_hparams:
            for tid in sorted(changes["completed"]):
                t = study.trials[tid]
                if t.scored:
                    completed.append((tid, t.curve_steps[-1] if t.curve_steps else 0, trial_hparams(t, study.space.names),
                                      float(t.final_score), float(t.last_score)))
        self._worker.put("tick", (
            int(p["env_steps"]), {} if final else study_scalars(p),  # the final call changes statuses only
            [(SCORE, *x) for x in trial_points(study.trials, changes["observations"])]
            + [(ENTROPY, *x) for x in trial_points(study.trials, changes["observations"], "entropy_curve")]
            if self.log_curves else [], completed,
            [tid for tid in changes["trials"] if study.trials[tid].status != "running"]))
        if final:
            self.finish()

    def finish(self) -> None:
        """Waits until everything handed over is written and closes the files (blocks: the
        final call does it; after an interrupted study, call it yourself)."""
        if self._worker is not None:
            worker, self._worker = self._worker, None
            worker.finish()

    # -- the worker thread: every file operation ------------------------------------------------
    def _handle(self, kind: str, payload) -> None:
        if kind == "start":
            step, config = payload
            # purge: a resumed study writes again from its first tick after the snapshot
            self._study = EventFile(os.path.join(self.logdir, "study"), step)
            if config is not None:
                from tensorboardX.summary import text

                self._study.write(text("config", config_text(config)), step)
            return
        step, scalars, points, completed, ended = payload
        for tag, v in scalars.items():
            self._study.scalar(tag, v, step)
        for tag, tid, s, v in points:
            self._trial(tid, s).scalar(tag, v, s)
        for tid, s, hp, final_score, last_score in completed:
            self._hparams(tid, s, hp, final_score, last_score, step)
        for tid in ended:
            if tid in self._trials:
                self._trials.pop(tid).writer.close()
        for f in (self._study, *self._trials.values()):
            f.writer.flush()

    def _trial(self, tid: int, step: int) -> EventFile:
        if tid not in self._trials:
            self._trials[tid] = EventFile(os.path.join(self.logdir, trial_run(tid)), step)
        return self._trials[tid]

    def _hparams(self, tid: int, step: int, hp: dict, final_score: float, last_score: float, study_step: int) -> None:
        from tensorboardX.summary import hparams

        exp, start, end = hparams(hp, {FINAL_SCORE: final_score, SCORE: last_score})
        if not self._experiment:  # the plugin reads one experiment (names of hparams and metrics)
            self._study.write(exp, study_step)
            self._experiment = True
        f = self._trial(tid, step)
        f.write(start, step)
        f.scalar(FINAL_SCORE, final_score, step)
        f.write(end, step)

    def _close(self, ok: bool) -> None:
        for f in (self._study, *self._trials.values()):
            if f is not None:
                f.writer.close()
        self._study, self._trials, self._experiment = None, {}, False
