"""The networks' Dense layer (a custom backward) and the PPO minibatch shuffle."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hyperjax.agents.common import shuffle
from hyperjax.agents.networks import MLP, Dense, affine


class _FlaxMLP(nn.Module):
    """The MLP as it was written with ``flax.linen.Dense`` (same names, same initialisers)."""

    @nn.compact
    def __call__(self, x):
        for width in (64, 64):
            x = nn.tanh(nn.Dense(width, kernel_init=nn.initializers.orthogonal(np.sqrt(2.0)),
                                 bias_init=nn.initializers.zeros)(x))
        return nn.Dense(3, kernel_init=nn.initializers.orthogonal(0.01), bias_init=nn.initializers.zeros)(x)


def test_dense_has_flax_dense_parameters_and_forward():
    key, x = jax.random.key(3), jax.random.normal(jax.random.key(4), (5, 7, 4))
    ours, theirs = MLP((64, 64), "tanh", 3, 0.01), _FlaxMLP()
    p, q = ours.init(key, x[0, 0]), theirs.init(key, x[0, 0])
    assert jax.tree.structure(p) == jax.tree.structure(q)
    for a, b in zip(jax.tree.leaves(p), jax.tree.leaves(q)):
        np.testing.assert_array_equal(a, b)  # same names, same keys: the same initial network
    np.testing.assert_array_equal(ours.apply(p, x), theirs.apply(q, x))


@pytest.mark.parametrize("shape", [(4,), (512, 4), (8, 16, 4)])
def test_affine_gradient_equals_autodiff_of_the_plain_product(shape):
    k1, k2, k3, k4 = jax.random.split(jax.random.key(0), 4)
    x, w = jax.random.normal(k1, shape), jax.random.normal(k2, (4, 5))
    b, t = jax.random.normal(k3, (5,)), jax.random.normal(k4, shape[:-1] + (5,))
    loss = lambda f: lambda x, w, b: jnp.sum(jnp.tanh(f(x, w, b)) * t)  # noqa: E731
    ours = jax.grad(loss(affine), argnums=(0, 1, 2))(x, w, b)
    plain = jax.grad(loss(lambda x, w, b: x @ w + b), argnums=(0, 1, 2))(x, w, b)
    for a, e in zip(ours, plain):
        np.testing.assert_allclose(a, e, rtol=2e-5, atol=2e-5)


def test_affine_gradient_under_the_population_vmap():
    """Per member, as the population trains: vmapped over members, each its own gradient."""
    k1, k2 = jax.random.split(jax.random.key(1))
    xs, ws = jax.random.normal(k1, (3, 64, 6)), jax.random.normal(k2, (3, 6, 2))
    bs = jnp.zeros((3, 2))
    g = jax.vmap(jax.grad(lambda x, w, b: jnp.sum(affine(x, w, b) ** 2), argnums=1))(xs, ws, bs)
    for m in range(3):
        e = jax.grad(lambda w: jnp.sum((xs[m] @ w + bs[m]) ** 2))(ws[m])
        np.testing.assert_allclose(g[m], e, rtol=2e-5, atol=1e-4)


def test_dense_gradient_inside_a_module():
    layer = Dense(3, 1.0)
    x = jax.random.normal(jax.random.key(2), (10, 4))
    p = layer.init(jax.random.key(5), x)
    g = jax.grad(lambda p: jnp.sum(layer.apply(p, x) ** 2))(p)["params"]
    k, b = p["params"]["kernel"], p["params"]["bias"]
    e = jax.grad(lambda k, b: jnp.sum((x @ k + b) ** 2), argnums=(0, 1))(k, b)
    np.testing.assert_allclose(g["kernel"], e[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(g["bias"], e[1], rtol=1e-5, atol=1e-5)


def test_shuffle_is_a_uniform_permutation():
    n, draws = 6, 6000
    perms = np.asarray(jax.vmap(lambda k: shuffle(k, n))(jax.random.split(jax.random.key(0), draws)))
    assert perms.dtype == np.int32 and perms.shape == (draws, n)
    assert (np.sort(perms, axis=1) == np.arange(n)).all()  # every row a permutation
    # where element 0 lands: uniform over the n positions (chi-square, 5 dof, p ~ 1e-4 at 25.7)
    counts = np.bincount(np.argmax(perms == 0, axis=1), minlength=n)
    chi2 = float(((counts - draws / n) ** 2 / (draws / n)).sum())
    assert chi2 < 25.7, counts
    # and all 720 orders occur (a biased or structured shuffle would miss some)
    assert len({tuple(p) for p in perms}) == 720
    np.testing.assert_array_equal(shuffle(jax.random.key(1), 2048), shuffle(jax.random.key(1), 2048))
    assert not np.array_equal(shuffle(jax.random.key(1), 2048), shuffle(jax.random.key(2), 2048))
