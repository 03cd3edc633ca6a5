"""Rolling out one trained member: one ``lax.scan`` over time in a single environment.

The greedy rollout with key ``k`` plays exactly the episode that
``agent.evaluate(k, member, 1)`` scores (same reset and step keys), so what a GIF shows is what
the study's evaluation measures on that key.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from hyperjax import validate
from hyperjax.agents.common import policy_dist

# Actions of stochastic rollouts come from their own stream, so that the environment's keys
# (resets, noise) are the same as the greedy rollout's for the same key.
POLICY_STREAM = 0x0AC7_5EED


class Rollout(NamedTuple):
    """One member's trajectory over ``T = max_steps`` steps of one environment (numpy arrays).

    The environment auto-resets, so after an episode ends the next one starts; ``valid`` marks
    the steps of the first ``episodes`` episodes (a prefix), the rest are to be ignored.
    """

    obs: np.ndarray  # (T+1, obs_dim) the observation acted on at step t (after any reset)
    final_obs: np.ndarray  # (T, obs_dim) the observation step t reached, before any reset
    states: Any  # env states, leaves (T+1, ...): states[t] is the state acted on at step t
    actions: np.ndarray  # (T,) int32 or (T, action_dim) float32: what the env received
    rewards: np.ndarray  # (T,) float32
    dones: np.ndarray  # (T,) bool: step t ended an episode (terminated or truncated)
    valid: np.ndarray  # (T,) bool: step t belongs to the recorded episodes

    @property
    def length(self) -> int:
        """Recorded steps, all episodes together."""
        return int(self.valid.sum())

    def episode_returns(self) -> np.ndarray:
        """Undiscounted return ``(E,)`` of each recorded episode (the last one possibly cut
        short by ``max_steps``)."""
        return np.asarray([self.rewards[s].sum(dtype=np.float64) for s in self.episode_slices()])

    def episode_lengths(self) -> np.ndarray:
        """Steps ``(E,)`` of each recorded episode."""
        return np.asarray([s.stop - s.start for s in self.episode_slices()], np.int64)

    def episode_slices(self) -> list[slice]:
        """The step range of each recorded episode."""
        n = self.length
        ends = [int(t) + 1 for t in np.flatnonzero(self.dones[:n])]
        if not ends or ends[-1] < n:
            ends.append(n)
        return [slice(a, b) for a, b in zip([0] + ends[:-1], ends)]


def act(agent, member, obs: jax.Array, key: jax.Array, greedy: bool) -> jax.Array:
    """The action ``member`` takes on raw observations ``obs (B, obs_dim)``: the agent's greedy
    action, or a sample of its policy (clipped to the action bounds for continuous actions)."""
    if greedy:
        return agent.act_greedy(member, obs)
    nobs = member.obs_stats.normalize(obs) if agent.normalize_obs else obs
    action = policy_dist(*agent.actor.apply(member.params["actor"], nobs)).sample(seed=key)
    env = agent.env_obj
    if env.discrete:
        return action
    # the env sees clipped actions, as in training and evaluation
    return jnp.clip(action, jnp.asarray(env.action_low), jnp.asarray(env.action_high))


def rollout(agent, member, key: jax.Array, *, max_steps: int = 500, greedy: bool = True,
            episodes: int = 1) -> Rollout:
    """Plays ``member`` (one member: leaves without a seed axis) for ``max_steps`` steps.

    Args:
      agent: the member's agent (its bucket's settings).
      member: a ``MemberState`` of one member.
      key: a PRNG key; the greedy rollout plays the episode ``agent.evaluate(key, member, 1)``
        scores.
      max_steps: steps simulated (the length of the scan).
      greedy: the agent's deterministic action, else a sample of its policy.
      episodes: episodes recorded (``valid``); later steps are simulated but not recorded.

    Raises:
      ValueError: bad ``max_steps``/``episodes``/``greedy``, or a ``member`` with a seed axis.
    """
    max_steps = validate.integer("rollout", "max_steps", max_steps, 1)
    episodes = validate.integer("rollout", "episodes", episodes, 1)
    greedy = validate.boolean("rollout", "greedy", greedy)
    if np.ndim(member.updates) != 0:
        raise ValueError(
            f"rollout: member has a leading axis of {np.shape(member.updates)[0]} members; pass one, "
            "e.g. jax.tree.map(lambda x: x[i], members)")
    out = _rollout(agent, member, key, max_steps, greedy, episodes)
    return Rollout(*jax.device_get(out))


@functools.partial(jax.jit, static_argnums=(0, 3, 4, 5))
def _rollout(agent, member, key, max_steps: int, greedy: bool, episodes: int):
    env = agent.env_obj
    # A batch of one environment, keys split as ``ActorCriticAgent.evaluate`` splits them.
    k_reset, k_run = jax.random.split(key)
    obs, state = jax.vmap(env.reset)(jax.random.split(k_reset, 1))
    k_policy = jax.random.fold_in(key, POLICY_STREAM)

    def step(carry, k_act):
        key, state, obs, ended = carry
        key, k_step = jax.random.split(key)
        action = act(agent, member, obs, k_act, greedy)
        tr = jax.vmap(env.step)(jax.random.split(k_step, 1), state, action)
        done = jnp.logical_or(tr.terminated, tr.truncated)[0]
        out = (state, obs[0], tr.final_obs[0], action[0], tr.reward[0], done, ended < episodes)
        return (key, tr.state, tr.obs, ended + done.astype(jnp.int32)), out

    init = (k_run, state, obs, jnp.zeros((), jnp.int32))
    (_, last_state, last_obs, _), traj = jax.lax.scan(step, init, jax.random.split(k_policy, max_steps))
    states, obs_seq, final_obs, actions, rewards, dones, valid = traj
    # SQUEEZE the batch of one; append what the last step left
    states = jax.tree.map(lambda xs, x: jnp.concatenate([xs[:, 0], x]), states, last_state)
    obs_seq = jnp.concatenate([obs_seq, last_obs])
    return obs_seq, final_obs, states, actions, rewards, dones, valid


class FramePlan(NamedTuple):
    """What each frame of a recording shows: every recorded episode's first observation, then
    the observation each of its steps reached (so an episode of ``L`` steps has ``L + 1`` frames,
    its last one the terminal observation)."""

    obs: np.ndarray  # (N, obs_dim)
    action: np.ndarray  # (N, ...) the action that led to the frame (zeros on an episode's first)
    step: np.ndarray  # (N,) int: steps into the episode
    ret: np.ndarray  # (N,) float: return so far in the episode
    episode: np.ndarray  # (N,) int
    state: np.ndarray  # (N,) int: index into ``Rollout.states`` of the frame's env state, or -1
    # where that state is gone (a terminal state is replaced by the auto-reset)


def frame_plan(r: Rollout) -> FramePlan:
    """The frames of the recorded episodes of ``r`` (host side)."""
    obs, act_, step, ret, ep, st = [], [], [], [], [], []
    zero = np.zeros_like(r.actions[0])
    for e, s in enumerate(r.episode_slices()):
        total = 0.0
        obs.append(r.obs[s.start]), act_.append(zero), step.append(0), ret.append(0.0), ep.append(e)
        st.append(s.start)
        for t in range(s.start, s.stop):
            total += float(r.rewards[t])
            obs.append(r.final_obs[t]), act_.append(r.actions[t]), step.append(t - s.start + 1)
            ret.append(total), ep.append(e), st.append(-1 if r.dones[t] else t + 1)
    return FramePlan(np.asarray(obs), np.asarray(act_), np.asarray(step), np.asarray(ret), np.asarray(ep),
                     np.asarray(st))
