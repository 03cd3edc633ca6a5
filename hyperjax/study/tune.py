"""``tune``: one call that runs a study; ``resume`` continues one from its store; ``load_study``
reads one back."""

from __future__ import annotations

import dataclasses
import functools
import os
import time
import warnings
from typing import Any, Callable, Mapping

import jax
import numpy as np

from hyperjax import config as cfgmod
from hyperjax import distributed, validate
from hyperjax.agents.base import ActorCriticAgent
from hyperjax.population import get_runner
from hyperjax.proposers import PROPOSERS, make_proposer
from hyperjax.rng import as_key, key_state, numpy_rng, seed_int
from hyperjax.schedulers.specs import scheduler_spec
from hyperjax.space import SearchSpace
from hyperjax.store import StudyStore, check_directory, exists, load_meta
from hyperjax.study.buckets import allocate_slots, bucket_agent, enumerate_buckets, structural_names
from hyperjax.study.engine import Study, check_proposals
from hyperjax.study.policies import POLICIES, plan_brackets
from hyperjax.study.pool import COMPACT_LEVELS, Pool
from hyperjax.study.records import OBJECTIVES, StudyResult
from hyperjax.study.reader import load_study
from hyperjax.study.selection import AUTO, DEFAULT_SHARE, default_choice, retrain_steps


def _int(field: str, value, low: int) -> int:
    return validate.integer("tune", field, value, low)


def _auto_int(field: str, value) -> int | str:
    if isinstance(value, str):
        if value != AUTO:
            raise ValueError(f"tune: {field}={value!r} must be {AUTO!r} or an integer >= 0")
        return value
    return _int(field, value, 0)


def _resolve_agent(agent, env) -> ActorCriticAgent:
    if isinstance(agent, type) and issubclass(agent, ActorCriticAgent):
        return agent() if env is None else agent(env=env)
    if isinstance(agent, ActorCriticAgent):
        return agent if env is None else dataclasses.replace(agent, env=env)
    raise ValueError(f"tune: agent={agent!r} must be an agent class (hj.PPO, hj.A2C) or an instance")


def tune(
    agent,
    space: SearchSpace,
    *,
    env: str | None = None,
    budget: int,
    phase_steps: int,
    trial_steps: int,
    slots: int = 32,
    scheduler: Any = "hypertrick",
    proposer: Any = "sobol",
    seeds: int = 1,
    seed: int | jax.Array = 0,
    eval_episodes: int = 16,
    max_trials: int | None = None,
    max_seconds: float | None = None,
    fixed: Mapping[str, float] | None = None,
    progress_fn: Callable[[int, dict], None] | None = None,
    callbacks: list | None = None,
    store: str | None = None,
    snapshot_every: int = 1,
    snapshot_seconds: float = 5.0,
    keep_params: bool = True,
    devices: tuple | None = None,
    objective: str = "final",
    transfer_from: Any = None,
    compact: bool = True,
    reevaluate: int | str = AUTO,
    reevaluate_episodes: int | None = None,
    reevaluate_seeds: int | str = AUTO,
) -> StudyResult:
    """Runs a hyperparameter study: trials flow through ``slots`` population slots.

    Args:
      agent: ``hj.PPO``/``hj.A2C`` (class or instance; an instance's static settings are the
        defaults for dimensions the space does not tune).
      space: the search space. Names that are static settings of the agent (``t_max``,
        ``num_steps``, ``num_envs``, ``hidden``, ...) form structural buckets, each compiled once;
        the others are traced hyperparameters.
      env: environment id (overrides the agent's).
      budget: total env steps for the study, every member of every trial counted; never exceeded.
      phase_steps: env steps per member between scheduler decisions (rounded down to whole
        updates per bucket).
      trial_steps: env steps per member of a trial that runs to the end; ``trial_steps //
        phase_steps`` phases.
      slots: trials that run at once (the population holds ``slots * seeds`` members).
      scheduler: ``"hypertrick"``, ``"asha"``, ``"median"``, ``"none"``,
        ``"successive_halving"``, ``"hyperband"``, ``"pbt"``, ``"pb2"`` (PBT exploring where the BNN
        points), ``"extrapolate"`` (BNN
        learning-curve extrapolation) or a spec with options, e.g.
        ``hj.schedulers.HyperTrick(r=0.3)``.
      proposer: ``"sobol"``, ``"random"``, ``"bnn"`` (Bayesian-neural-network surrogate, Thompson
        batches; every phase boundary is an observation at its fidelity), ``"bnn-qei"``, or an
        object with ``ask(k)``/``tell(u, scores, budgets)`` (and ``state_dict``/
        ``load_state_dict`` for exact resumes).
      seeds: seeds per trial; a trial's score is the mean over its seeds, and it fails if any does.
      seed: everything random flows from it (same seed, same study on the same machine).
      eval_episodes: greedy evaluation episodes per member when a trial completes.
      max_trials: cap on trials started (HyperTrick's ``N``; by default what the budget affords,
        revised before every fill to the trials started plus those the rest of the budget
        affords at the survival observed so far, so that the rule's quotas match the trials
        that do arrive).
      max_seconds: wall-clock cap on the study's own running time (summed over the processes
        that ran it, when resumed): no trial starts that is not expected to finish in time, and
        the study stops at this time (running trials are then ``"stopped"``).
      fixed: values for traced hyperparameters the space does not tune (default: the agent's).
      progress_fn: called once per tick as ``progress_fn(env_steps_used, metrics)``.
      callbacks: callables ``callback(study, changes)`` called once per tick with what the tick
        changed (``changes["trials"]``, ``["observations"]``, ``["decisions"]``,
        ``["completed"]``); one that raises is disabled with a warning, the study goes on.
      store: a directory for the study's store (``hyperjax.store``): every tick is recorded
        there, the host state and device state are saved every ``snapshot_every`` ticks, and a
        study killed at any moment continues with ``hj.resume(store)`` (or this same call). On
        an existing store with the same configuration this call resumes it; with another it
        raises ValueError naming every field that differs. ``hj.load_study(store)`` reads it.
      snapshot_every, snapshot_seconds: a snapshot (resume point) every ``snapshot_every`` ticks,
        at most one per ``snapshot_seconds`` (checkpoints are written on a worker thread while
        the study trains; a kill redoes at most the training since the last snapshot, with the
        same results).
      keep_params: keep every completed trial's final parameters in the store (else only those of
        each trial that was the best when it completed).
      devices: devices to shard each bucket's population over (default: every device of every
        process: with one process, this machine's).
      objective: what the scheduler and the proposer optimise at each phase boundary, and what
        picks the best trial: ``"final"`` (the return: the training return at phase boundaries,
        the greedy evaluation at the end), ``"auc"`` (the mean of the trial's training returns
        over its phase boundaries so far: rewards learning fast, not only ending high) or
        ``"lcb"`` (mean over seeds minus their standard deviation: rewards configurations that
        work on every seed; needs ``seeds >= 2``). ``final_score`` stays the mean greedy
        evaluation whatever the objective; ``result.best_objective`` is the best's objective.
      compact: when at most half (or a quarter) of a bucket's members are in occupied slots
        (a study's tail, a synchronous rung waiting for its stragglers), advance only those, as
        a population of half (a quarter) the size: idle slots then cost no compute. The two
        smaller programs compile on a worker thread after the first tick (while the study
        trains; a tick that needs one before it is ready waits for it). Only sizes that keep two
        or more members per device are used. Results stay deterministic but differ from
        ``compact=False`` by float rounding (a member's arithmetic depends on the population's
        size), so the setting is part of the study's configuration.
      transfer_from: a finished study on a similar environment (its store directory, or the
        ``StudyResult``) to start from (``hyperjax.transfer``): its best configurations are
        proposed first, and a BNN proposer fits its observations beside this study's with a
        task feature. Its space must be this one (ValueError naming the differences). Whether
        it is likely to help: ``hj.transfer.similarity`` before the study.
      reevaluate, reevaluate_seeds: how the best is chosen when the study ends
        (``hyperjax.study.selection``). The highest of hundreds of noisy first evaluations
        overrates its trial twice over: its episodes were lucky (on Acrobot-v1 a 300-s study's
        best scored -72.0, its own policy -80.7 on fresh episodes), and so was its one training
        seed (on SpaceInvaders-MinAtar a best that scored 145 retrained to 20 on fresh seeds).
        ``reevaluate=k``: the ``k`` leading trials (by the objective) are evaluated again on
        fresh episodes and the best is the one that scores highest there (``trial.reeval_score``):
        the best trained *policy*. ``reevaluate_seeds=R`` (with ``k >= 1``): the leaders'
        *configurations* are also retrained from scratch on ``R`` fresh seeds each (a whole
        trial, in the study's compiled programs) and the best is the leader whose retrained runs
        score highest (``trial.reseed_score``; a run that diverges ranks its configuration
        last): the configuration that does well on seeds it was not selected on. The retraining
        costs ``k * R * seeds`` members for one trial's length, kept back from the budget (new
        trials start only while it still fits) and, with ``max_seconds``, from the time; it
        needs an asynchronous scheduler (HyperTrick, ASHA, median, none, extrapolate). The
        default ``"auto"`` for both: ``k = 8, R = 2`` where that applies (an asynchronous
        scheduler, an objective other than ``"auc"``) and costs at most a quarter of the budget
        (and, with ``max_seconds``, is dropped at the tick it is expected to take more than a
        quarter of it: ``result.selection["retrain_dropped"]``); else ``0, 0``, the best the
        highest first evaluation. A re-evaluation alone (``reevaluate=k, reevaluate_seeds=0``)
        picks better policies but not better configurations (measured: ``benchmarks/README.md``,
        "The race"). With ``objective="auc"`` neither runs (a greedy evaluation does not measure
        training returns). ``result.selection`` says what ran.
      reevaluate_episodes: fresh greedy episodes per seed for each leader (rounded up to a
        multiple of ``eval_episodes``; default four times ``eval_episodes``, 64 with its
        default); every leader is scored on the same episodes.
    """
    t0 = time.perf_counter()  # the study's clock includes building (and compiling) the pools
    # -- validate on the host, before anything is traced ----------------------------------------
    agent = _resolve_agent(agent, env)
    if not isinstance(space, SearchSpace):
        raise ValueError(f"tune: space={space!r} must be a hyperjax.space.SearchSpace")
    space.validate_for(agent)
    spec = scheduler_spec(scheduler)
    slots = _int("slots", slots, 1)
    seeds = _int("seeds", seeds, 1)
    phase_steps = _int("phase_steps", phase_steps, 1)
    trial_steps = _int("trial_steps", trial_steps, 1)
    eval_episodes = _int("eval_episodes", eval_episodes, 1)
    budget = _int("budget", budget, 1)
    snapshot_every = _int("snapshot_every", snapshot_every, 1)
    snapshot_seconds = validate.number("tune", "snapshot_seconds", snapshot_seconds, low=0)
    keep_params = validate.boolean("tune", "keep_params", keep_params)
    compact = validate.boolean("tune", "compact", compact)
    reevaluate = _auto_int("reevaluate", reevaluate)
    if reevaluate_episodes is not None:
        reevaluate_episodes = _int("reevaluate_episodes", reevaluate_episodes, 1)
    reevaluate_seeds = _auto_int("reevaluate_seeds", reevaluate_seeds)
    if objective not in OBJECTIVES:
        raise ValueError(f"tune: objective={objective!r} is unknown; allowed: {', '.join(OBJECTIVES)}")
    if objective == "lcb" and seeds < 2:
        raise ValueError(f"tune: objective='lcb' needs seeds >= 2 (a spread over seeds), got seeds={seeds}")
    if max_trials is not None:
        max_trials = _int("max_trials", max_trials, 1)
    if max_seconds is not None:
        max_seconds = validate.number("tune", "max_seconds", max_seconds, low=0, low_open=True)
    if trial_steps < phase_steps:
        raise ValueError(f"tune: trial_steps={trial_steps} must be >= phase_steps={phase_steps}")
    num_phases = trial_steps // phase_steps
    if budget < phase_steps * seeds:
        raise ValueError(
            f"tune: budget={budget} is smaller than one phase of one trial (phase_steps * seeds = {phase_steps * seeds})"
        )
    if isinstance(proposer, str):
        if proposer not in PROPOSERS:
            raise ValueError(f"tune: proposer={proposer!r} is unknown; allowed: {', '.join(PROPOSERS)}")
    elif not (hasattr(proposer, "ask") and hasattr(proposer, "tell")):
        raise ValueError(f"tune: proposer={proposer!r} must be a name or have ask(k) and tell(u, scores, budgets)")
    if progress_fn is not None and not callable(progress_fn):
        raise ValueError(f"tune: progress_fn={progress_fn!r} must be callable")
    callbacks = list(callbacks or [])
    for cb in callbacks:
        if not callable(cb):
            raise ValueError(f"tune: callbacks entry {cb!r} must be callable as callback(study, changes)")
    if store is not None:
        store = check_directory(store, "tune: store")
    source = None
    if transfer_from is not None:  # read (and checked against the space) before anything is traced
        from hyperjax import transfer

        if isinstance(transfer_from, (str, os.PathLike)):
            transfer_from = os.path.abspath(os.fspath(transfer_from))
        source = transfer.source_observations(transfer_from, space)

    structural = structural_names(space, agent)
    buckets, weights = enumerate_buckets(space, agent)
    agents = [bucket_agent(agent, b) for b in buckets]  # validates every bucket's static values
    for a, b in zip(agents, buckets):
        if phase_steps < a.steps_per_update:
            raise ValueError(
                f"tune: phase_steps={phase_steps} is less than one update of bucket {b or agent.name} "
                f"(num_envs * {a.rollout_field} = {a.steps_per_update})"
            )
    traced = set(agent.hparam_names())
    agent.hparams(**dict(fixed or {}))  # validates names and values
    defaults = agent.HParams()
    base_hp = {n: float((fixed or {}).get(n, getattr(defaults, n))) for n in agent.hparam_names()}
    # Every corner of the traced part of the space must be a valid hyperparameter value.
    probe = np.concatenate([np.zeros((1, space.ndim)), np.ones((1, space.ndim)), space.sobol(64, seed=0)])
    dec = space.decode(probe)
    agent.hparams(**{n: np.asarray(dec[n], np.float64) for n in space.names if n in traced})
    if spec.kind == "pbt":
        cost = slots * seeds * num_phases * phase_steps
        if cost > budget:
            raise ValueError(
                f"tune: budget={budget} is smaller than what PBT runs (slots * seeds * trial_steps = {cost})"
            )
    # env steps per member of the largest bucket's phase (phase_steps rounded down to whole updates)
    member_phase = max((phase_steps // a.steps_per_update) * a.steps_per_update for a in agents)
    if spec.kind == "brackets":  # the plan needs no population: checked before anything is built
        plan_brackets(spec, num_phases, member_phase * seeds, budget, slots, max_trials)
    given = {"reevaluate": reevaluate, "reevaluate_seeds": reevaluate_seeds}  # what the configuration records
    choose = functools.partial(default_choice, asynchronous=spec.kind in ("asynchronous", "extrapolate"),
                               objective=objective, budget=budget, trial_steps=num_phases * member_phase * seeds)
    reevaluate, reevaluate_seeds = choose(reevaluate, reevaluate_seeds)
    if reevaluate_seeds:
        if not reevaluate or objective == "auc":
            raise ValueError(f"tune: reevaluate_seeds={reevaluate_seeds} retrains the leaders the final re-evaluation "
                             f"chooses among: it needs reevaluate >= 1 (got {reevaluate}) and an objective other "
                             f"than 'auc' (got {objective!r})")
        if spec.kind not in ("asynchronous", "extrapolate"):
            raise ValueError(f"tune: reevaluate_seeds={reevaluate_seeds} needs an asynchronous scheduler (hypertrick, "
                             f"asha, median, none, extrapolate), not {spec.name!r}")
        reserve = retrain_steps(reevaluate, reevaluate_seeds, seeds, num_phases, member_phase)
        if reserve + num_phases * member_phase * seeds > budget:
            raise ValueError(f"tune: budget={budget} does not fit retraining the leaders (reevaluate * reevaluate_seeds "
                             f"* seeds * trial_steps = {reserve}) and one trial besides")
    per_bucket = allocate_slots(slots, weights)
    devs = None if devices is None else tuple(devices)
    n_devices = len(devs) if devs is not None else jax.device_count()

    # last: making a key compiles (a small program), and every check above must fail first
    key = as_key(seed, "tune: seed")

    config = {
        "agent": cfgmod.agent_to_dict(agent), "space": cfgmod.space_to_dict(space),
        "scheduler": cfgmod.scheduler_to_dict(spec),
        "proposer": proposer if isinstance(proposer, str) else {"object": type(proposer).__qualname__},
        "budget": budget, "phase_steps": phase_steps, "trial_steps": trial_steps, "slots": slots, "seeds": seeds,
        "seed": seed if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool) else {"key": key_state(key)},
        "eval_episodes": eval_episodes, "max_trials": max_trials, "max_seconds": max_seconds,
        "fixed": {k: float(v) for k, v in (fixed or {}).items()}, "devices": n_devices,
    }
    if objective != "final":  # absent for the default, so stores written before it still match
        config["objective"] = objective
    if not compact:  # likewise
        config["compact"] = False
    # as given ("auto" or a number), absent for 0: a store written before "auto" was the
    # default holds neither (and is continued with 0: _open_store)
    config.update({k: v for k, v in given.items() if v != 0})
    if reevaluate_episodes is not None:
        config["reevaluate_episodes"] = reevaluate_episodes
    if transfer_from is not None:  # a directory is recorded; a result in memory by its kind only
        config["transfer_from"] = transfer_from if isinstance(transfer_from, str) else {
            "object": type(transfer_from).__qualname__}
    config = cfgmod.plain(config)

    # -- the store: new, or a study to resume -----------------------------------------------------
    writer, points = None, []
    if store is not None:
        opened = _open_store(store, config, snapshot_every=snapshot_every, snapshot_seconds=snapshot_seconds,
                             keep_params=keep_params)
        if opened is None:  # finished already
            return load_study(store)
        writer, points, legacy = opened
        if legacy:  # a study stored before "auto" was the default continues as it began: (0, 0)
            given.update({k: 0 for k in legacy})
            for k in legacy:
                config.pop(k)
            reevaluate, reevaluate_seeds = choose(given["reevaluate"], given["reevaluate_seeds"])

    ok = False
    try:
        k_prop, k_pools, k_rng, k_study = jax.random.split(key, 4)
        if isinstance(proposer, str):
            extra = {"target_budget": float(num_phases * phase_steps)} if proposer.startswith("bnn") else {}
            proposer = make_proposer(proposer, space, seed_int(k_prop), **extra)
        if source is not None:
            from hyperjax import transfer

            proposer = transfer.transfer_proposer(proposer, source, space)
        # The first proposals are asked for before anything is compiled, so a proposer that
        # returns garbage fails at once.
        fresh = not points
        first = _first_proposals(proposer, max(8, slots), space) if fresh else None
        observers = []
        model = None
        if spec.kind == "extrapolate" or spec.name == "pb2":
            model = _predictor(proposer, space, k_study, float(num_phases * phase_steps))
            if model is not proposer:
                observers.append(model)

        # -- build ---------------------------------------------------------------------------
        pools = []
        offset = 0
        for i, (a, b, w) in enumerate(zip(agents, buckets, per_bucket)):
            pool = Pool(i, b, a, get_runner(a, devs), int(w), offset, seeds, phase_steps, k_pools, base_hp)
            if compact:
                pool.compact_sizes = pool.compact_sizes_for(COMPACT_LEVELS)
            pools.append(pool)
            offset += int(w)
        cbs = ([_progress_callback(progress_fn)] if progress_fn is not None else []) + callbacks
        if not distributed.is_primary():  # process 0 alone logs and prints
            cbs = []
        study = Study(agent=agent, space=space, structural=structural, buckets=buckets, pools=pools, proposer=proposer,
                      num_phases=num_phases, seeds=seeds, budget=budget, max_seconds=max_seconds,
                      eval_episodes=eval_episodes, base_hp=base_hp, key=k_study, scheduler_name=spec.name,
                      observers=observers, store=writer, callbacks=cbs, t0=t0, config=config, objective=objective,
                      reevaluate=reevaluate, reevaluate_episodes=reevaluate_episodes or 4 * eval_episodes,
                      reevaluate_seeds=reevaluate_seeds,
                      retrain_share=DEFAULT_SHARE if set(given.values()) == {AUTO} else None)
        extra = {"model": model} if model is not None else {}
        policy = POLICIES[spec.kind](study, spec, max_trials, numpy_rng(k_rng), **extra)
        study.precompile(policy)
        study.setup_seconds = study.now()
        if writer is None or not _restore(writer, study, policy, points):
            if first is None:  # every snapshot was unreadable: a fresh start after all
                first = _first_proposals(proposer, max(8, slots), space)
            study.proposed.extend(zip(first, space.configs(first)))
        try:
            result = study.run(policy)
            ok = True
            return result
        except Exception as e:
            if distributed.multi_process():  # a collective failed: most likely a peer died
                e.add_note(f"hyperjax: process {jax.process_index()} of {jax.process_count()} of a multi-process "
                           "study stops: a process it trains with failed or was killed (every process stops within "
                           "heartbeat_timeout_seconds of hj.distributed.initialize)"
                           + (f"; continue it with hj.resume({store!r})" if store is not None else ""))
            raise
    finally:
        if writer is not None:
            # after a failure with several processes, a checkpoint write may wait at a barrier
            # for a dead peer: it is abandoned (the last complete snapshot is the resume point)
            writer.close(wait=ok or not distributed.multi_process())


def _open_store(store: str, config: dict, **options) -> tuple[StudyStore, list[int], list[str]] | None:
    """Opens the store for ``config``: a new study, or one to resume, with its resume points
    (newest first) and the keys of ``config`` that are ``"auto"`` where the stored study, written
    before ``"auto"`` was their default, has none (it continues with 0, as it began); ``None`` if
    it holds this study finished. With several processes process 0 reads and checks the store
    and broadcasts what it found (an error is raised everywhere)."""
    found = {"error": None, "finished": False, "resuming": False, "legacy": []}
    writer = None
    if distributed.is_primary():
        try:
            found["resuming"] = exists(store)
            if found["resuming"]:
                meta = load_meta(store)
                found["legacy"] = [k for k in ("reevaluate", "reevaluate_seeds")
                                   if k not in meta["config"] and config.get(k) == AUTO]
                differs = cfgmod.diff(meta["config"], {k: v for k, v in config.items() if k not in found["legacy"]})
                if differs:
                    raise ValueError(f"tune: store={store!r} holds a study with another configuration; differing "
                                     "fields: " + "; ".join(differs) + " (use another store directory, or "
                                     "hj.resume(store))")
                found["finished"] = meta.get("status") == "finished"
            if not found["finished"]:
                writer = StudyStore(store, **options)
        except Exception as e:  # StoreLocked, a configuration mismatch, an unreadable store
            if not distributed.multi_process():
                raise
            found["error"] = f"{type(e).__name__}: {e}"
    found = distributed.broadcast(found)
    if found["error"] is not None:
        raise ValueError(found["error"])
    if found["finished"]:
        return None
    if writer is None:  # another process: it writes checkpoint shards only
        writer = StudyStore(store, **options)
    if distributed.is_primary() and not found["resuming"]:
        writer.create(config, _versions())
    points = distributed.broadcast(writer.resume_points() if distributed.is_primary() else None)
    return writer, points, list(found["legacy"])


def _first_proposals(proposer, k: int, space: SearchSpace) -> np.ndarray:
    """The study's first ``k`` proposals, checked (asked for before anything compiles, so that a
    proposer returning garbage fails at once); none if the proposer has nothing to propose."""
    try:
        raw = proposer.ask(k)
    except ValueError:  # nothing to propose: the study ends at once, with no trial
        return np.zeros((0, space.ndim))
    return check_proposals(proposer, raw, k, space.ndim)


def _restore(writer: StudyStore, study: Study, policy, points: list[int]) -> bool:
    """Continues from the newest usable snapshot of the store (``points``: the resume points,
    newest first; a damaged checkpoint falls back to the one before); with none, the store's
    records are cleared for a fresh start (False). With several processes process 0 reads the
    host state and broadcasts it; every process restores its own shards."""
    primary = distributed.is_primary()
    for tick in points:
        state = distributed.broadcast(writer.snapshot(tick) if primary else None)
        like = study.device_state()
        pools = {t["id"]: t["bucket"] for t in state["trials"]}
        # one trial's members as the pool's take() leaves them (shapes, dtypes, shardings)
        like["paused"] = {str(tid): study.pools[pools[tid]].take(0) for tid, _ in state["paused"]}
        like["best"] = None if state["best"] < 0 else study.pools[pools[state["best"]]].take(0)
        if "leaders" in state:
            like["leaders"] = {str(tid): study.pools[pools[tid]].take(0) for tid in state["leaders"]}
        else:  # written before leaders were kept
            del like["leaders"]
        error = None
        try:
            device = writer.checkpoints.restore(tick, like)
        except Exception as e:  # a damaged checkpoint: the one before it
            error = e
        if not distributed.all_true(error is None):  # every process falls back together
            warnings.warn(f"store: the checkpoint of tick {tick} could not be read "
                          f"({'on another process' if error is None else f'{type(error).__name__}: {error}'}); "
                          "resuming from an earlier one", stacklevel=3)
            continue
        setup = study.now()
        study.load_state_dict(state, policy, device)
        study.t0 -= setup  # this process's setup counts towards the study's running time
        study.setup_seconds += setup
        if primary:
            writer.rewind(tick, study.trials)
        return True
    if primary:
        writer.rewind(0, [])
    return False


def _predictor(proposer, space, key, target: float):
    """The BNN the extrapolation scheduler reads: the study's own BNN proposer, or a predictor
    fed the same observations and never asked for proposals."""
    from hyperjax.surrogate.bnn import BNNConfig
    from hyperjax.surrogate.proposer import BNNProposer

    if isinstance(proposer, BNNProposer):
        return proposer
    seed = seed_int(jax.random.fold_in(key, 0xE7))
    return BNNProposer(space, seed=seed, target_budget=target,
                       config=BNNConfig(svi_steps=1000, svi_warm_steps=300, num_draws=64))


def _progress_callback(progress_fn):
    def progress(study, changes):
        if changes.get("final"):
            return
        p = study.progress()
        progress_fn(study.used, {f"study/{k}": p[k] for k in (
            "tick", "seconds", "trials", "running", "completed", "evicted", "failed", "best_score", "slot_utilization")})

    return progress


def _versions() -> dict:
    import hyperjax

    return {"hyperjax": hyperjax.__version__, "jax": jax.__version__, "devices": [str(d) for d in jax.local_devices()]}


def resume(store: str, *, proposer: Any = None, progress_fn: Callable | None = None, callbacks: list | None = None,
           devices: tuple | None = None, snapshot_every: int = 1, snapshot_seconds: float = 5.0,
           keep_params: bool = True, transfer_from: Any = None) -> StudyResult:
    """Continues the study in ``store`` from its last committed snapshot (a finished study is
    returned as it is). The configuration is read from the store; a study that used a custom
    proposer object needs it passed again as ``proposer``, and one that transferred from a
    ``StudyResult`` in memory (not a store directory) needs it passed again as
    ``transfer_from``."""
    store = check_directory(store, "resume: store")
    if not exists(store):
        raise ValueError(f"resume: store={store!r} holds no hyperjax study")
    c = dict(load_meta(store)["config"])
    if isinstance(c["proposer"], dict):
        if proposer is None or type(proposer).__qualname__ != c["proposer"]["object"]:
            raise ValueError(f"resume: the study used a {c['proposer']['object']} proposer object; pass it as proposer=")
        c["proposer"] = None
    if isinstance(c.get("transfer_from"), dict):
        if transfer_from is None or type(transfer_from).__qualname__ != c["transfer_from"]["object"]:
            raise ValueError(f"resume: the study transferred from a {c['transfer_from']['object']} in memory; pass "
                             "it as transfer_from=")
        c["transfer_from"] = transfer_from
    agent, space, kwargs = cfgmod.tune_arguments(c)
    if proposer is not None:
        kwargs["proposer"] = proposer
    return tune(agent, space, **kwargs, progress_fn=progress_fn, callbacks=callbacks, store=store, devices=devices,
                snapshot_every=snapshot_every, snapshot_seconds=snapshot_seconds, keep_params=keep_params)
