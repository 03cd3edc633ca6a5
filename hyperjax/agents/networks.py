"""Separate actor and critic MLPs (the PPO/A2C defaults of PureJaxRL, rejax and SB3)."""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

ACTIVATIONS = {
    "tanh": nn.tanh,
    "relu": nn.relu,
    "gelu": nn.gelu,
    "silu": nn.silu,
    "elu": nn.elu,
}


def _dense(features: int, scale: float) -> nn.Dense:
    return nn.Dense(
        features, kernel_init=nn.initializers.orthogonal(scale), bias_init=nn.initializers.zeros
    )


class MLP(nn.Module):
    """Hidden layers with orthogonal(sqrt 2) init, then a linear head of ``out`` units."""

    hidden: Sequence[int]
    activation: str
    out: int
    out_scale: float

    @nn.compact
    def __call__(self, x):  # x: (..., obs_dim) -> (..., out)
        act = ACTIVATIONS[self.activation]
        for width in self.hidden:
            x = act(_dense(width, np.sqrt(2.0))(x))
        return _dense(self.out, self.out_scale)(x)


class Actor(nn.Module):
    """Discrete: logits ``(..., n)``. Continuous: mean ``(..., d)`` and a state-free log-std ``(d,)``."""

    action_dim: int
    discrete: bool
    hidden: Sequence[int]
    activation: str

    @nn.compact
    def __call__(self, obs):
        out = MLP(self.hidden, self.activation, self.action_dim, 0.01)(obs)
        if self.discrete:
            return out, None
        log_std = self.param("log_std", nn.initializers.zeros, (self.action_dim,))
        return out, log_std


class Critic(nn.Module):
    """State value ``(...,)``."""

    hidden: Sequence[int]
    activation: str

    @nn.compact
    def __call__(self, obs):
        return jnp.squeeze(MLP(self.hidden, self.activation, 1, 1.0)(obs), -1)
