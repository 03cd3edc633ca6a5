"""What every proposer shares: the ask/tell protocol, the history, and never proposing a
configuration twice (judged on decoded configurations, so two cube points that decode to the
same integers/choices count as one)."""

from __future__ import annotations

from typing import Protocol

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


class DedupProposer:
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

    def forget(self, u: np.ndarray) -> None:
        """Un-registers configurations this proposer proposed that were never run (a study
        dropped them), so that they may be proposed again."""
        for row in np.atleast_2d(np.asarray(u, np.float64)):
            self.seen.discard(config_key(self.space, row))

    def tell(self, u: np.ndarray, scores: np.ndarray, budgets: np.ndarray) -> None:
        u = np.atleast_2d(np.asarray(u, np.float64))
        self.mark_seen(u)
        self.history_u.extend(u)
        self.history_score.extend(np.broadcast_to(np.asarray(scores, np.float64), (len(u),)))
        self.history_budget.extend(np.broadcast_to(np.asarray(budgets, np.float64), (len(u),)))

    def state_dict(self) -> dict:
        """The history and the configurations seen, as plain data (see ``load_state_dict``)."""
        return {"seen": sorted(self.seen, key=repr),
                "history_u": np.asarray(self.history_u, np.float64).reshape(-1, self.space.ndim),
                "history_score": np.asarray(self.history_score, np.float64),
                "history_budget": np.asarray(self.history_budget, np.float64)}

    def load_state_dict(self, d: dict) -> None:
        self.seen = {_hashable(k) for k in d["seen"]}
        self.history_u = list(np.asarray(d["history_u"], np.float64).reshape(-1, self.space.ndim))
        self.history_score = [float(x) for x in d["history_score"]]
        self.history_budget = [float(x) for x in d["history_budget"]]


def _hashable(v):
    return tuple(_hashable(x) for x in v) if isinstance(v, (list, tuple)) else v
