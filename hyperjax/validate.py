"""Host-side validators for user-facing arguments: the one place for them.

Each takes ``where`` (who is asking, e.g. ``"train"`` or ``"scheduler hypertrick"``), the
argument's ``field`` name and its ``value``; it returns the value as a plain Python scalar or
raises ``ValueError`` with the message ``"{where}: {field}={value!r} must be ..."``. They are
pure Python (no JAX), so they run before anything is traced or compiled.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

__all__ = ["boolean", "integer", "number"]


def _bounds(low, high, low_open: bool = False, high_open: bool = False) -> str:
    """``">= 1"``, ``"> 0 and < 1"``, ... or ``""`` when unbounded."""
    lo = None if low is None else (f"> {low}" if low_open else f">= {low}")
    hi = None if high is None else (f"< {high}" if high_open else f"<= {high}")
    return " and ".join(filter(None, [lo, hi]))


def _fail(where: str, field: str, value, kind: str, bounds: str) -> ValueError:
    return ValueError(f"{where}: {field}={value!r} must be {kind}" + (f" {bounds}" if bounds else ""))


def _is_bool(value) -> bool:
    return isinstance(value, (bool, np.bool_))


def integer(where: str, field: str, value, low: int | None = None, high: int | None = None) -> int:
    """``value`` as a Python ``int`` in ``[low, high]`` (either bound optional).

    Accepts Python ints and numpy integer scalars; rejects bools, floats (even ``2.0``) and
    strings, e.g. ``"train: chunk_updates=0 must be an integer >= 1"``.
    """
    ok = isinstance(value, (int, np.integer)) and not _is_bool(value)
    ok = ok and (low is None or value >= low) and (high is None or value <= high)
    if not ok:
        raise _fail(where, field, value, "an integer", _bounds(low, high))
    return int(value)


def number(
    where: str,
    field: str,
    value,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """``value`` as a finite Python ``float`` within the bounds (``*_open``: strict inequality).

    Accepts real numbers (Python or numpy ints and floats), not bools, strings or NaN/inf, e.g.
    ``"tune: max_seconds=-1 must be a number > 0"``.
    """
    ok = isinstance(value, numbers.Real) and not _is_bool(value) and math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        raise _fail(where, field, value, "a number", _bounds(low, high, low_open, high_open))
    return float(value)


def boolean(where: str, field: str, value) -> bool:
    """``value`` as a Python ``bool``; only ``True``/``False`` (or numpy bools) are accepted, since
    ``bool("no")`` is ``True``: ``"PPO: normalize_obs='no' must be True or False"``."""
    if not _is_bool(value):
        raise ValueError(f"{where}: {field}={value!r} must be True or False")
    return bool(value)
