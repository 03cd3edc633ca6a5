"""``tune``: one call that runs a study and returns its results."""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, Mapping

import jax
import numpy as np

from hyperjax.agents.base import ActorCriticAgent
from hyperjax.population import get_runner
from hyperjax.proposers import PROPOSERS, make_proposer
from hyperjax.schedulers.specs import scheduler_spec
from hyperjax.space import SearchSpace
from hyperjax.study.buckets import allocate_slots, bucket_agent, enumerate_buckets, structural_names
from hyperjax.study.engine import Pool, Study
from hyperjax.study.policies import AsyncPolicy, BracketPolicy, ExtrapolationPolicy, PBTPolicy
from hyperjax.study.records import StudyResult
from hyperjax.train import as_key


def _int(field: str, value, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"tune: {field}={value!r} must be an integer >= {low}")
    return int(value)


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
    log_path: str | None = None,
    devices: tuple | None = None,
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
        ``"successive_halving"``, ``"hyperband"``, ``"pbt"``, ``"extrapolate"`` (BNN
        learning-curve extrapolation) or a spec with options, e.g.
        ``hj.schedulers.HyperTrick(r=0.3)``.
      proposer: ``"sobol"``, ``"random"``, ``"bnn"`` (Bayesian-neural-network surrogate, Thompson
        batches; every phase boundary is an observation at its fidelity), ``"bnn-qei"``, or an
        object with ``ask(k)``/``tell(u, scores, budgets)``.
      seeds: seeds per trial; a trial's score is the mean over its seeds, and it fails if any does.
      seed: everything random flows from it (same seed, same study on the same machine).
      eval_episodes: greedy evaluation episodes per member when a trial completes.
      max_trials: cap on trials started (HyperTrick's ``N``; by default what the budget affords).
      max_seconds: wall-clock cap: no trial starts that is not expected to finish in time, and
        the study stops at this time (running trials are then ``"stopped"``).
      fixed: values for traced hyperparameters the space does not tune (default: the agent's).
      progress_fn: called once per tick as ``progress_fn(env_steps_used, metrics)``.
      log_path: append every trial change to this JSON-lines file (see ``load_trials``).
      devices: devices to shard each bucket's population over (default: all local devices).
    """
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
    if max_trials is not None:
        max_trials = _int("max_trials", max_trials, 1)
    if max_seconds is not None and not (isinstance(max_seconds, (int, float)) and max_seconds > 0):
        raise ValueError(f"tune: max_seconds={max_seconds!r} must be a number > 0")
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
    per_bucket = allocate_slots(slots, weights)

    # -- build -----------------------------------------------------------------------------
    t0 = time.perf_counter()  # the study's clock includes building (and compiling) the pools
    key = as_key(seed)
    k_prop, k_pools, k_rng, k_study = jax.random.split(key, 4)
    if isinstance(proposer, str):
        seed_int = int(np.asarray(jax.random.randint(k_prop, (), 0, 2**31 - 1)))
        extra = {"target_budget": float(num_phases * phase_steps)} if proposer.startswith("bnn") else {}
        proposer = make_proposer(proposer, space, seed_int, **extra)
    rng = np.random.default_rng(np.asarray(jax.random.key_data(k_rng)).astype(np.uint64))
    pools = []
    offset = 0
    devs = None if devices is None else tuple(devices)
    for i, (a, b, w) in enumerate(zip(agents, buckets, per_bucket)):
        pools.append(Pool(i, b, a, get_runner(a, devs), int(w), offset, seeds, phase_steps, k_pools, base_hp))
        offset += int(w)
    study = Study(agent=agent, space=space, structural=structural, buckets=buckets, pools=pools, proposer=proposer,
                  num_phases=num_phases, seeds=seeds, budget=budget, max_seconds=max_seconds,
                  eval_episodes=eval_episodes, base_hp=base_hp, rng=rng, key=k_study, progress_fn=progress_fn,
                  log_path=log_path, scheduler_name=spec.name, t0=t0)
    policy_cls = {"asynchronous": AsyncPolicy, "brackets": BracketPolicy, "pbt": PBTPolicy,
                  "extrapolate": ExtrapolationPolicy}[spec.kind]
    policy = policy_cls(study, spec, max_trials)
    return study.run(policy)
