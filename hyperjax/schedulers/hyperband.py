"""Successive halving and Hyperband bracket arithmetic (Li et al. 2016, "Hyperband").

Budgets are in units of the minimum resource; ``R`` is the maximum resource per configuration
and ``eta`` the reduction factor. These are host-side plans: the study turns each rung into a
phase boundary at which the synchronous schedulers keep the top ``1/eta``.
"""

from __future__ import annotations

import math
from typing import NamedTuple


class Rung(NamedTuple):
    n: int  # configurations evaluated at this rung
    r: float  # resource each gets (cumulative, in units of the minimum resource)


def _check(R: float, eta: float) -> None:
    if not (isinstance(eta, (int, float)) and eta >= 2):
        raise ValueError(f"eta={eta!r} must be >= 2")
    if not (isinstance(R, (int, float)) and R >= 1):
        raise ValueError(f"R={R!r} (maximum resource in units of the minimum) must be >= 1")


def s_max(R: float, eta: float) -> int:
    """Number of brackets minus one: ``floor(log_eta R)`` (robust to float round-off)."""
    _check(R, eta)
    return int(math.floor(math.log(R) / math.log(eta) + 1e-9))


def successive_halving(n: int, r: float, eta: float, rungs: int) -> list[Rung]:
    """Rungs of one successive-halving run: ``n`` configs at resource ``r``, keeping ``1/eta``."""
    _check(max(r, 1), eta)
    out = []
    for i in range(rungs):
        out.append(Rung(int(math.floor(n * eta ** (-i))), r * eta**i))
    return out


def hyperband_brackets(R: float, eta: float = 3) -> list[list[Rung]]:
    """The brackets of Hyperband, most exploratory first (Li et al. 2016, Algorithm 1).

    For ``R = 81, eta = 3`` this is the paper's Table 1: bracket s = 4 starts 81 configs at
    resource 1 and ends with 1 at 81; bracket s = 0 runs 5 configs at 81.
    """
    smax = s_max(R, eta)
    B = (smax + 1) * R
    brackets = []
    for s in range(smax, -1, -1):
        n = int(math.ceil(B / R * eta**s / (s + 1)))
        r = R * eta ** (-s)
        brackets.append(successive_halving(n, r, eta, s + 1))
    return brackets
