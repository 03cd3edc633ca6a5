"""Proximal policy optimisation (Schulman et al. 2017), PureJaxRL/CleanRL-style, per member."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp
import optax
from flax import struct

from hyperjax.agents.base import ActorCriticAgent, Batch
from hyperjax.agents.common import policy_dist, shuffle


@struct.dataclass
class PPOHParams:
    """Traced PPO hyperparameters: one float leaf each (scalar per member, or batched)."""

    learning_rate: float = 2.5e-4
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip_eps: float = 0.2
    ent_coef: float = 0.01
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5


def actor_critic_loss(agent: ActorCriticAgent, params, mb: Batch, hp, clip: bool, norm_adv: bool):
    """PPO's clipped surrogate (or A2C's plain policy gradient when ``clip`` is False).

    Returns ``(total_loss, metrics)``; every input has a leading batch axis ``(B, ...)``.
    """
    dist = policy_dist(*agent.actor.apply(params["actor"], mb.obs))
    logp = dist.log_prob(mb.action)
    entropy = dist.entropy().mean()
    adv = mb.adv
    if norm_adv:
        adv = (adv - adv.mean()) / (adv.std() + 1e-8)
    value = agent.critic.apply(params["critic"], mb.obs)
    log_ratio = logp - mb.logp
    ratio = jnp.exp(log_ratio)
    if clip:
        pg = -jnp.minimum(ratio * adv, jnp.clip(ratio, 1.0 - hp.clip_eps, 1.0 + hp.clip_eps) * adv).mean()
        v_clipped = mb.value + jnp.clip(value - mb.value, -hp.clip_eps, hp.clip_eps)
        v_loss = 0.5 * jnp.maximum((value - mb.target) ** 2, (v_clipped - mb.target) ** 2).mean()
    else:
        pg = -(logp * jax.lax.stop_gradient(adv)).mean()
        v_loss = 0.5 * ((value - mb.target) ** 2).mean()
    total = pg + hp.vf_coef * v_loss - hp.ent_coef * entropy
    approx_kl = ((ratio - 1.0) - log_ratio).mean()
    return total, {"policy_loss": pg, "value_loss": v_loss, "entropy": entropy, "approx_kl": approx_kl}


@dataclasses.dataclass(frozen=True)
class PPO(ActorCriticAgent):
    """PPO with separate actor and critic MLPs.

    Static (one compiled bucket per combination): ``env, num_envs, num_steps, num_epochs,
    num_minibatches, hidden, activation, normalize_obs``. Traced (per member): the fields of
    :class:`PPOHParams`.
    """

    num_steps: int = 128
    num_epochs: int = 4
    num_minibatches: int = 4

    name: ClassVar[str] = "ppo"
    HParams: ClassVar[type] = PPOHParams

    def _check_static(self) -> None:
        self._check_int("num_epochs")
        self._check_int("num_minibatches")
        if self.steps_per_update % self.num_minibatches:
            raise ValueError(
                f"ppo: num_minibatches={self.num_minibatches} must divide num_envs * num_steps = "
                f"{self.steps_per_update}"
            )

    @property
    def learn_batch(self) -> int:
        """Samples in one gradient step: a minibatch."""
        return self.steps_per_update // self.num_minibatches

    def make_optimizer(self, hp) -> optax.GradientTransformation:
        return optax.chain(
            optax.clip_by_global_norm(hp.max_grad_norm), optax.adam(hp.learning_rate, eps=1e-5)
        )

    def learn(self, key, params, opt_state, batch: Batch, hp):
        tx = self.make_optimizer(hp)
        grad_fn = jax.value_and_grad(
            lambda p, mb: actor_critic_loss(self, p, mb, hp, clip=True, norm_adv=True), has_aux=True
        )
        n = self.steps_per_update
        mb_size = n // self.num_minibatches

        def minibatch(carry, mb):
            params, opt_state = carry
            (_, metrics), grads = grad_fn(params, mb)
            updates, opt_state = tx.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), metrics

        def epoch(carry, k):
            perm = shuffle(k, n)
            shuffled = jax.tree.map(
                lambda x: x[perm].reshape((self.num_minibatches, mb_size) + x.shape[1:]), batch
            )
            return jax.lax.scan(minibatch, carry, shuffled)

        (params, opt_state), metrics = jax.lax.scan(
            epoch, (params, opt_state), jax.random.split(key, self.num_epochs)
        )
        return params, opt_state, jax.tree.map(jnp.mean, metrics)
