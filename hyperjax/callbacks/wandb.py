"""Weights & Biases logging of a study: one W&B run per study.

What the run holds:

- config: the whole study configuration (``hyperjax.config``; what the store keeps).
- ``study/*``: the progress counters (best score, trials by status, env steps/s, slot
  utilisation, budget fraction, seconds, tick) once per tick, against ``env_steps`` (all
  members of all trials).
- ``trial/<id>/score``: every trial's learning curve (its score at each phase boundary), against
  ``trial_env_steps`` (env steps per member of that trial), as the study records them; at the
  end also one chart of every curve (``trials/curves``); ``trial/<id>/entropy``: the policy's
  entropy in each phase, on the same axis.
- ``trials``: the trial table (id, status, end reason, origin, parent, scores, config) at the
  end only (every logged table is a new file and artifact version; the curves are live).
- summary: ``best/trial``, ``best/score`` (final greedy evaluation), ``best/config``.
- ``report/<name>``: the report's figures (``hyperjax.reports.figures``) at the end, if available.

Why one run with a series per trial, not one run per trial (``reinit="create_new"``): a 32-slot
study easily has hundreds of trials, and hundreds of W&B runs started from one process each
cost an init (a second or more) and a live stream to the service; one run holds every curve
and still groups them (``trial/*``), and the table and ``trials/curves`` compare them.

W&B calls never run on the study's thread: ``wandb.init`` starts a service process (about a
second, more on a busy machine), so the first call starts a worker thread that initialises the
run and then logs what each tick hands it, in order, while the study goes on. The final call
waits for the worker to log the last records and ``finish()`` the run (online: to upload).

Nothing here imports wandb before a ``WandB`` is made.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import math
import netrc
import os
import urllib.parse
import warnings
from typing import Any

from hyperjax.callbacks.common import Worker, study_scalars, trial_points
from hyperjax.config import plain
from hyperjax.store import load_meta

MODES = ("online", "offline", "disabled")
STEP = "env_steps"  # the study's x axis: env steps of all members of all trials
TRIAL_STEP = "trial_env_steps"  # a trial's x axis: env steps per member of that trial


def curve_rows(points: list[tuple[int, int, float]], entropies: list[tuple[int, int, float]] = ()) -> list[dict[str, float]]:
    """W&B history rows of ``trial_points``: one row per distinct step (ascending) with every
    trial scored at it, ``{"trial_env_steps": step, "trial/<id>/score": score, ...}``, and
    ``"trial/<id>/entropy"`` for the ``entropies`` (``trial_points(..., "entropy_curve")``)."""
    rows: dict[int, dict[str, float]] = {}
    for name, pts in (("score", points), ("entropy", entropies)):
        for tid, step, v in pts:
            rows.setdefault(step, {TRIAL_STEP: step})[f"trial/{tid}/{name}"] = v
    return [rows[s] for s in sorted(rows)]


def _cell(v: Any) -> Any:
    """A table cell: numbers (numpy's as Python's), strings and booleans as they are, NaN as
    None, others (tuples of layer widths) as str."""
    v = plain(v)
    if v is None or isinstance(v, (bool, int, str)):
        return v
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    return str(v)


def trial_table(trials: list) -> tuple[list[str], list[list[Any]]]:
    """``(columns, rows)`` of the trial table: one row per trial (id, status, end reason,
    origin, parent, bucket, phases, env steps, last score, final score, then ``config/<name>``
    for every configuration value any trial has)."""
    names: list[str] = []
    for t in trials:
        names.extend(n for n in t.config if n not in names)
    columns = ["trial", "status", "end_reason", "origin", "parent", "bucket", "phases", "env_steps", "last_score",
               "final_score"] + [f"config/{n}" for n in names]
    rows = []
    for t in trials:
        row = [t.id, t.status, t.end_reason, t.origin, -1 if t.parent is None else t.parent, t.bucket, t.phases,
               t.env_steps, t.last_score, t.final_score] + [t.config.get(n) for n in names]
        rows.append([_cell(v) for v in row])
    return columns, rows


def best_summary(best) -> dict[str, Any]:
    """``{"best/trial", "best/score", "best/config"}`` of the best trial (``{}`` if none)."""
    if best is None:
        return {}
    return {"best/trial": int(best.id), "best/score": float(best.final_score),
            "best/config": {k: _cell(v) for k, v in best.config.items()}}


def has_credentials(environ: dict | None = None) -> bool:
    """Whether a W&B API key is configured where ``wandb login`` and the docs put it: the
    ``WANDB_API_KEY`` variable, or a netrc entry (``$NETRC`` or ``~/.netrc``) for the W&B host
    (``WANDB_BASE_URL``, default ``https://api.wandb.ai``). Reads files only: no network."""
    env = os.environ if environ is None else environ
    if env.get("WANDB_API_KEY"):
        return True
    host = urllib.parse.urlsplit(env.get("WANDB_BASE_URL") or "https://api.wandb.ai").hostname
    path = env.get("NETRC") or os.path.join(os.path.expanduser("~"), ".netrc")
    try:
        return bool(host) and netrc.netrc(path).authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def resolve_mode(mode: str | None, environ: dict | None = None) -> str | None:
    """The ``mode`` handed to ``wandb.init``: ``mode`` if given; else ``None`` (W&B reads it)
    when ``WANDB_MODE`` is set, ``"online"`` when an API key is configured
    (:func:`has_credentials`), and ``"offline"`` otherwise (never a login prompt or a network
    call by default)."""
    if mode is not None:
        return mode
    env = os.environ if environ is None else environ
    if env.get("WANDB_MODE"):
        return None
    return "online" if has_credentials(env) else "offline"


def run_id(store: str, created: str) -> str:
    """The W&B run id of the study in ``store`` created at ``created`` (the store's ``created``
    timestamp): the same for every process that runs the study, another for a new study in
    the same directory. Allowed characters only (hex)."""
    return "hj" + hashlib.sha256(f"{os.path.abspath(store)}\n{created}".encode()).hexdigest()[:14]


def report_figures(source: Any) -> dict[str, Any]:
    """``hyperjax.reports.figures(source)`` (name -> plotly figure), or ``{}`` where the report
    module is not available."""
    try:
        from hyperjax.reports import figures
    except ImportError:
        return {}
    return figures(source)


def _import_wandb():
    try:
        return importlib.import_module("wandb")
    except ImportError as e:
        raise ImportError("hyperjax.callbacks.WandB needs the wandb package: pip install 'hyperjax[wandb]'") from e


class WandB:
    """Logs a study to Weights & Biases: one run per study (see the module docstring for what
    it holds). Pass it as ``hj.tune(..., callbacks=[hj.callbacks.WandB(project="...")])``.

    Args:
      project, entity, name, group, tags, dir: as ``wandb.init``'s (``dir``: where the local
        ``wandb/`` folder goes, created if missing; default W&B's: ``$WANDB_DIR`` or ``./``).
      mode: ``"online"``, ``"offline"`` or ``"disabled"``; ``None``: what ``WANDB_MODE`` says if
        set, ``"online"`` if an API key is configured (``WANDB_API_KEY`` or ``wandb login``'s
        netrc entry), else ``"offline"`` (``wandb sync`` uploads it later).
      log_curves: log every trial's learning curve (``trial/<id>/score``, ``trials/curves``) and
        its policy's entropy (``trial/<id>/entropy``).
      log_figures: log the report's figures at the end.
      **init_kwargs: more ``wandb.init`` arguments (``notes``, ``job_type``, ``settings``,
        ``id``, ``resume``, ...); they override the callback's own choices.

    Resuming: a study with a store gets a run id derived from the store (:func:`run_id`), and
    ``resume="allow"``, so ``hj.resume(store)`` continues the same W&B run. Online, the ticks
    it already logged (the resumed study re-runs those after its last snapshot) are skipped
    (the run's summary says up to which tick). Offline, the resumed part is a second local run
    directory with the same id, and the re-run ticks appear again with the same values. A study
    without a store gets a new run each time.

    The run object is ``self.run`` once started. A study interrupted before its final call
    leaves the run open: :meth:`finish` ends it (W&B also does at interpreter exit).
    """

    def __init__(self, project: str | None = None, entity: str | None = None, name: str | None = None,
                 group: str | None = None, tags: list[str] | tuple[str, ...] | None = None, mode: str | None = None,
                 dir: str | os.PathLike | None = None, log_curves: bool = True, log_figures: bool = True,
                 **init_kwargs):
        for field, v in (("project", project), ("entity", entity), ("name", name), ("group", group)):
            if v is not None and not (isinstance(v, str) and v):
                raise ValueError(f"WandB: {field}={v!r} must be a non-empty string or None")
        if tags is not None and (isinstance(tags, str) or not isinstance(tags, (list, tuple))
                                 or not all(isinstance(t, str) and t for t in tags)):
            raise ValueError(f"WandB: tags={tags!r} must be a list of non-empty strings or None")
        if mode is not None and mode not in MODES:
            raise ValueError(f"WandB: mode={mode!r} must be one of {', '.join(map(repr, MODES))} or None")
        if dir is not None and not (isinstance(dir, (str, os.PathLike)) and os.fspath(dir)):
            raise ValueError(f"WandB: dir={dir!r} must be a directory path or None")
        if dir is not None and os.path.exists(dir) and not os.path.isdir(dir):
            raise ValueError(f"WandB: dir={os.fspath(dir)!r} exists and is not a directory")
        for field, v in (("log_curves", log_curves), ("log_figures", log_figures)):
            if not isinstance(v, bool):
                raise ValueError(f"WandB: {field}={v!r} must be True or False")
        wandb = _import_wandb()
        try:
            inspect.signature(wandb.init).bind(**init_kwargs)
        except TypeError as e:
            raise ValueError(f"WandB: {e} (the extra keyword arguments go to wandb.init)") from None
        self.init_kwargs = {"project": project, "entity": entity, "name": name, "group": group,
                            "tags": None if tags is None else list(tags),
                            "dir": None if dir is None else os.fspath(dir), **init_kwargs}
        self.mode = mode
        self.log_curves, self.log_figures = log_curves, log_figures
        self.run = None
        self._worker: Worker | None = None
        self._skip_to = 0  # ticks an earlier process already logged to this (resumed, online) run

    def __repr__(self) -> str:
        return f"WandB(project={self.init_kwargs['project']!r})"

    # -- the study's thread: copy what the tick changed, hand it over ---------------------------
    def __call__(self, study, changes) -> None:
        if not Worker.running(self._worker):
            self._worker = Worker("hyperjax-wandb", self._handle, self._close)
            self._worker.put("start", (dict(study.config), getattr(study.store, "directory", None)))
        if not changes.get("final"):
            points = (trial_points(study.trials, changes["observations"]),
                      trial_points(study.trials, changes["observations"], "entropy_curve")) if self.log_curves else ([], [])
            self._worker.put("tick", (study.tick, study.progress(), points))
            return
        curves = [(t.id, list(t.curve_steps), list(t.curve)) for t in study.trials] if self.log_curves else []
        source = None
        if self.log_figures:
            source = study.store.directory if study.store is not None else study.result()
        self._worker.put("final", (trial_table(study.trials), best_summary(study.best), curves, source))
        self.finish()

    def finish(self) -> None:
        """Waits until everything handed over is logged and the run is finished (blocks: on
        the final call, or after an interrupted study). Raises what the worker hit, if any."""
        if self._worker is not None:
            worker, self._worker = self._worker, None
            worker.finish()

    # -- the worker thread: every W&B call ------------------------------------------------------
    def _handle(self, kind: str, payload) -> None:
        if kind == "start":
            self.run = self._init(*payload)
            self._skip_to = int(self.run.summary.get("study/tick", 0)) if self.run.resumed else 0
        elif kind == "tick" and payload[0] > self._skip_to:
            self._log_tick(self.run, *payload)
        elif kind == "final":
            self._log_final(_import_wandb(), self.run, *payload)

    def _close(self, ok: bool) -> None:
        if self.run is not None:
            self.run.finish(exit_code=0 if ok else 1)

    def _init(self, config: dict, store: str | None):
        wandb = _import_wandb()
        meta = {} if store is None else load_meta(store)
        kwargs = {"config": config or meta.get("config") or {}, "mode": resolve_mode(self.mode),
                  "reinit": "create_new"}  # never return or finish another run of this process
        if store is not None and "created" in meta:
            kwargs.update(id=run_id(store, meta["created"]), resume="allow")
        kwargs.update(self.init_kwargs)
        if kwargs.get("dir") is not None:
            os.makedirs(kwargs["dir"], exist_ok=True)
        run = wandb.init(**kwargs)
        run.define_metric(STEP, hidden=True)
        run.define_metric("study/*", step_metric=STEP)
        run.define_metric(TRIAL_STEP, hidden=True)
        # hundreds of trials: no summary entry per trial curve
        run.define_metric("trial/*", step_metric=TRIAL_STEP, summary="none")
        return run

    def _log_tick(self, run, tick: int, progress: dict, points: list) -> None:
        run.log({STEP: int(progress["env_steps"]), **study_scalars(progress)})
        for row in curve_rows(*points):
            run.log(row)

    def _log_final(self, wandb, run, table, best: dict, curves: list, source) -> None:
        run.summary.update(best)
        columns, rows = table
        run.log({"trials": wandb.Table(columns=columns, data=rows)})
        finite = [(tid, [(s, x) for s, x in zip(steps, v) if math.isfinite(x)]) for tid, steps, v in curves]
        finite = [(tid, pts) for tid, pts in finite if pts]
        if finite:
            run.log({"trials/curves": wandb.plot.line_series(
                xs=[[s for s, _ in pts] for _, pts in finite], ys=[[x for _, x in pts] for _, pts in finite],
                keys=[f"trial {tid}" for tid, _ in finite], title="learning curves", xname=TRIAL_STEP)})
        if source is None:
            return
        try:
            figures = report_figures(source)
        except Exception as e:  # the run's records matter more than its pictures
            warnings.warn(f"WandB: the report's figures could not be made ({type(e).__name__}: {e})", stacklevel=1)
            return
        for key, fig in figures.items():
            try:
                media = wandb.Plotly(fig)
            except Exception:  # a figure W&B's Plotly cannot convert: as an HTML page
                media = wandb.Html(fig.to_html(include_plotlyjs="cdn"))
            run.log({f"report/{key}": media})
