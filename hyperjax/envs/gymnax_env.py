"""Adapter from gymnax (>= 1.0) environments to :class:`hyperjax.envs.Env`."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from hyperjax.envs.base import Env, Transition, strong_types


def gymnax_ids() -> list[str]:
    import gymnax

    return list(gymnax.registered_envs)


def make_gymnax(name: str) -> Env:
    """Wraps the registered gymnax environment ``name`` with its default parameters."""
    import gymnax
    from gymnax.environments import spaces

    env, params = gymnax.make(name)
    obs_shape = tuple(env.observation_space(params).shape)
    obs_dim = int(math.prod(obs_shape)) if obs_shape else 1
    space = env.action_space(params)
    if isinstance(space, spaces.Discrete):
        discrete, num_actions, low, high = True, int(space.n), None, None
    elif isinstance(space, spaces.Box):
        shape = tuple(space.shape) or (1,)
        num_actions = int(math.prod(shape))
        discrete = False
        low = tuple(float(x) for x in jnp.broadcast_to(jnp.asarray(space.low, jnp.float32), (num_actions,)))
        high = tuple(float(x) for x in jnp.broadcast_to(jnp.asarray(space.high, jnp.float32), (num_actions,)))
    else:  # pragma: no cover - no registered gymnax env has another action space
        raise ValueError(f"env {name!r}: unsupported gymnax action space {space!r}")
    action_shape = tuple(space.shape) if not discrete else ()

    def flat(obs):
        return jnp.reshape(obs, (obs_dim,)).astype(jnp.float32)

    def reset(key):
        obs, state = env.reset_env(key, params)
        return flat(obs), strong_types(state)

    def step(key, state, action):
        key_step, key_reset = jax.random.split(key)
        if not discrete:
            action = jnp.reshape(action, action_shape)
        obs_st, state_st, reward, terminated, _ = env.step_env(key_step, state, action, params)
        # gymnax >= 1.0 keeps the time limit out of `terminated`; a step that both reaches a
        # terminal state and the limit is a termination (nothing to bootstrap).
        terminated = jnp.asarray(terminated, bool)
        truncated = jnp.logical_and(env.is_truncated(state_st, params), jnp.logical_not(terminated))
        done = jnp.logical_or(terminated, truncated)
        obs_re, state_re = env.reset_env(key_reset, params)
        state_next = strong_types(jax.tree.map(lambda r, s: jax.lax.select(done, r, s), state_re, state_st))
        obs_next = jnp.where(done, flat(obs_re), flat(obs_st))
        return Transition(
            obs=obs_next,
            state=state_next,
            reward=jnp.asarray(reward, jnp.float32).reshape(()),
            terminated=terminated,
            truncated=truncated,
            final_obs=flat(obs_st),
        )

    max_steps = int(getattr(params, "max_steps_in_episode", 1000))
    return Env(
        name=name,
        obs_dim=obs_dim,
        discrete=discrete,
        num_actions=num_actions,
        action_low=low,
        action_high=high,
        max_episode_steps=max_steps,
        reset=reset,
        step=step,
    )

