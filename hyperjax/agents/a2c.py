"""Synchronous advantage actor-critic (A2C), the synchronous member of the A3C/GA3C family.

Each update collects ``t_max`` steps in ``num_envs`` environments and takes one gradient step on
n-step returns over that window (``gae_lambda = 1``, the default; smaller values give GAE).
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import optax
from flax import struct

from hyperjax.agents.base import ActorCriticAgent, Batch
from hyperjax.agents.ppo import actor_critic_loss


@struct.dataclass
class A2CHParams:
    """Traced A2C hyperparameters (SB3's A2C defaults)."""

    learning_rate: float = 7e-4
    gamma: float = 0.99
    gae_lambda: float = 1.0
    ent_coef: float = 0.0
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5


@dataclasses.dataclass(frozen=True)
class A2C(ActorCriticAgent):
    """A2C with RMSProp (decay 0.99, eps 1e-5) or Adam.

    Static: ``env, num_envs, t_max, hidden, activation, normalize_obs, optimizer``. Traced: the
    fields of :class:`A2CHParams`.
    """

    t_max: int = 5
    optimizer: str = "rmsprop"

    name: ClassVar[str] = "a2c"
    HParams: ClassVar[type] = A2CHParams
    rollout_field: ClassVar[str] = "t_max"

    STATIC_FIELDS: ClassVar[tuple[str, ...]] = ActorCriticAgent.STATIC_FIELDS + ("optimizer",)

    def _check_static(self) -> None:
        if not isinstance(self.optimizer, str) or self.optimizer not in ("rmsprop", "adam"):
            raise ValueError(f"a2c: optimizer={self.optimizer!r} is unknown; allowed: rmsprop, adam")

    def make_optimizer(self, hp) -> optax.GradientTransformation:
        if self.optimizer == "adam":
            opt = optax.adam(hp.learning_rate, eps=1e-5)
        else:
            opt = optax.rmsprop(hp.learning_rate, decay=0.99, eps=1e-5)
        return optax.chain(optax.clip_by_global_norm(hp.max_grad_norm), opt)

    def learn(self, key, params, opt_state, batch: Batch, hp):
        del key  # one full-batch step: nothing to shuffle
        tx = self.make_optimizer(hp)
        (_, metrics), grads = jax.value_and_grad(
            lambda p: actor_critic_loss(self, p, batch, hp, clip=False, norm_adv=False), has_aux=True
        )(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, metrics
