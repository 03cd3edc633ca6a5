"""Search spaces: hyperparameters as dimensions of the unit cube.

Every dimension maps ``u in [0, 1]`` to a value and back:

- :class:`Float` — linear or log-uniform on ``[low, high]``.
- :class:`Int` — linear or log-uniform on ``[low, high]``, rounded to a multiple of ``q``.
- :class:`Choice` — one of ``choices``; ``u`` picks the ``floor(u * n)``-th. ``ordered=True``
  marks an ordinal choice (e.g. gamma in {0.9, ..., 0.9999}), which a surrogate may treat as a
  number rather than a category.

Samples and proposals live in the cube ``(n, d)``; :meth:`SearchSpace.decode` turns them into
configurations. Invalid spaces raise ``ValueError`` naming the parameter and values.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Iterable, Mapping, Sequence

import jax
import numpy as np

from hyperjax import validate


@dataclasses.dataclass(frozen=True)
class Float:
    low: float
    high: float
    log: bool = False

    def _check(self, name: str) -> None:
        for side in ("low", "high"):
            v = getattr(self, side)
            if isinstance(v, bool) or not isinstance(v, (int, float, np.number)) or not math.isfinite(v):
                raise ValueError(f"search space: {name}.{side}={v!r} must be a finite number")
        validate.boolean("search space", f"{name}.log", self.log)
        if self.low > self.high:
            raise ValueError(f"search space: {name} has low={self.low!r} > high={self.high!r}")
        if self.log and self.low <= 0:
            raise ValueError(f"search space: {name} is log-scaled, so low={self.low!r} must be > 0")

    def _lo_hi(self):
        return (math.log(self.low), math.log(self.high)) if self.log else (self.low, self.high)

    def decode(self, u: np.ndarray) -> np.ndarray:
        lo, hi = self._lo_hi()
        x = lo + np.clip(u, 0.0, 1.0) * (hi - lo)
        return np.exp(x) if self.log else x

    def encode(self, v: np.ndarray) -> np.ndarray:
        lo, hi = self._lo_hi()
        x = np.log(np.asarray(v, np.float64)) if self.log else np.asarray(v, np.float64)
        return np.clip((x - lo) / (hi - lo), 0.0, 1.0) if hi > lo else np.full(np.shape(x), 0.5)


@dataclasses.dataclass(frozen=True)
class Int(Float):
    low: int = 0
    high: int = 1
    log: bool = False
    q: int = 1

    def _check(self, name: str) -> None:
        for side in ("low", "high", "q"):
            v = getattr(self, side)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise ValueError(f"search space: {name}.{side}={v!r} must be an integer")
        if self.q < 1:
            raise ValueError(f"search space: {name}.q={self.q!r} must be >= 1")
        super()._check(name)

    # Integers are read off a continuous x on [low, high + 1): each integer v owns [v, v + 1),
    # log-spaced when ``log``; the result is then snapped to the grid low + k * q.
    def _x_range(self):
        lo, hi = float(self.low), float(self.high) + 1.0
        return (math.log(lo), math.log(hi)) if self.log else (lo, hi)

    def decode(self, u: np.ndarray) -> np.ndarray:
        lo, hi = self._x_range()
        x = lo + np.clip(u, 0.0, 1.0) * (hi - lo)
        x = np.floor(np.exp(x) if self.log else x)
        v = self.low + np.round((x - self.low) / self.q) * self.q
        return np.clip(v, self.low, self.high).astype(np.int64)

    def encode(self, v: np.ndarray) -> np.ndarray:
        lo, hi = self._x_range()
        x = np.asarray(v, np.float64) + 0.5
        x = np.log(x) if self.log else x
        return np.clip((x - lo) / (hi - lo), 0.0, 1.0)


@dataclasses.dataclass(frozen=True)
class Choice:
    """One of ``choices``: scalars (numbers, strings, bools) or tuples such as layer widths
    ``((32, 32), (64, 64))``; list or array values are stored as tuples, so every value is
    hashable and a decoded configuration can name a structural bucket."""

    choices: tuple
    ordered: bool = False

    def __post_init__(self):
        if isinstance(self.choices, (list, tuple, np.ndarray)):
            object.__setattr__(self, "choices", tuple(_plain(c) for c in self.choices))

    def _check(self, name: str) -> None:
        if isinstance(self.choices, (str, bytes)):
            raise ValueError(
                f"search space: {name} choices={self.choices!r} must be a sequence of values (a tuple or list), "
                "not a string"
            )
        if not isinstance(self.choices, tuple):
            raise ValueError(
                f"search space: {name} choices={self.choices!r} must be a sequence of values (a tuple or list)"
            )
        if len(self.choices) == 0:
            raise ValueError(f"search space: {name} has empty choices={self.choices!r}")
        if len(set(map(repr, self.choices))) != len(self.choices):
            raise ValueError(f"search space: {name} has repeated choices {self.choices!r}")
        validate.boolean("search space", f"{name}.ordered", self.ordered)

    def decode(self, u: np.ndarray) -> np.ndarray:
        """Cube coordinates ``(n,)`` -> values ``(n,)``: a numeric array for numeric choices,
        else an object array whose elements are the choices themselves (tuples stay tuples)."""
        n = len(self.choices)
        idx = np.clip(np.floor(np.asarray(u) * n), 0, n - 1).astype(np.int64)
        if _numeric(self.choices):
            return np.asarray(self.choices)[idx]
        # Filled one by one: np.asarray(choices, object) would turn tuples into a 2-D array.
        table = np.empty(n, dtype=object)
        for i, c in enumerate(self.choices):
            table[i] = c
        return table[idx]

    def encode(self, v: Iterable) -> np.ndarray:
        """Values -> cube coordinates at the centre of each value's cell.

        ``v`` is one value (result shape ``()``) or a sequence of values ``(n,)``; a tuple that
        is itself one of the choices counts as one value.
        """
        lookup = {repr(c): i for i, c in enumerate(self.choices)}
        sequence = isinstance(v, (list, tuple)) or (isinstance(v, np.ndarray) and v.ndim > 0)
        if sequence and repr(_plain(v)) not in lookup:
            vals, shape = list(v), (len(v),)
        else:
            vals, shape = [v], ()
        try:
            idx = np.asarray([lookup[repr(_plain(x))] for x in vals], np.float64)
        except KeyError as e:
            raise ValueError(f"value {e.args[0]} is not among the choices {self.choices!r}") from None
        return ((idx + 0.5) / len(self.choices)).reshape(shape)


def _numeric(choices) -> bool:
    return all(isinstance(c, (int, float, np.number)) and not isinstance(c, bool) for c in choices)


def _py(x):
    return x.item() if isinstance(x, np.generic) else x


def _plain(x):
    """A plain, hashable Python value: numpy scalars -> Python scalars, lists/arrays -> tuples."""
    if isinstance(x, (list, tuple)) or (isinstance(x, np.ndarray) and x.ndim > 0):
        return tuple(_plain(e) for e in x)
    if isinstance(x, np.ndarray):
        return x.item()
    return _py(x)


Dim = Float | Int | Choice


class SearchSpace:
    """An ordered mapping ``name -> dimension``; the cube's axis ``i`` is the ``i``-th name."""

    def __init__(self, dims: Mapping[str, Dim]):
        if not dims:
            raise ValueError("search space: no dimensions given")
        for name, dim in dims.items():
            if not isinstance(dim, (Float, Choice)):
                raise ValueError(f"search space: {name}={dim!r} is not a Float, Int or Choice")
            dim._check(name)
        self.dims = dict(dims)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.dims)

    @property
    def ndim(self) -> int:
        return len(self.dims)

    def fixed_columns(self, where: Mapping[str, Any] | None) -> list[tuple[int, float]]:
        """``[(column, cube value)]`` of ``where`` (dimension name -> value): the cube
        coordinates that hold those dimensions at those values (a proposer asked for points
        within a structural bucket); ValueError naming an unknown dimension."""
        out = []
        for name, value in (where or {}).items():
            if name not in self.dims:
                raise ValueError(f"ask: where names {name!r}, which is not a dimension of the space "
                                 f"({', '.join(self.names)})")
            out.append((self.names.index(name), float(np.asarray(self.dims[name].encode([value]))[0])))
        return out

    def __repr__(self) -> str:
        return f"SearchSpace({self.dims!r})"

    def validate_for(self, agent_cls_or_agent: Any) -> None:
        """Raises ValueError if a name is neither a traced hparam nor a static setting of the agent."""
        allowed = set(agent_cls_or_agent.hparam_names()) | set(agent_cls_or_agent.static_names())
        for name in self.names:
            if name not in allowed:
                raise ValueError(
                    f"search space: {name!r} is not a hyperparameter of {agent_cls_or_agent.name}; "
                    f"allowed: {', '.join(sorted(allowed))}"
                )

    def sample(self, key: jax.Array, n: int) -> np.ndarray:
        """``n`` uniform points of the cube ``(n, d)`` from a PRNG key."""
        return np.asarray(jax.random.uniform(key, (n, self.ndim)), np.float64)

    def sobol(self, n: int, seed: int = 0, skip: int = 0) -> np.ndarray:
        """``n`` scrambled Sobol points ``(n, d)``, after skipping the first ``skip``."""
        from scipy.stats import qmc

        eng = qmc.Sobol(self.ndim, scramble=True, seed=seed)
        if skip:
            eng.fast_forward(skip)
        return eng.random(n)

    def decode(self, u: np.ndarray) -> dict[str, np.ndarray]:
        """Cube points ``(n, d)`` -> ``{name: values (n,)}``."""
        u = np.atleast_2d(np.asarray(u, np.float64))
        if u.shape[1] != self.ndim:
            raise ValueError(f"expected points of dimension {self.ndim}, got shape {u.shape}")
        return {name: dim.decode(u[:, i]) for i, (name, dim) in enumerate(self.dims.items())}

    def encode(self, configs: Mapping[str, Sequence] | Sequence[Mapping[str, Any]]) -> np.ndarray:
        """``{name: values (n,)}`` or a list of config dicts -> cube points ``(n, d)``."""
        if not isinstance(configs, Mapping):
            configs = {n: [c[n] for c in configs] for n in self.names}
        cols = []
        for name, dim in self.dims.items():
            if name not in configs:
                raise ValueError(f"configuration lacks {name!r}")
            cols.append(np.atleast_1d(dim.encode(configs[name])).astype(np.float64))
        return np.stack(cols, axis=1)

    def configs(self, u: np.ndarray) -> list[dict[str, Any]]:
        """Cube points ``(n, d)`` -> a list of ``n`` plain-Python config dicts."""
        dec = self.decode(u)
        return [{k: _plain(v[i]) for k, v in dec.items()} for i in range(len(u))]
