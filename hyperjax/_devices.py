"""Expose a CPU host's cores as JAX devices so the population axis can be sharded over them.

XLA's CPU backend presents one device by default, and one device runs one computation at a
time. Splitting the population over ``k`` host devices lets ``k`` cores train disjoint members
concurrently (measured on a 2-core machine: 1.5x for a 64-member PPO population, one device
vs two in the same session; see benchmarks/README.md). This must happen before JAX initialises its backends, so it runs when
``hyperjax`` is imported.
"""

from __future__ import annotations

import os
import warnings

import jax

_ENV_VAR = "HYPERJAX_HOST_DEVICES"


def backends_initialized() -> bool:
    """Whether JAX has started its backends (after which device settings no longer apply)."""
    try:
        from jax._src import xla_bridge

        return bool(xla_bridge.backends_are_initialized())
    except Exception:  # pragma: no cover - private API moved; assume the worst
        return True


def configure_host_devices(count: int | None = None) -> int | None:
    """Sets the number of CPU devices JAX will create, if it is still possible.

    Args:
      count: devices to create; ``None`` reads ``$HYPERJAX_HOST_DEVICES`` and falls back to the
        number of cores available to this process. ``0`` or ``1`` leaves JAX's default alone.

    Returns:
      The count that was configured, or ``None`` when nothing was changed (the user already
      chose through ``XLA_FLAGS``/``jax_num_cpu_devices``, or JAX was already initialised).
    """
    if count is None:
        env = os.environ.get(_ENV_VAR)
        if env is not None:
            try:
                count = int(env)
            except ValueError:
                raise ValueError(f"{_ENV_VAR} must be an integer, got {env!r}") from None
        else:
            count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if count is None or count <= 1:
        return None
    if "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", ""):
        return None  # the user's explicit choice wins
    if jax.config.jax_num_cpu_devices not in (-1, 0, 1, None):
        return None
    if backends_initialized():
        if os.environ.get(_ENV_VAR):
            warnings.warn(
                f"{_ENV_VAR} is set but JAX was already initialised; import hyperjax before "
                "running any JAX operation to shard over host cores.",
                stacklevel=2,
            )
        return None
    jax.config.update("jax_num_cpu_devices", int(count))
    return int(count)
