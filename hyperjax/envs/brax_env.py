"""Adapter from brax environments (``brax:<name>``) to :class:`hyperjax.envs.Env`.

brax's own training wrappers fold the time limit into ``done``; this adapter uses the raw
environment and applies the time limit and auto-reset itself, so that termination and
truncation stay apart. brax is an optional dependency (``pip install hyperjax[brax]``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from hyperjax.envs.base import Env, Transition, strong_types

BRAX_PREFIX = "brax:"


def brax_ids() -> list[str]:
    try:
        from brax import envs
    except ImportError:
        return []
    return [BRAX_PREFIX + n for n in sorted(envs._envs)]


def make_brax(name: str, episode_length: int = 1000, backend: str | None = None) -> Env:
    """Wraps ``brax.envs.get_environment(name)`` with a time limit of ``episode_length`` steps."""
    try:
        from brax import envs
    except ImportError as e:  # pragma: no cover - exercised only without the extra
        raise ImportError(
            f"env {BRAX_PREFIX + name!r} needs brax: pip install 'hyperjax[brax]'"
        ) from e
    kwargs = {} if backend is None else {"backend": backend}
    env = envs.get_environment(name, **kwargs)
    obs_dim = int(env.observation_size)
    act_dim = int(env.action_size)

    def reset(key):
        s = env.reset(key)
        return jnp.asarray(s.obs, jnp.float32), (strong_types(s), jnp.zeros((), jnp.int32))

    def step(key, state, action):
        s, t = state
        s2 = env.step(s, action)
        t2 = t + 1
        terminated = jnp.asarray(s2.done) > 0.5
        truncated = jnp.logical_and(t2 >= episode_length, jnp.logical_not(terminated))
        done = jnp.logical_or(terminated, truncated)
        s_re = env.reset(key)
        new_s = strong_types(jax.tree.map(lambda r, x: jnp.where(done, r, x), s_re, s2))
        new_t = jnp.where(done, 0, t2)
        final_obs = jnp.asarray(s2.obs, jnp.float32)
        # A diverging physics step can produce non-finite observations; they are passed on so
        # the member is flagged failed rather than silently clipped.
        return Transition(
            obs=jnp.asarray(new_s.obs, jnp.float32),
            state=(new_s, new_t),
            reward=jnp.asarray(s2.reward, jnp.float32),
            terminated=terminated,
            truncated=truncated,
            final_obs=final_obs,
        )

    return Env(
        name=BRAX_PREFIX + name,
        obs_dim=obs_dim,
        discrete=False,
        num_actions=act_dim,
        action_low=(-1.0,) * act_dim,
        action_high=(1.0,) * act_dim,
        max_episode_steps=episode_length,
        reset=reset,
        step=step,
    )
