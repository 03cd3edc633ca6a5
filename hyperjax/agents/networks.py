"""Separate actor and critic MLPs (the PPO/A2C defaults of PureJaxRL, rejax and SB3)."""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

ACTIVATIONS = {
    "tanh": nn.tanh,
    "relu": nn.relu,
    "gelu": nn.gelu,
    "silu": nn.silu,
    "elu": nn.elu,
}


@jax.custom_vjp
def affine(x: jax.Array, kernel: jax.Array, bias: jax.Array) -> jax.Array:
    """``x @ kernel + bias`` for ``x (..., I)``, ``kernel (I, O)``, ``bias (O,)``: ``(..., O)``.

    The same forward as ``flax.linen.Dense``; only the backward is arranged differently (see
    :func:`_affine_bwd`).
    """
    return jnp.dot(x, kernel) + bias


def _affine_fwd(x, kernel, bias):
    return affine(x, kernel, bias), (x, kernel)


def _kernel_grad_cpu(x2, dy2):
    # Under the population vmap XLA:CPU runs the batched contraction over the major axis of
    # both operands 1.3-2.5x slower than the same product with that axis minor in both
    # (measured with 32 members x 512 samples: a 64x64 kernel 3.2 vs 2.4 ms, a 64x2 head 2.0
    # vs 0.8 ms, transposes included). The barrier keeps XLA from folding the transposes back
    # into the contraction's dimension numbers.
    xt, dyt = lax.optimization_barrier((x2.T, dy2.T))  # (I, B), (O, B)
    return lax.dot_general(xt, dyt, (((1,), (1,)), ((), ())))  # (I, O)


def _kernel_grad(x2, dy2):
    return jnp.dot(x2.T, dy2)


def _affine_bwd(res, dy):
    # The kernel's gradient x^T dy contracts over the batch axis; how fast depends on the
    # operands' layout, and what is fastest depends on the backend.
    x, kernel = res
    x2 = x.reshape(-1, x.shape[-1])  # (B, I)
    dy2 = dy.reshape(-1, dy.shape[-1])  # (B, O)
    d_kernel = lax.platform_dependent(x2, dy2, cpu=_kernel_grad_cpu, default=_kernel_grad)
    d_x = jnp.dot(dy, kernel.T)
    return d_x, d_kernel, dy2.sum(0)


affine.defvjp(_affine_fwd, _affine_bwd)


class Dense(nn.Module):
    """``flax.linen.Dense`` (same parameters, names, initialisation and forward) whose backward
    computes the kernel's gradient in the layout XLA:CPU multiplies fastest (:func:`affine`)."""

    features: int
    scale: float

    @nn.compact
    def __call__(self, x):
        kernel = self.param("kernel", nn.initializers.orthogonal(self.scale), (x.shape[-1], self.features))
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        return affine(x, kernel, bias)


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
            x = act(Dense(width, float(np.sqrt(2.0)))(x))
        return Dense(self.out, self.out_scale)(x)


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
