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
from typing import Any

import jax
import numpy as np

from hyperjax.dedup import DedupProposer, Proposer, config_key
from hyperjax.rng import as_key, key_state, load_key
from hyperjax.space import SearchSpace

__all__ = ["DedupProposer", "PROPOSERS", "Proposer", "RandomProposer", "SobolProposer", "config_key", "make_proposer"]


class RandomProposer(DedupProposer):
    """Uniform points of the cube from a PRNG key (log dimensions are log-uniform)."""

    def __init__(self, space: SearchSpace, key: Any = 0, max_tries: int = 100):
        super().__init__(space, max_tries)
        self._key = as_key(key, "random proposer: key")

    def _draw(self, n: int) -> np.ndarray:
        self._key, sub = jax.random.split(self._key)
        return self.space.sample(sub, n)

    def state_dict(self) -> dict:
        return {**super().state_dict(), "key": key_state(self._key)}

    def load_state_dict(self, d: dict) -> None:
        super().load_state_dict(d)
        self._key = load_key(d["key"])


class SobolProposer(DedupProposer):
    """A scrambled Sobol sequence, continued across calls."""

    def __init__(self, space: SearchSpace, seed: int = 0, max_tries: int = 100):
        super().__init__(space, max_tries)
        from scipy.stats import qmc

        self._seed = seed
        self._engine = qmc.Sobol(space.ndim, scramble=True, seed=seed)

    def _draw(self, n: int) -> np.ndarray:
        # Refills come in whatever sizes the scheduler frees; the sequence as a whole stays
        # low-discrepancy even when single draws are not powers of two.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*balance properties.*")
            return self._engine.random(n)

    def state_dict(self) -> dict:
        return {**super().state_dict(), "seed": self._seed, "position": int(self._engine.num_generated)}

    def load_state_dict(self, d: dict) -> None:
        from scipy.stats import qmc

        super().load_state_dict(d)
        self._seed = d["seed"]
        self._engine = qmc.Sobol(self.space.ndim, scramble=True, seed=self._seed)
        if int(d["position"]):  # scipy raises on fast_forward(0)
            self._engine.fast_forward(int(d["position"]))


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
