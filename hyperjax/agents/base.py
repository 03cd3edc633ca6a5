"""The actor-critic agent skeleton PPO and A2C share.

An agent is a frozen dataclass of *static* settings (they fix array shapes: number of envs,
rollout length, minibatches, epochs, layer widths, activation), hashable so it can be closed
over by ``jit``. Its tunable *traced* hyperparameters live in a separate ``HParams`` flax struct
whose leaves are arrays, so one compiled program trains members with different values.

Per member (no population axis; ``hyperjax.population`` vmaps and shards these):

- ``init(key, hp) -> MemberState``
- ``update(state, hp) -> (state, UpdateMetrics)``: one rollout of ``num_envs x rollout_length``
  env steps followed by the agent's learning step.
- ``evaluate(key, state, num_episodes) -> returns (num_episodes,)`` of the greedy/mean policy.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from hyperjax import validate
from hyperjax.agents.common import RunningStats, check_hparams, gae, policy_dist, tree_all_finite
from hyperjax.agents.networks import ACTIVATIONS, Actor, Critic
from hyperjax.envs import Env, make_env


@struct.dataclass
class MemberState:
    """Everything one population member carries between updates."""

    params: Any  # {"actor": ..., "critic": ...}
    opt_state: Any
    env_state: Any  # leaves (num_envs, ...)
    obs: jax.Array  # (num_envs, obs_dim) raw observations to act on
    obs_stats: RunningStats
    ep_return: jax.Array  # (num_envs,) return of the running episodes
    ep_length: jax.Array  # (num_envs,) int32
    key: jax.Array  # the member's own PRNG stream
    updates: jax.Array  # () int32, updates done
    failed: jax.Array  # () bool, set once anything went non-finite; the member is then frozen


@struct.dataclass
class UpdateMetrics:
    """Scalars per update (per member)."""

    return_sum: jax.Array  # sum of returns of the episodes that ended in this rollout
    return_count: jax.Array  # how many ended
    length_sum: jax.Array
    entropy: jax.Array
    policy_loss: jax.Array
    value_loss: jax.Array
    approx_kl: jax.Array
    failed: jax.Array


class Batch(struct.PyTreeNode):
    obs: jax.Array
    action: jax.Array
    logp: jax.Array
    value: jax.Array
    adv: jax.Array
    target: jax.Array


def _positive_int(h: Any) -> bool:
    return isinstance(h, (int, np.integer)) and not isinstance(h, (bool, np.bool_)) and h >= 1


@dataclasses.dataclass(frozen=True)
class ActorCriticAgent:
    """Shared static settings and the rollout/evaluation machinery."""

    env: str = "CartPole-v1"
    num_envs: int = 16
    hidden: tuple[int, ...] = (64, 64)
    activation: str = "tanh"
    normalize_obs: bool = False

    name: ClassVar[str] = "agent"
    HParams: ClassVar[type]
    # Static fields that do not fix array shapes but are still compile-time constants.
    STATIC_FIELDS: ClassVar[tuple[str, ...]] = ("env", "activation", "normalize_obs")

    # -- validation ------------------------------------------------------------------------
    def __post_init__(self):
        # Every static setting is checked before the environment is built: building a gymnax
        # environment compiles, and bad input must fail before anything compiles.
        if isinstance(self.hidden, list):
            object.__setattr__(self, "hidden", tuple(self.hidden))
        self._check_int("num_envs")
        self._check_int(self.rollout_field)
        if not isinstance(self.hidden, tuple) or not self.hidden or not all(map(_positive_int, self.hidden)):
            raise ValueError(f"{self.name}: hidden={self.hidden!r} must be a non-empty tuple of positive ints")
        # Plain ints, so that equal settings give equal (hashable, cache-hitting) agents.
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        if not isinstance(self.activation, str) or self.activation not in ACTIVATIONS:
            raise ValueError(
                f"{self.name}: activation={self.activation!r} is unknown; allowed: {', '.join(ACTIVATIONS)}"
            )
        self._check_bool("normalize_obs")
        self._check_static()
        env = make_env(self.env)  # raises ValueError naming unknown envs
        self._check_env(env)

    def _check_static(self) -> None:
        """Hook for an agent's own static settings (checked before the environment is built)."""

    def _check_int(self, field: str, low: int = 1) -> None:
        """Validates the integer setting ``field`` (>= ``low``) and stores it as a Python int."""
        object.__setattr__(self, field, validate.integer(self.name, field, getattr(self, field), low))

    def _check_bool(self, field: str) -> None:
        """Validates the boolean setting ``field``: ``bool("no")`` is True, so only bools pass."""
        object.__setattr__(self, field, validate.boolean(self.name, field, getattr(self, field)))

    def _check_env(self, env: Env) -> None:
        """Hook for agents that only support one kind of action space."""

    # -- static description ------------------------------------------------------------------
    rollout_field: ClassVar[str] = "num_steps"

    @property
    def rollout_length(self) -> int:
        return getattr(self, self.rollout_field)

    @property
    def steps_per_update(self) -> int:
        """Env steps one ``update`` consumes: ``num_envs * rollout_length``."""
        return self.num_envs * self.rollout_length

    @property
    def learn_batch(self) -> int:
        """Samples in one gradient step: the whole rollout (``steps_per_update``)."""
        return self.steps_per_update

    @property
    def env_obj(self) -> Env:
        return make_env(self.env)

    @classmethod
    def static_names(cls) -> tuple[str, ...]:
        """Settings that are compile-time constants (a change means another compiled bucket)."""
        return tuple(f.name for f in dataclasses.fields(cls) if f.name != "env")

    @classmethod
    def hparam_names(cls) -> tuple[str, ...]:
        """Settings that are traced array leaves (no recompilation when they change)."""
        return tuple(cls.HParams.__dataclass_fields__)

    def hparams(self, **values) -> Any:
        """Builds an ``HParams`` struct, defaults filled in, leaves broadcast to one shape.

        Each value is a scalar or a list of ``K`` values (every list the same length);
        ``agent.hparams(learning_rate=[1e-3, 3e-4])`` gives a batch of two members, leaves ``(2,)``.
        Raises ValueError naming the field and value for unknown names, static settings,
        out-of-domain values and lists of different lengths.
        """
        for name, value in values.items():
            if name == "env" or name in self.static_names():
                raise ValueError(self._static_not_traced(name, value))
        checked = check_hparams(self.HParams, values, self.name)
        shapes = {n: np.shape(v) for n, v in checked.items()}
        try:
            shape = np.broadcast_shapes(*shapes.values())
        except ValueError:
            sizes = ", ".join(
                f"{n} has {s[0]} values" if len(s) == 1 else f"{n} has shape {s}" for n, s in shapes.items() if s
            )
            raise ValueError(
                f"{self.name}: hyperparameter lists must have the same length (one value per member): {sizes}"
            ) from None
        defaults = {f: np.float32(v.default) for f, v in self.HParams.__dataclass_fields__.items()}
        merged = {**defaults, **checked}
        return self.HParams(**{k: jnp.asarray(np.broadcast_to(v, shape), jnp.float32) for k, v in merged.items()})

    def _static_not_traced(self, name: str, value: Any) -> str:
        """The error for passing a static setting where a traced hyperparameter is expected."""
        cls = type(self).__name__
        kind = "compile-time" if name in self.STATIC_FIELDS else "shape-fixing"
        # A list of candidate values is no setting for one agent: show where the value goes.
        shown = repr(value) if np.ndim(value) == 0 or name == "hidden" else "..."
        how = f"set it on the agent (hj.{cls}({name}={shown}))"
        if name != "env":  # env is no search-space dimension: one study tunes one env
            how += " or tune it as a structural dimension of the search space"
        return (
            f"{cls}.hparams: {name}={value!r} is a static ({kind}) setting, not a traced hyperparameter; {how}"
        )

    def replace(self, **changes) -> "ActorCriticAgent":
        return dataclasses.replace(self, **changes)

    # -- networks ----------------------------------------------------------------------------
    @property
    def actor(self) -> Actor:
        env = self.env_obj
        return Actor(env.num_actions, env.discrete, self.hidden, self.activation)

    @property
    def critic(self) -> Critic:
        return Critic(self.hidden, self.activation)

    def make_optimizer(self, hp) -> optax.GradientTransformation:
        """The optimizer for hyperparameters ``hp``; its state's structure does not depend on hp."""
        raise NotImplementedError

    # -- per member ----------------------------------------------------------------------------
    def init(self, key: jax.Array, hp) -> MemberState:
        """Fresh network params, optimizer state and environments for one member."""
        env = self.env_obj
        k_actor, k_critic, k_env, k_run = jax.random.split(key, 4)
        dummy = jnp.zeros((env.obs_dim,), jnp.float32)
        params = {
            "actor": self.actor.init(k_actor, dummy),
            "critic": self.critic.init(k_critic, dummy),
        }
        obs, env_state = jax.vmap(env.reset)(jax.random.split(k_env, self.num_envs))
        stats = RunningStats.create(env.obs_dim)
        if self.normalize_obs:
            stats = stats.update(obs)
        return MemberState(
            params=params,
            opt_state=self.make_optimizer(hp).init(params),
            env_state=env_state,
            obs=obs,
            obs_stats=stats,
            ep_return=jnp.zeros((self.num_envs,), jnp.float32),
            ep_length=jnp.zeros((self.num_envs,), jnp.int32),
            key=k_run,
            updates=jnp.zeros((), jnp.int32),
            failed=jnp.zeros((), bool),
        )

    def _norm(self, stats: RunningStats, obs: jax.Array) -> jax.Array:
        return stats.normalize(obs) if self.normalize_obs else obs

    def _env_action(self, action: jax.Array) -> jax.Array:
        env = self.env_obj
        if env.discrete:
            return action
        return jnp.clip(action, jnp.asarray(env.action_low), jnp.asarray(env.action_high))

    def rollout(self, state: MemberState) -> tuple[MemberState, Batch, dict]:
        """Collects ``rollout_length`` steps in ``num_envs`` envs and computes advantages later.

        Returns the advanced state, the time-major trajectory pieces and episode statistics.
        """
        env = self.env_obj
        actor, critic = self.actor, self.critic
        params = state.params

        def step(carry, key):
            env_state, obs, stats, ep_ret, ep_len = carry
            k_act, k_env = jax.random.split(key)
            nobs = self._norm(stats, obs)
            dist = policy_dist(*actor.apply(params["actor"], nobs))
            action, logp = dist.sample_and_log_prob(seed=k_act)
            value = critic.apply(params["critic"], nobs)
            tr = jax.vmap(env.step)(jax.random.split(k_env, self.num_envs), env_state, self._env_action(action))
            done = jnp.logical_or(tr.terminated, tr.truncated)
            nfinal = self._norm(stats, tr.final_obs)
            if self.normalize_obs:
                stats = stats.update(tr.final_obs)
            ep_ret = ep_ret + tr.reward
            ep_len = ep_len + 1
            out = (nobs, action, logp, value, tr.reward, tr.terminated, done, nfinal, ep_ret, ep_len)
            ep_ret = jnp.where(done, 0.0, ep_ret)
            ep_len = jnp.where(done, 0, ep_len)
            return (tr.state, tr.obs, stats, ep_ret, ep_len), out

        key, k_roll = jax.random.split(state.key)
        carry = (state.env_state, state.obs, state.obs_stats, state.ep_return, state.ep_length)
        carry, traj = jax.lax.scan(step, carry, jax.random.split(k_roll, self.rollout_length))
        env_state, obs, stats, ep_ret, ep_len = carry
        nobs, action, logp, value, reward, term, done, nfinal, ret_at, len_at = traj

        # CALCULATE ADVANTAGE: bootstrap from the state actually reached, unless it was terminal.
        final_value = critic.apply(params["critic"], nfinal)
        next_value = jnp.where(term, 0.0, final_value)
        episodes = {
            "return_sum": jnp.sum(jnp.where(done, ret_at, 0.0)),
            "return_count": jnp.sum(done).astype(jnp.float32),
            "length_sum": jnp.sum(jnp.where(done, len_at, 0)).astype(jnp.float32),
        }
        new_state = state.replace(
            env_state=env_state, obs=obs, obs_stats=stats, ep_return=ep_ret, ep_length=ep_len, key=key
        )
        traj = (nobs, action, logp, value, reward, next_value, done)
        return new_state, traj, episodes

    def make_batch(self, traj, hp) -> Batch:
        nobs, action, logp, value, reward, next_value, done = traj
        adv, target = gae(reward, value, next_value, done, hp.gamma, hp.gae_lambda)
        flat = lambda x: x.reshape((-1,) + x.shape[2:])  # noqa: E731  (T, N, ...) -> (T*N, ...)
        return Batch(flat(nobs), flat(action), flat(logp), flat(value), flat(adv), flat(target))

    def learn(self, key, params, opt_state, batch: Batch, hp):
        """Agent-specific learning step: returns (params, opt_state, loss metrics dict)."""
        raise NotImplementedError

    def update(self, state: MemberState, hp) -> tuple[MemberState, UpdateMetrics]:
        """One rollout and learning step; a member whose numbers go non-finite is frozen.

        The same as ``improve(state, *collect(state, hp), hp)``.
        """
        return self.improve(state, *self.collect(state, hp), hp)

    def collect(self, state: MemberState, hp) -> tuple[MemberState, Batch, dict]:
        """The first half of :meth:`update`: one rollout and its advantages.

        Returns the state advanced through the rollout (env state, observations, episode
        statistics, key), the flat learning batch (leaves ``(steps_per_update, ...)``) and the
        rollout's episode sums (scalars).
        """
        new, traj, episodes = self.rollout(state)
        return new, self.make_batch(traj, hp), episodes

    def improve(self, state: MemberState, new: MemberState, batch: Batch, episodes: dict, hp
                ) -> tuple[MemberState, UpdateMetrics]:
        """The second half of :meth:`update`: the learning step on ``batch`` that
        :meth:`collect` gathered from ``state`` (which advanced it to ``new``), and the guard
        that freezes a member at ``state`` once anything went non-finite."""
        key, k_learn = jax.random.split(new.key)
        params, opt_state, losses = self.learn(k_learn, state.params, state.opt_state, batch, hp)
        new = new.replace(params=params, opt_state=opt_state, key=key, updates=state.updates + 1)
        # GUARD: one bad member must not poison anything; freeze it at its last finite state.
        ok = tree_all_finite((params, losses, episodes["return_sum"], new.obs))
        failed = jnp.logical_or(state.failed, jnp.logical_not(ok))
        frozen = state.replace(key=key, failed=failed)
        new = jax.tree.map(lambda old, n: jnp.where(failed, old, n), frozen, new.replace(failed=failed))
        zero_if_failed = lambda x: jnp.where(failed, 0.0, x)  # noqa: E731
        metrics = UpdateMetrics(
            return_sum=zero_if_failed(episodes["return_sum"]),
            return_count=zero_if_failed(episodes["return_count"]),
            length_sum=zero_if_failed(episodes["length_sum"]),
            entropy=losses["entropy"],
            policy_loss=losses["policy_loss"],
            value_loss=losses["value_loss"],
            approx_kl=losses["approx_kl"],
            failed=failed,
        )
        return new, metrics

    # -- evaluation ------------------------------------------------------------------------------
    def act_greedy(self, state: MemberState, obs: jax.Array) -> jax.Array:
        """The deterministic action (argmax / Gaussian mean, clipped) for raw observations."""
        out, log_std = self.actor.apply(state.params["actor"], self._norm(state.obs_stats, obs))
        if log_std is None:
            return jnp.argmax(out, -1)
        return self._env_action(out)

    def evaluate(self, key: jax.Array, state: MemberState, num_episodes: int) -> jax.Array:
        """Undiscounted returns ``(num_episodes,)`` of the greedy policy, one episode per env."""
        env = self.env_obj
        k_reset, k_run = jax.random.split(key)
        obs, env_state = jax.vmap(env.reset)(jax.random.split(k_reset, num_episodes))

        def cond(c):
            t, _, _, _, _, done = c
            return jnp.logical_and(t <= env.max_episode_steps, jnp.logical_not(jnp.all(done)))

        def body(c):
            t, key, env_state, obs, ret, done = c
            key, k_step = jax.random.split(key)
            tr = jax.vmap(env.step)(jax.random.split(k_step, num_episodes), env_state, self.act_greedy(state, obs))
            ret = ret + jnp.where(done, 0.0, tr.reward)
            done = done | tr.terminated | tr.truncated
            return t + 1, key, tr.state, tr.obs, ret, done

        init = (jnp.zeros((), jnp.int32), k_run, env_state, obs, jnp.zeros(num_episodes), jnp.zeros(num_episodes, bool))
        return jax.lax.while_loop(cond, body, init)[4]
