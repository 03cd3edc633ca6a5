"""``train``: K configurations x S seeds trained together, with curves and a held-apart evaluation."""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from hyperjax import validate
from hyperjax.agents.base import ActorCriticAgent, MemberState
from hyperjax.population import get_runner, unpad
from hyperjax.rng import as_key

__all__ = ["EVAL_STREAM", "TrainResult", "as_key", "forward_fill_returns", "member_keys", "train"]

# Evaluation keys come from a stream no training key is drawn from.
EVAL_STREAM = 0x5EED_E7A1


def member_keys(key: jax.Array, num_configs: int, num_seeds: int) -> tuple[jax.Array, jax.Array]:
    """Training and evaluation keys, each ``(K*S,)`` in config-major order.

    Seed ``s`` uses the same training key and the same evaluation episodes for every config
    (common random numbers: configs are compared on equal footing).
    """
    train = jax.vmap(lambda s: jax.random.fold_in(key, s))(jnp.arange(num_seeds))
    ev_base = jax.random.fold_in(key, EVAL_STREAM)
    ev = jax.vmap(lambda s: jax.random.fold_in(ev_base, s))(jnp.arange(num_seeds))
    return jnp.tile(train, num_configs), jnp.tile(ev, num_configs)


@dataclasses.dataclass
class TrainResult:
    """Per-member results as numpy arrays, members indexed ``[config, seed]``.

    ``curves`` holds the mean return of the training episodes that ended in each update,
    carried forward through updates in which none ended (NaN before the first one).
    """

    agent: ActorCriticAgent
    hparams: dict[str, np.ndarray]  # name -> (K,)
    env_steps: np.ndarray  # (U,) env steps per member after each update
    curves: np.ndarray  # (K, S, U)
    eval_returns: np.ndarray  # (K, S) mean greedy return over the evaluation episodes
    metrics: dict[str, np.ndarray]  # entropy, policy_loss, value_loss, approx_kl: (K, S, U)
    failed: np.ndarray  # (K, S) bool
    state: MemberState  # final member states, leaves (K*S, ...)
    seconds: float

    def member_state(self, config: int, seed: int = 0) -> MemberState:
        s = self.curves.shape[1]
        return jax.tree.map(lambda x: x[config * s + seed], self.state)

    @property
    def score(self) -> np.ndarray:
        """Mean evaluation return per config ``(K,)``; failed members count as ``-inf``."""
        r = np.where(self.failed, -np.inf, self.eval_returns)
        return r.mean(axis=1)


def _chunking(num_updates: int, chunk_updates: int | None) -> int:
    if chunk_updates is None or chunk_updates >= num_updates:
        return num_updates
    # The largest divisor not above the request, so every chunk reuses one compiled program.
    for c in range(int(chunk_updates), 0, -1):
        if num_updates % c == 0:
            return c
    return 1


def _check_schedule(agent: ActorCriticAgent, schedule, total_timesteps: int) -> list[tuple[int, Any]]:
    """``schedule`` as ``[(start_step, agent.HParams)]``, checked (values through ``agent.hparams``)."""
    if not isinstance(schedule, (list, tuple)) or not schedule:
        raise ValueError(f"train: schedule={schedule!r} must be a non-empty list of (start_step, values)")
    out, last = [], -1
    for i, item in enumerate(schedule):
        if not isinstance(item, (list, tuple)) or len(item) != 2 or not isinstance(item[1], Mapping):
            raise ValueError(f"train: schedule[{i}]={item!r} must be (start_step, dict of values)")
        step, values = item
        if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step <= last or step >= total_timesteps:
            raise ValueError(f"train: schedule[{i}] start_step={step!r} must be an integer above the previous "
                             f"start and below total_timesteps={total_timesteps}")
        if i == 0 and step != 0:
            raise ValueError(f"train: schedule[0] start_step={step!r} must be 0")
        hp = agent.hparams(**dict(values))  # validates names and values
        if any(np.ndim(x) for x in jax.tree.leaves(hp)):
            raise ValueError(f"train: schedule[{i}] values must be scalars")
        out.append((int(step), hp))
        last = step
    return out


def _on_host(hparams: Any) -> Any:
    """Validated hyperparameters as float32 numpy leaves ``(K,)`` (numpy, not jnp: nothing is
    compiled while arguments are still being checked)."""
    return jax.tree.map(lambda x: np.atleast_1d(np.asarray(x, np.float32)), hparams)


def forward_fill_returns(return_sum: np.ndarray, return_count: np.ndarray) -> np.ndarray:
    """Per-update mean episode return, carried forward over updates with no finished episode."""
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(return_count > 0, return_sum / np.maximum(return_count, 1), np.nan)
    out = mean.copy()
    for t in range(1, out.shape[-1]):
        out[..., t] = np.where(np.isnan(out[..., t]), out[..., t - 1], out[..., t])
    return out


def train(
    agent: ActorCriticAgent,
    hparams: Any | Mapping[str, Any] | None = None,
    *,
    total_timesteps: int,
    num_seeds: int = 1,
    seed: int | jax.Array = 0,
    eval_episodes: int = 32,
    chunk_updates: int | None = None,
    progress_fn: Callable[[int, dict], None] | None = None,
    devices: tuple | None = None,
    schedule: list | None = None,
) -> TrainResult:
    """Trains ``K`` configurations x ``num_seeds`` seeds as one sharded population.

    Args:
      agent: a ``PPO``/``A2C`` (static settings; one compiled bucket).
      hparams: an ``agent.HParams`` with leaves ``(K,)`` or scalars, or a dict of values
        (validated, broadcast); ``None`` for the defaults (``K = 1``).
      schedule: instead of ``hparams``, one configuration whose hyperparameters change during
        training: ``[(start_step, values), ...]`` (env steps per member, the first 0, increasing;
        ``values`` a dict as for ``hparams``, scalars), each applied from the first update at or
        after its start (``StudyResult.best_schedule()`` gives a PBT study's); ``K = 1``.
      total_timesteps: env steps per member; rounded down to whole updates.
      num_seeds: seeds per configuration.
      seed: int or PRNG key; everything random flows from it.
      eval_episodes: greedy evaluation episodes per member at the end (held-apart seeds).
      chunk_updates: updates per compiled call; the host calls ``progress_fn`` between chunks.
      progress_fn: ``progress_fn(env_steps, metrics)`` with ``metrics["train/episode_return"]``
        ``(K, S)`` and ``metrics["train/failed"]``.
      devices: devices to shard over (default: every device of every process).
    """
    # Every argument is checked on the host before anything is traced or compiled.
    if not isinstance(agent, ActorCriticAgent):
        raise ValueError(f"train: agent={agent!r} must be an agent such as hj.PPO() or hj.A2C()")
    for name, v in (("num_seeds", num_seeds), ("eval_episodes", eval_episodes)):
        validate.integer("train", name, v, 1)
    if (
        isinstance(total_timesteps, bool)
        or not isinstance(total_timesteps, (int, np.integer))
        or total_timesteps < agent.steps_per_update
    ):
        raise ValueError(
            f"train: total_timesteps={total_timesteps!r} must be an integer >= one update "
            f"(num_envs * {agent.rollout_field} = {agent.steps_per_update})"
        )
    if chunk_updates is not None:
        validate.integer("train", "chunk_updates", chunk_updates, 1)
    if progress_fn is not None and not callable(progress_fn):
        raise ValueError(f"train: progress_fn={progress_fn!r} must be callable or None")
    segments = None
    if schedule is not None:
        if hparams is not None:
            raise ValueError("train: give hparams or schedule, not both")
        segments = _check_schedule(agent, schedule, int(total_timesteps))
        hparams = segments[0][1]  # an agent.HParams, validated
    if hparams is None or isinstance(hparams, Mapping):
        values = dict(hparams or {})
    elif isinstance(hparams, agent.HParams):
        values = {n: getattr(hparams, n) for n in agent.hparam_names()}
    else:
        raise ValueError(
            f"train: hparams={hparams!r} must be None, a dict of values or a {agent.HParams.__name__}"
        )
    # Validated and broadcast by name (a struct built by hand has skipped these checks).
    hparams = agent.hparams(**values)
    hp = _on_host(hparams)
    shape = np.shape(jax.tree.leaves(hp)[0])  # agent.hparams broadcast every leaf to one shape
    if len(shape) != 1:
        raise ValueError(f"train: hyperparameter values must be scalars or lists of K values, got shape {shape}")
    k = shape[0]
    key = as_key(seed, "train: seed")

    num_updates = int(total_timesteps) // agent.steps_per_update
    chunk = _chunking(num_updates, chunk_updates)
    starts = [0]  # the update at which each segment of a schedule begins
    if segments is not None:
        starts = [-(-step // agent.steps_per_update) for step, _ in segments]  # first update at or after
        # chunks end where segments begin, so a segment's values apply from its first update
        chunk = math.gcd(chunk, *starts, num_updates)
    m = k * num_seeds
    runner = get_runner(agent, None if devices is None else tuple(devices))
    train_keys, eval_keys = member_keys(key, k, num_seeds)
    members = lambda h: jax.tree.map(lambda x: jnp.repeat(jnp.asarray(x), num_seeds), h)  # noqa: E731
    hp_members = members(hp)
    hp_segments = [hp_members] if segments is None else [members(_on_host(h)) for _, h in segments]

    t0 = time.perf_counter()
    state = runner.init(train_keys, hp_members)
    chunks = []
    for i in range(num_updates // chunk):
        segment = sum(1 for s in starts if s <= i * chunk) - 1
        hp_members = hp_segments[segment]
        state, metrics = runner.advance(state, hp_members, chunk)
        chunks.append(metrics)
        if progress_fn is not None:
            host = jax.device_get(unpad(metrics, m))
            ret = forward_fill_returns(host.return_sum, host.return_count)[:, -1]
            progress_fn(
                (i + 1) * chunk * agent.steps_per_update,
                {
                    "train/episode_return": ret.reshape(k, num_seeds),
                    "train/failed": np.asarray(host.failed[:, -1]).reshape(k, num_seeds),
                },
            )
    returns = runner.evaluate(eval_keys, state, eval_episodes)
    state, returns, chunks = jax.device_get((unpad(state, m), unpad(returns, m), unpad(chunks, m)))
    seconds = time.perf_counter() - t0

    cat = lambda name: np.concatenate([np.asarray(getattr(c, name)) for c in chunks], axis=1)  # noqa: E731
    shape = (k, num_seeds, num_updates)
    curves = forward_fill_returns(cat("return_sum"), cat("return_count")).reshape(shape)
    failed = np.asarray(chunks[-1].failed[:, -1]).reshape(k, num_seeds)
    eval_returns = np.asarray(returns).mean(axis=1).reshape(k, num_seeds)
    eval_returns = np.where(failed, np.nan, eval_returns)
    return TrainResult(
        agent=agent,
        hparams={n: np.asarray(getattr(hp, n)) for n in agent.hparam_names()},  # a schedule's first
        env_steps=(np.arange(1, num_updates + 1) * agent.steps_per_update),
        curves=curves,
        eval_returns=eval_returns,
        metrics={n: cat(n).reshape(shape) for n in ("entropy", "policy_loss", "value_loss", "approx_kl")},
        failed=failed,
        state=state,
        seconds=seconds,
    )
