"""Seeds and PRNG keys: the one place where user seeds become keys, keys become host seeds and
generators, and keys and generators become plain data (to save a study and resume it)."""

from __future__ import annotations

import copy

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["as_key", "generator_state", "key_state", "load_generator", "load_key", "numpy_rng", "seed_int"]

# jax.random.key converts an int seed through a C long: larger ones overflow.
_SEED_LIMIT = 2**63


def as_key(seed, where: str = "seed") -> jax.Array:
    """A typed PRNG key (shape ``()``) from a user seed.

    Accepts an integer ``>= 0`` (a Python or numpy integer, or a concrete 0-d integer array),
    a typed key of shape ``()`` (returned as is) or a raw ``uint32`` key of shape ``(2,)`` (as
    from ``jax.random.PRNGKey``; wrapped). Anything else (``"0"``, ``1.5``, ``True``, ``-1``,
    ``None``, a batch of keys) raises ValueError naming ``where`` and the value, on the host.
    """
    bad = ValueError(f"{where}={seed!r} must be an integer >= 0 or a JAX PRNG key")
    if isinstance(seed, (bool, np.bool_)):  # bool is an int subclass, but True is no seed
        raise bad
    if isinstance(seed, jax.Array) and jnp.issubdtype(seed.dtype, jax.dtypes.prng_key):
        if seed.shape != ():  # a batch of keys is not one seed
            raise bad
        return seed
    if isinstance(seed, (np.ndarray, jax.Array)) and seed.shape == () and jnp.issubdtype(seed.dtype, jnp.integer):
        if isinstance(seed, jax.core.Tracer):  # a traced int has no host value to check
            raise bad
        seed = np.asarray(seed).item()
    if isinstance(seed, (int, np.integer)):
        if seed < 0:
            raise bad
        if seed >= _SEED_LIMIT:
            raise ValueError(f"{where}={seed!r} must be an integer >= 0 and < 2**63 or a JAX PRNG key")
        return jax.random.key(int(seed))
    if isinstance(seed, (np.ndarray, jax.Array)) and seed.dtype == np.uint32 and seed.shape == (2,):
        return jax.random.wrap_key_data(seed)  # a raw (legacy jax.random.PRNGKey) key
    raise bad

def seed_int(key: jax.Array) -> int:
    """An integer seed in ``[0, 2**31 - 1)`` drawn from ``key`` (for host-side libraries)."""
    return int(jax.random.randint(key, (), 0, 2**31 - 1))


def numpy_rng(key: jax.Array) -> np.random.Generator:
    """A numpy generator seeded by all of ``key``'s data (deterministic in the key)."""
    return np.random.default_rng(np.asarray(jax.random.key_data(key)).astype(np.uint64))


def key_state(key: jax.Array) -> list:
    """A typed key (any shape ``S``) as plain data: its raw ``uint32`` words, nested lists ``S + (2,)``."""
    return np.asarray(jax.random.key_data(key)).tolist()


def load_key(data) -> jax.Array:
    """The typed key (shape ``S``) that :func:`key_state` turned into ``data``."""
    return jax.random.wrap_key_data(np.asarray(data, np.uint32))


def generator_state(rng: np.random.Generator) -> dict:
    """A numpy generator's full state as plain data (a dict of str and int; JSON-able)."""
    return copy.deepcopy(rng.bit_generator.state)


def load_generator(state: dict) -> np.random.Generator:
    """A generator that continues exactly where the one :func:`generator_state` saved was."""
    bit_generator = getattr(np.random, state["bit_generator"])()
    bit_generator.state = copy.deepcopy(state)
    return np.random.Generator(bit_generator)
