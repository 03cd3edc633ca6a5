"""Proposers: where the configurations that fill freed slots come from.

One small interface (evosax-style ask/tell, host side)::

    u = proposer.ask(k)               # (k, d) points of the unit cube, none proposed before
    proposer.tell(u, scores, budgets) # results: scores (n,), budgets (n,) env steps

Random and Sobol here; the Bayesian-neural-network surrogate implements the same two methods.
Duplicates are judged on decoded configurations, so two cube points that decode to the same
integers/choices count as one configuration.
"""

from __future__ import annotations

import warnings
from typing import Any, Protocol

import jax
import numpy as np

from hyperjax.space import SearchSpace


class Proposer(Protocol):
    space: SearchSpace

    def ask(self, k: int) -> np.ndarray: ...

    def tell(self, u: np.ndarray, scores: np.ndarray, budgets: np.ndarray) -> None: ...


def config_key(space: SearchSpace, u_row: np.ndarray) -> tuple:
    """A hashable identity of the configuration a cube point decodes to."""
    cfg = space.configs(np.asarray(u_row)[None])[0]
    return tuple(round(v, 12) if isinstance(v, float) else v for v in cfg.values())


class _DedupProposer:
    """Shared bookkeeping: the history, and refusing configurations seen before."""

    def __init__(self, space: SearchSpace, max_tries: int = 100):
        self.space = space
        self.max_tries = max_tries
        self.seen: set[tuple] = set()
        self.history_u: list[np.ndarray] = []
        self.history_score: list[float] = []
        self.history_budget: list[float] = []

    def _draw(self, n: int) -> np.ndarray:
        raise NotImplementedError

    def ask(self, k: int) -> np.ndarray:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
            raise ValueError(f"ask: k={k!r} must be an integer >= 0")
        out: list[np.ndarray] = []
        for _ in range(self.max_tries):
            if len(out) == k:
                break
            for row in self._draw(k - len(out)):
                key = config_key(self.space, row)
                if key not in self.seen:
                    self.seen.add(key)
                    out.append(row)
                    if len(out) == k:
                        break
        if len(out) < k:
            raise ValueError(
                f"the search space looks exhausted: {len(self.seen)} distinct configurations proposed, "
                f"{k - len(out)} more asked for"
            )
        return np.asarray(out, np.float64).reshape(k, self.space.ndim)

    def mark_seen(self, u: np.ndarray) -> None:
        """Registers configurations from elsewhere (running trials, a transferred study)."""
        for row in np.atleast_2d(u):
            self.seen.add(config_key(self.space, row))

    def tell(self, u: np.ndarray, scores: np.ndarray, budgets: np.ndarray) -> None:
        u = np.atleast_2d(np.asarray(u, np.float64))
        self.mark_seen(u)
        self.history_u.extend(u)
        self.history_score.extend(np.broadcast_to(np.asarray(scores, np.float64), (len(u),)))
        self.history_budget.extend(np.broadcast_to(np.asarray(budgets, np.float64), (len(u),)))


class RandomProposer(_DedupProposer):
    """Uniform points of the cube from a PRNG key (log dimensions are log-uniform)."""

    def __init__(self, space: SearchSpace, key: Any = 0, max_tries: int = 100):
        super().__init__(space, max_tries)
        self._key = jax.random.key(key) if isinstance(key, (int, np.integer)) else key

    def _draw(self, n: int) -> np.ndarray:
        self._key, sub = jax.random.split(self._key)
        return self.space.sample(sub, n)


class SobolProposer(_DedupProposer):
    """A scrambled Sobol sequence, continued across calls."""

    def __init__(self, space: SearchSpace, seed: int = 0, max_tries: int = 100):
        super().__init__(space, max_tries)
        from scipy.stats import qmc

        self._engine = qmc.Sobol(space.ndim, scramble=True, seed=seed)

    def _draw(self, n: int) -> np.ndarray:
        # Refills come in whatever sizes the scheduler frees; the sequence as a whole stays
        # low-discrepancy even when single draws are not powers of two.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*balance properties.*")
            return self._engine.random(n)


def _bnn(acquisition: str):
    def make(space: SearchSpace, seed: int = 0, **kw) -> Proposer:
        from hyperjax.surrogate.proposer import BNNProposer  # NumPyro only when asked for

        return BNNProposer(space, seed, acquisition=acquisition, **kw)

    return make


PROPOSERS = {"random": RandomProposer, "sobol": SobolProposer, "bnn": _bnn("thompson"), "bnn-qei": _bnn("qei")}


def make_proposer(name: str, space: SearchSpace, seed: int = 0, **kwargs) -> Proposer:
    """A proposer by name: ``random``, ``sobol``, ``bnn`` (Thompson batches) or ``bnn-qei``;
    ``kwargs`` go to the BNN proposers (e.g. ``target_budget``)."""
    if name not in PROPOSERS:
        raise ValueError(f"proposer {name!r} is unknown; allowed: {', '.join(PROPOSERS)}")
    if kwargs and name.startswith("bnn"):
        return PROPOSERS[name](space, seed, **kwargs)
    return PROPOSERS[name](space, seed)
