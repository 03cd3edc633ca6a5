"""User-registered environments: any JAX-native env wrapped as a :class:`hyperjax.envs.Env`."""

from __future__ import annotations

from typing import Callable

from hyperjax.envs.base import Env

_CUSTOM: dict[str, Callable[[], Env]] = {}


def register_env(name: str, factory: Callable[[], Env]) -> None:
    """Makes ``make_env(name)`` return ``factory()``; for users' own JAX environments.

    Raises ValueError if ``name`` is already registered with another factory.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"register_env: name={name!r} must be a non-empty string")
    if name in _CUSTOM and _CUSTOM[name] is not factory:
        raise ValueError(f"register_env: {name!r} is already registered")
    _CUSTOM[name] = factory


def custom_ids() -> list[str]:
    return list(_CUSTOM)


def make_custom(name: str) -> Env:
    env = _CUSTOM[name]()
    if not isinstance(env, Env):
        raise ValueError(f"register_env: the factory of {name!r} returned {type(env).__name__}, not an Env")
    return env
