"""Transfer from a similar environment: start a study on environment B from a finished study on A.

Host side, one job: read a finished study as a prior, and say whether it is likely to help.

- :func:`source_observations` reads a finished study (a ``StudyResult`` or its store directory)
  as a :class:`Source`: every finite phase-boundary observation of every trial, and the cube
  points of its best configurations.
- :func:`transfer_proposer` turns a study's proposer into the one a transferring study uses:
  the source's observations enter its surrogate (``BNNProposer.add_source``: a task feature,
  each task's scores standardised on their own) and the source's best configurations are
  proposed first (:class:`FirstProposals`).
- :func:`similarity` trains the same few probe configurations briefly on both environments and
  reports the rank correlation of their scores, before the study: whether transfer is likely to
  help at all.
"""

from __future__ import annotations

import dataclasses
import math
import os
import warnings
from typing import Any, Mapping, NamedTuple

import numpy as np

from hyperjax.dedup import config_key
from hyperjax.space import SearchSpace

__all__ = ["FirstProposals", "HELPS_ABOVE", "Source", "similarity", "source_observations", "transfer_proposer"]

# The rank correlation from which similarity() says transfer is likely to help (see there).
HELPS_ABOVE = 0.3


class Source(NamedTuple):
    """A finished study read as a prior, in the cube of the space it was read for.

    Attributes:
      u: ``(n, d)`` the cube point of each observation (a trial's, at one phase boundary).
      scores: ``(n,)`` the trial's score at that boundary (the source's own units).
      budgets: ``(n,)`` env steps per member at that boundary.
      best: ``(k, d)`` cube points of the best distinct configurations, best first: scored
        trials (completed, or evaluated when the study ended) by ``final_score``.
      best_scores: ``(k,)`` their ``final_score``.
    """

    u: np.ndarray
    scores: np.ndarray
    budgets: np.ndarray
    best: np.ndarray
    best_scores: np.ndarray


# -- reading a finished study ----------------------------------------------------------------------
def space_differences(source_space: SearchSpace, space: SearchSpace) -> list[str]:
    """What differs between two search spaces, one entry per difference (dimension names,
    types, ranges, choices, log scales), ``name.field: source value -> space value``; the order
    of the dimensions does not count (cube columns are matched by name)."""
    from hyperjax.config import diff, space_to_dict

    a, b = space_to_dict(source_space), space_to_dict(space)
    out = []
    for n in a:
        out.extend(diff(a[n], b[n], n) if n in b else [f"{n}: in the source's space only"])
    return out + [f"{n}: in space only" for n in b if n not in a]


def source_observations(source: Any, space: SearchSpace, top: int = 4) -> Source:
    """A finished study as a :class:`Source` in ``space``'s cube.

    Args:
      source: a ``StudyResult`` (what ``hj.tune`` returns) or a store directory (read with
        ``hj.load_study``, without parameters). A running or interrupted study's store works too:
        what was recorded so far is read.
      space: the search space of the study that will use it. The source's space must have the
        same dimensions (names, types, ranges, choices); their order may differ (columns are
        matched by name).
      top: how many of the best distinct configurations to keep as ``best``.

    Observations are every finite score at every phase boundary of every trial (``curve``,
    ``curve_steps``); failed boundaries (NaN) are left out, as the study's own proposer leaves
    them out.

    Raises:
      ValueError: ``source`` is neither; its space differs from ``space`` (naming every
        difference); it holds no finite observation; ``top`` is not an integer >= 0.
    """
    from hyperjax.study.records import StudyResult

    if not isinstance(space, SearchSpace):
        raise ValueError(f"source_observations: space={space!r} must be a hyperjax.space.SearchSpace")
    if isinstance(top, bool) or not isinstance(top, (int, np.integer)) or top < 0:
        raise ValueError(f"source_observations: top={top!r} must be an integer >= 0")
    if isinstance(source, (str, os.PathLike)):
        from hyperjax.study.reader import load_study

        source = load_study(os.fspath(source), params=False)
    elif not isinstance(source, StudyResult):
        raise ValueError(f"source_observations: source={source!r} must be a StudyResult or a store directory")
    differs = space_differences(source.space, space)
    if differs:
        raise ValueError("source_observations: the source study's search space differs from space "
                         "(source -> space): " + "; ".join(differs))
    cols = [list(source.space.names).index(n) for n in space.names]  # the source's columns in space's order
    u, scores, budgets = [], [], []
    for t in source.trials:
        row = np.asarray(t.u, np.float64)[cols]
        for score, steps in zip(t.curve, t.curve_steps):
            if math.isfinite(score) and steps > 0:
                u.append(row)
                scores.append(float(score))
                budgets.append(float(steps))
    if not scores:
        raise ValueError(f"source_observations: the source study has no finite observation "
                         f"({len(source.trials)} trials)")
    best, best_scores, keys = [], [], set()
    for t in sorted((t for t in source.trials if t.scored), key=lambda t: -t.final_score):
        row = np.asarray(t.u, np.float64)[cols]
        key = config_key(space, row)  # PBT children and re-runs may repeat a configuration
        if key in keys:
            continue
        if len(best) == top:
            break
        keys.add(key)
        best.append(row)
        best_scores.append(float(t.final_score))
    d = space.ndim
    return Source(np.asarray(u).reshape(-1, d), np.asarray(scores), np.asarray(budgets),
                  np.asarray(best, np.float64).reshape(-1, d), np.asarray(best_scores, np.float64))


# -- the proposer a transferring study uses --------------------------------------------------------
class FirstProposals:
    """A proposer that proposes given cube points first (a source study's best configurations),
    then what the ``inner`` proposer proposes.

    Everything a study looks up on a proposer is the inner's (``learns``, ``asks_within``,
    ``refit_async``, ``counts``, ``predict``, ``history_*``, ...: attributes not defined here
    are read from ``inner``, so ``hasattr`` answers as for the inner), with these exceptions:

    - ``ask(k, where=None)``: the first points not yet proposed, in order (within ``where``, a
      mapping of dimension names to values, when given), then ``inner.ask`` for the rest (with
      ``where`` only when one was given, as the study asks).
    - ``forget(u)``: first points the study dropped unrun are proposed again, first; the rest
      go to ``inner.forget``.
    - ``tell``/``mark_seen``: forwarded; a first point run or registered otherwise is not
      proposed any more.
    - ``counts``: the inner's, plus ``"transfer"``: first points proposed (and not given back).
    - ``state_dict``/``load_state_dict`` exist when the inner's do: the inner's state with one
      more entry, ``"first_proposals"`` (the points, and which were proposed), so that a resumed
      study proposes exactly what an uninterrupted one would, and readers of a BNN proposer's
      saved state (reports) still find it.

    No configuration is proposed twice: the first points are distinct (decoded configurations),
    and registered with the inner proposer (``mark_seen``, which every ``DedupProposer`` has)
    when this is built, so the inner never proposes them; first points the inner had seen
    already are dropped.

    Args:
      inner: the proposer to continue with (``ask(k)``/``tell(u, scores, budgets)``).
      first: ``(m, d)`` cube points to propose first, in order.
    """

    def __init__(self, inner: Any, first: np.ndarray):
        if isinstance(inner, FirstProposals):
            raise ValueError("FirstProposals: inner is a FirstProposals already; give all first points to one")
        if not (hasattr(inner, "ask") and hasattr(inner, "tell")
                and isinstance(getattr(inner, "space", None), SearchSpace)):
            raise ValueError(f"FirstProposals: inner={inner!r} must be a proposer with a space, ask(k) and "
                             "tell(u, scores, budgets)")
        self.inner = inner
        self.space: SearchSpace = inner.space
        d = self.space.ndim
        first = np.asarray(first, np.float64)
        if first.ndim != 2 or first.shape[1] != d:
            raise ValueError(f"FirstProposals: first must have shape (m, {d}) (points of the unit cube), "
                             f"got {first.shape}")
        if not np.all(np.isfinite(first)) or (len(first) and (first.min() < 0 or first.max() > 1)):
            raise ValueError("FirstProposals: first must be finite points of the unit cube [0, 1]")
        seen = getattr(inner, "seen", set())
        keep, keys = [], set()
        for i, row in enumerate(first):
            key = config_key(self.space, row)
            if key not in keys and key not in seen:
                keys.add(key)
                keep.append(i)
        self._set(first[keep], np.zeros(len(keep), bool))
        if len(self._first) and hasattr(inner, "mark_seen"):
            inner.mark_seen(self._first)

    def _set(self, first: np.ndarray, given: np.ndarray) -> None:
        self._first = np.asarray(first, np.float64).reshape(-1, self.space.ndim)
        self._given = np.asarray(given, bool).copy()
        self._keys = [config_key(self.space, row) for row in self._first]
        self._configs = self.space.configs(self._first) if len(self._first) else []

    def __getattr__(self, name: str):
        # only called for what is not found here: the inner's attributes, as they are
        inner = self.__dict__.get("inner")
        if inner is None or name.startswith("__"):
            raise AttributeError(name)
        if name in ("state_dict", "load_state_dict"):  # present exactly when the inner's are
            if not hasattr(inner, name):
                raise AttributeError(name)
            return getattr(self, f"_{name}")
        return getattr(inner, name)

    @property
    def first(self) -> np.ndarray:
        """``(m, d)`` the first points, in order (proposed or not)."""
        return self._first.copy()

    @property
    def remaining(self) -> int:
        """First points not proposed yet."""
        return int((~self._given).sum())

    @property
    def counts(self) -> dict[str, int]:
        return {**dict(getattr(self.inner, "counts", {})), "transfer": int(self._given.sum())}

    def _within(self, i: int, where: Mapping[str, Any] | None) -> bool:
        return not where or all(self._configs[i][n] == v for n, v in where.items())

    def ask(self, k: int, where: Mapping[str, Any] | None = None) -> np.ndarray:
        """``k`` cube points ``(k, d)``: first points not proposed yet (within ``where``), then
        the inner proposer's. A ValueError of the inner's (nothing left) is raised as it is,
        with the first points of this call given back."""
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
            raise ValueError(f"ask: k={k!r} must be an integer >= 0")
        self.space.fixed_columns(where)  # an unknown dimension is refused as the BNN refuses it
        picks = [i for i in range(len(self._first)) if not self._given[i] and self._within(i, where)][:k]
        self._given[picks] = True
        rest = k - len(picks)
        more = np.zeros((0, self.space.ndim))
        if rest:
            try:
                more = self.inner.ask(rest, where=where) if where else self.inner.ask(rest)
            except ValueError:
                self._given[picks] = False
                raise
            more = np.asarray(more, np.float64)
            if more.shape != (rest, self.space.ndim):  # not a ValueError: a study reads that as "nothing left"
                raise TypeError(f"FirstProposals: {type(self.inner).__name__}.ask({rest}) returned shape "
                                f"{more.shape}; expected ({rest}, {self.space.ndim})")
        return np.concatenate([self._first[picks], more])

    def _consume(self, u: np.ndarray) -> None:
        """First points among ``u`` are not to be proposed any more."""
        keys = {config_key(self.space, row) for row in np.atleast_2d(np.asarray(u, np.float64))}
        for i, key in enumerate(self._keys):
            if key in keys:
                self._given[i] = True

    def tell(self, u: np.ndarray, scores: np.ndarray, budgets: np.ndarray) -> None:
        self._consume(u)
        self.inner.tell(u, scores, budgets)

    def mark_seen(self, u: np.ndarray) -> None:
        self._consume(u)
        if hasattr(self.inner, "mark_seen"):
            self.inner.mark_seen(u)

    def forget(self, u: np.ndarray) -> None:
        """Gives back proposals the study dropped unrun: first points are proposed again (first,
        in their order; the inner keeps them as seen, so it never proposes them), the others go
        to the inner's ``forget`` if it has one."""
        u = np.atleast_2d(np.asarray(u, np.float64))
        index = {key: i for i, key in enumerate(self._keys)}
        others = []
        for row in u:
            i = index.get(config_key(self.space, row))
            if i is None:
                others.append(row)
            else:
                self._given[i] = False
        if others and hasattr(self.inner, "forget"):
            self.inner.forget(np.asarray(others))

    def _state_dict(self) -> dict:
        state = self.inner.state_dict()
        mine = {"u": self._first.copy(), "given": self._given.copy()}
        if isinstance(state, dict) and "first_proposals" not in state:
            return {**state, "first_proposals": mine}
        return {"inner": state, "first_proposals": mine, "nested": True}

    def _load_state_dict(self, d: dict) -> None:
        d = dict(d)
        mine = d.pop("first_proposals")
        self.inner.load_state_dict(d["inner"] if d.get("nested") else d)
        self._set(mine["u"], mine["given"])


def transfer_proposer(proposer: Any, source: Any, space: SearchSpace | None = None, *, first: int = 4) -> Any:
    """The proposer a study that transfers from ``source`` uses: ``proposer`` given the
    source's observations (if it has ``add_source``: the BNN proposer), wrapped so that the
    source's best configurations are proposed first (:class:`FirstProposals`).

    Call it on a fresh proposer, before the study's first ask (``add_source`` refuses a fitted
    one). The source's budgets are rescaled so that its longest observed training (its full
    trials) maps to the proposer's ``target_budget`` when it has one: the two studies' trials
    are compared as fractions of training, whatever their lengths.

    Args:
      proposer: the study's proposer (``ask(k)``/``tell``, e.g. from ``make_proposer``).
      source: a finished study: ``StudyResult``, store directory, or :class:`Source`.
      space: the study's search space (default: ``proposer.space``); a study or store is read
        in it (:func:`source_observations`: a different space is refused).
      first: how many of the source's best distinct configurations are proposed first (4: half
        of the smallest first wave a study asks for, ``max(8, slots)``, so the first wave still
        explores beside them should the environments differ more than hoped; 0 turns it off).

    Returns:
      A :class:`FirstProposals` around ``proposer`` (``proposer`` itself, given the source,
      when ``first`` is 0 or the source has no scored trial).
    """
    if isinstance(first, bool) or not isinstance(first, (int, np.integer)) or first < 0:
        raise ValueError(f"transfer_proposer: first={first!r} must be an integer >= 0")
    if not (hasattr(proposer, "ask") and hasattr(proposer, "tell")):
        raise ValueError(f"transfer_proposer: proposer={proposer!r} must have ask(k) and tell(u, scores, budgets)")
    space = getattr(proposer, "space", None) if space is None else space
    if not isinstance(space, SearchSpace):
        raise ValueError(f"transfer_proposer: space={space!r} must be a SearchSpace (the proposer has none)")
    if not isinstance(source, Source):
        source = source_observations(source, space, top=first)
    elif source.u.shape[1:] != (space.ndim,):
        raise ValueError(f"transfer_proposer: the source's points have shape {source.u.shape}; the space has "
                         f"{space.ndim} dimensions")
    if hasattr(proposer, "add_source"):
        budgets = np.asarray(source.budgets, np.float64)
        target = getattr(proposer, "target_budget", None)
        if target:  # fractions of training: the source's full trials at the target's full trials
            budgets = budgets * (float(target) / float(budgets.max()))
        proposer.add_source(source.u, source.scores, budgets)
    best = np.asarray(source.best, np.float64)[:first]
    return FirstProposals(proposer, best) if len(best) else proposer


# -- is transfer likely to help? -----------------------------------------------------------------
def _int(name: str, v: Any, low: int) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
        raise ValueError(f"similarity: {name}={v!r} must be an integer >= {low}")
    return int(v)


def similarity(agent: Any, source_env: str, target_env: str, space: SearchSpace, probes: int = 8,
               total_timesteps: int = 50_000, seeds: int = 2, seed: int = 0, eval_episodes: int = 8) -> dict:
    """How alike two environments are for tuning ``agent``: the rank correlation of the scores
    of the same probe configurations, each trained briefly on both.

    The probes are ``probes`` scrambled Sobol points of ``space``'s traced hyperparameters
    (``seed`` picks them); its structural dimensions (static settings of the agent) keep the
    agent's own values, so each environment is one compiled call of ``hj.train`` (``probes``
    configurations x ``seeds`` seeds, ``total_timesteps`` env steps each, the same ``seed``,
    so the same training keys, on both). A score is the mean greedy evaluation return over
    seeds (``TrainResult.score``; a failed member counts as ``-inf``, the lowest rank).

    ``likely_to_help`` is ``spearman >= 0.3`` (:data:`HELPS_ABOVE`). Transfer costs little when
    the rankings agree only loosely (a few first proposals, and a prior the target's own scores
    soon outweigh) and hurts when they are unrelated or reversed: 0.3, a moderate positive
    correlation, rules those out without asking for more than a brief probe can show. It is
    not a significance test: with 8 probes of unrelated environments a correlation of 0.3 or
    more arises by chance about one time in four (``p_value``, two-sided, says how often for
    the correlation found); more probes sharpen both.

    Returns:
      ``{"spearman": rho, "p_value": p, "probes": [config dict of the traced values] * probes,
      "source_scores": (probes,), "target_scores": (probes,), "likely_to_help": bool,
      "summary": a sentence}``; ``rho`` is NaN when either side's scores are all equal.

    Raises:
      ValueError: before anything is trained or compiled, for an agent that is not one, unknown
        environments (or ones the agent cannot act in), a space that does not fit the agent or
        has no traced hyperparameter, fewer than 3 probes, or budgets below one update.
    """
    from scipy import stats

    from hyperjax.agents.base import ActorCriticAgent
    from hyperjax.train import train

    # -- checked on the host, before anything is traced ------------------------------------------
    if not isinstance(agent, ActorCriticAgent):
        raise ValueError(f"similarity: agent={agent!r} must be an agent such as hj.PPO() or hj.A2C()")
    if not isinstance(space, SearchSpace):
        raise ValueError(f"similarity: space={space!r} must be a hyperjax.space.SearchSpace")
    probes = _int("probes", probes, 3)  # a rank correlation of two points is always +-1
    seeds = _int("seeds", seeds, 1)
    seed = _int("seed", seed, 0)
    eval_episodes = _int("eval_episodes", eval_episodes, 1)
    total_timesteps = _int("total_timesteps", total_timesteps, agent.steps_per_update)
    for name, env in (("source_env", source_env), ("target_env", target_env)):
        if not isinstance(env, str):
            raise ValueError(f"similarity: {name}={env!r} must be an environment id (a string)")
    space.validate_for(agent)
    traced = [n for n in space.names if n in agent.hparam_names()]
    if not traced:
        raise ValueError(f"similarity: space ({', '.join(space.names)}) has no traced hyperparameter of "
                         f"{agent.name} to probe; only structural ones")
    with warnings.catch_warnings():  # any number of probes: balance is not what they are for
        warnings.filterwarnings("ignore", message=".*balance properties.*")
        dec = space.decode(space.sobol(probes, seed=seed))
    values = {n: np.asarray(dec[n], np.float64) for n in traced}
    agent.hparams(**values)  # every probe must be a valid value (ValueError naming it)
    configs = [{n: float(values[n][i]) for n in traced} for i in range(probes)]
    agents = {}
    for name, env in (("source_env", source_env), ("target_env", target_env)):
        try:  # building the environment (a gymnax env compiles a little) comes last
            agents[name] = dataclasses.replace(agent, env=env)
        except ValueError as e:
            raise ValueError(f"similarity: {name}={env!r}: {e}") from None

    # -- one compiled call per environment --------------------------------------------------------
    scores = {}
    for name, a in agents.items():
        res = train(a, values, total_timesteps=total_timesteps, num_seeds=seeds, seed=seed,
                    eval_episodes=eval_episodes)
        scores[name] = np.asarray(res.score, np.float64)
    s, t = scores["source_env"], scores["target_env"]
    if len(np.unique(s)) < 2 or len(np.unique(t)) < 2:
        rho, p = math.nan, math.nan  # a constant side has no ranking (spearmanr would warn, and say NaN)
    else:
        r = stats.spearmanr(s, t)
        rho, p = float(r.statistic), float(r.pvalue)
    helps = bool(rho >= HELPS_ABOVE)  # False for NaN
    summary = (f"{source_env} -> {target_env}: Spearman rank correlation {rho:.2f} (p = {p:.2g}) over {probes} "
               f"probe configurations trained {total_timesteps:,} env steps x {seeds} seeds; transfer is "
               + ("likely to help" if helps else f"not likely to help (needs {HELPS_ABOVE} or more)"))
    return {"spearman": rho, "p_value": p, "probes": configs, "source_scores": s, "target_scores": t,
            "likely_to_help": helps, "summary": summary}
