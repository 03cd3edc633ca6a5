"""Tiny environments with known answers, for tests."""

import jax.numpy as jnp

from hyperjax.envs import Env, Transition, register_env


def constant_env(name: str, horizon: int, terminate: bool) -> Env:
    """Observation always [1], reward 1 each step; after ``horizon`` steps the episode ends by
    termination (``terminate``) or by a time-limit truncation.

    With discount gamma the true value is ``1 / (1 - gamma)`` under truncation (the task goes on
    forever, the time limit only cuts the sample), and under termination the mean over the
    episode's steps of ``(1 - gamma^(horizon - t)) / (1 - gamma)``.
    """

    def reset(key):
        return jnp.ones((1,)), jnp.zeros((), jnp.int32)

    def step(key, t, action):
        t2 = t + 1
        end = t2 >= horizon
        term = jnp.logical_and(end, terminate)
        trunc = jnp.logical_and(end, not terminate)
        return Transition(jnp.ones((1,)), jnp.where(end, 0, t2), jnp.ones(()), term, trunc, jnp.ones((1,)))

    return Env(name, 1, True, 2, None, None, horizon, reset, step)


def _trunc() -> Env:
    return constant_env("test/const-trunc", 5, terminate=False)


def _term() -> Env:
    return constant_env("test/const-term", 5, terminate=True)


def register_toys():
    register_env("test/const-trunc", _trunc)
    register_env("test/const-term", _term)
