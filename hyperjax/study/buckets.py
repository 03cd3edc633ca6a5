"""Structural buckets: search-space dimensions that change array shapes.

A dimension whose name is a static setting of the agent (``t_max``, ``num_steps``, ``num_envs``,
``hidden``, ...) cannot be a traced leaf; every combination of such values is a *bucket* with
its own agent, compiled once. The study gives each bucket a share of the slots in proportion to
the part of the unit cube that decodes to it, so a proposer sampling the cube uniformly keeps
every bucket's queue flowing at the rate its slots free up.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from hyperjax.space import Choice, SearchSpace

MAX_BUCKETS = 32
_GRID = 4097  # cube points per dimension used to measure each value's share of the axis


def structural_names(space: SearchSpace, agent) -> tuple[str, ...]:
    statics = set(agent.static_names())
    return tuple(n for n in space.names if n in statics)


def value_shares(space: SearchSpace, name: str) -> dict[Any, float]:
    """Fraction of the cube axis ``name`` that decodes to each of its values."""
    dim = space.dims[name]
    if isinstance(dim, Choice):
        return {_key(c): 1.0 / len(dim.choices) for c in dim.choices}
    u = (np.arange(_GRID) + 0.5) / _GRID
    vals, counts = np.unique(dim.decode(u), return_counts=True)
    return {_key(v): c / _GRID for v, c in zip(vals, counts)}


def _key(v):
    if isinstance(v, np.generic):
        v = v.item()
    return tuple(v) if isinstance(v, list) else v


def enumerate_buckets(space: SearchSpace, agent) -> tuple[list[dict[str, Any]], np.ndarray]:
    """Every combination of structural values and its share of the cube ``(B,)`` (sums to 1).

    Raises ValueError when a structural dimension is continuous (a ``Float``) or the
    combinations exceed ``MAX_BUCKETS`` (each one is a compile).
    """
    names = structural_names(space, agent)
    if not names:
        return [{}], np.ones(1)
    for n in names:
        dim = space.dims[n]
        if type(dim).__name__ == "Float":
            raise ValueError(
                f"search space: {n!r} fixes array shapes (a static setting of {agent.name}), so it must be "
                f"an Int or a Choice, not {dim!r}"
            )
    shares = [value_shares(space, n) for n in names]
    total = int(np.prod([len(s) for s in shares]))
    if total > MAX_BUCKETS:
        detail = ", ".join(f"{n}: {len(s)} values" for n, s in zip(names, shares))
        raise ValueError(
            f"search space: the structural dimensions ({detail}) make {total} buckets, more than {MAX_BUCKETS}; "
            "each bucket is compiled separately: use a Choice of a handful of values (e.g. a log-spaced grid)"
        )
    buckets: list[dict[str, Any]] = [{}]
    weights = [1.0]
    for n, s in zip(names, shares):
        buckets = [dict(b, **{n: v}) for b in buckets for v in s]
        weights = [w * p for w in weights for p in s.values()]
    return buckets, np.asarray(weights)


def bucket_of(config: dict[str, Any], names: tuple[str, ...], buckets: list[dict[str, Any]]) -> int:
    key = {n: _key(config[n]) for n in names}
    for i, b in enumerate(buckets):
        if b == key:
            return i
    raise KeyError(f"configuration {config} falls in no bucket")  # cannot happen for decoded points


def allocate_slots(slots: int, weights: np.ndarray) -> np.ndarray:
    """Slots per bucket ``(B,)``: proportional to ``weights`` (largest remainder), at least one
    each, summing to ``slots``. Raises ValueError if ``slots`` < number of buckets."""
    b = len(weights)
    if slots < b:
        raise ValueError(
            f"slots={slots} is fewer than the {b} structural buckets of the search space; every bucket needs a slot"
        )
    w = np.asarray(weights, np.float64) / np.sum(weights)
    quota = w * slots
    out = np.maximum(1, np.floor(quota).astype(int))
    while out.sum() > slots:  # the minimum of one pushed us over: take from the most over quota
        over = np.where(out > 1, out - quota, -np.inf)
        out[int(np.argmax(over))] -= 1
    while out.sum() < slots:  # hand out the rest by largest remainder
        out[int(np.argmax(quota - out))] += 1
    return out


def bucket_agent(agent, bucket: dict[str, Any]):
    """The agent with the bucket's static settings."""
    return dataclasses.replace(agent, **bucket) if bucket else agent
