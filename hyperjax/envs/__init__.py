"""Environments: gymnax ids (``"CartPole-v1"``) and brax ids (``"brax:ant"``) behind one interface."""

from __future__ import annotations

import functools

from hyperjax.envs.base import Env, Transition
from hyperjax.envs.brax_env import BRAX_PREFIX, brax_ids, make_brax
from hyperjax.envs.gymnax_env import gymnax_ids, make_gymnax
from hyperjax.envs.registry import custom_ids, make_custom, register_env

__all__ = ["Env", "Transition", "make_env", "available_envs", "register_env"]


def available_envs() -> list[str]:
    """Every environment id ``make_env`` accepts (brax ones only where brax is installed)."""
    return gymnax_ids() + brax_ids() + custom_ids()


def make_env(name: str) -> Env:
    """Returns the (cached) environment called ``name``.

    Raises:
      ValueError: ``name`` is not a gymnax id nor ``brax:<name>`` of an installed brax env; the
        message lists the ids that are accepted.
    """
    if not isinstance(name, str):
        raise ValueError(f"env must be a string id, got {name!r}")
    return _make_env(name)


@functools.lru_cache(maxsize=None)
def _make_env(name: str) -> Env:
    if name in custom_ids():
        return make_custom(name)
    if name.startswith(BRAX_PREFIX):
        short = name[len(BRAX_PREFIX):]
        try:
            from brax import envs as brax_envs
        except ImportError:
            raise ValueError(
                f"env {name!r} needs brax, which is not installed: pip install 'hyperjax[brax]'"
            ) from None
        if short not in brax_envs._envs:
            raise ValueError(
                f"env {name!r} is not a brax environment; allowed: {', '.join(brax_ids())}"
            )
        return make_brax(short)
    if name not in gymnax_ids():
        raise ValueError(
            f"env {name!r} is unknown; allowed: {', '.join(gymnax_ids())}, or 'brax:<name>' "
            f"with brax installed{', or a registered one: ' + ', '.join(custom_ids()) if custom_ids() else ''}"
        )
    return make_gymnax(name)
