"""One environment interface over gymnax and brax.

An :class:`Env` is a static (hashable, closed-over) description plus two pure functions:

- ``reset(key) -> (obs, state)``
- ``step(key, state, action) -> Transition`` with the observation after auto-reset, the reward,
  ``terminated`` and ``truncated`` kept apart, and ``final_obs``, the observation the step really
  reached (before the reset), which the agents use to bootstrap the value of truncated episodes.

Observations are flat ``float32`` vectors of shape ``(obs_dim,)``; actions are ``int32`` scalars
for discrete spaces and ``float32`` vectors of shape ``(action_dim,)`` for continuous ones.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple

import jax


class Transition(NamedTuple):
    """What one environment step returns (unbatched; vmap adds the env axis)."""

    obs: jax.Array  # (obs_dim,) observation to act on next (after auto-reset)
    state: Any
    reward: jax.Array  # ()
    terminated: jax.Array  # () bool: a true terminal state; do not bootstrap
    truncated: jax.Array  # () bool: time limit; bootstrap from final_obs
    final_obs: jax.Array  # (obs_dim,) the observation reached before any reset


@dataclasses.dataclass(frozen=True, eq=False)
class Env:
    """A JAX-native environment with auto-reset and separate terminated/truncated flags.

    Instances hash by identity, so they can be static arguments and closure constants of jitted
    functions; make one per environment name and reuse it (``make_env`` caches them).
    """

    name: str
    obs_dim: int
    discrete: bool
    num_actions: int  # number of discrete actions, or the dimension of a continuous action
    action_low: tuple[float, ...] | None  # continuous bounds (per dimension), None if discrete
    action_high: tuple[float, ...] | None
    max_episode_steps: int
    reset: Callable[[jax.Array], tuple[jax.Array, Any]]
    step: Callable[[jax.Array, Any, jax.Array], Transition]

    @property
    def action_kind(self) -> str:
        return "discrete" if self.discrete else "continuous"

    def __repr__(self) -> str:
        return f"Env({self.name!r}, obs_dim={self.obs_dim}, {self.action_kind} actions={self.num_actions})"


def strong_types(tree):
    """``tree`` with every leaf strongly typed. Environments build some state fields from Python
    scalars (gymnax CartPole's ``time``), which JAX types weakly; a state restored from a
    checkpoint is strongly typed, and a weak/strong difference is another signature for every
    compiled program (a resumed study would compile them all again mid-way)."""
    return jax.tree.map(lambda x: jax.numpy.asarray(x, dtype=jax.numpy.result_type(x)), tree)

