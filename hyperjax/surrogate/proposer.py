"""``BNNProposer``: batch proposals from the Bayesian-neural-network surrogate (ask/tell).

Every ``tell`` adds observations ``(configuration, fidelity) -> score``; in a study that is
every phase boundary of every trial, so an evicted trial's early scores inform predictions at
the full budget (multi-fidelity). ``ask(k)`` fits the posterior (warm-started SVI by default)
and picks ``k`` distinct configurations from a candidate pool (scrambled Sobol points plus
Gaussian perturbations of the configurations the posterior mean rates best), predicted at the
target fidelity:

- ``"thompson"``: one posterior draw per proposal, each maximised over the pool;
- ``"qei"``: greedy Monte-Carlo q-expected-improvement over all draws: each pick maximises the
  expected improvement of the batch's maximum over the incumbent, given the picks before it.

A Thompson batch is spread out: each pick excludes the candidates within ``min_distance`` of it
(root mean square of the per-dimension differences in the unit cube) from the later picks of the
same batch. Posterior draws of a small network often agree on one optimum, and Thompson batches
without this collapsed: 6 of 8 proposals of one batch had learning rates within 1.4e-3..1.6e-3.
(q-EI's greedy picks already account for the batch; spreading them made them worse.)
When the pool runs out under the constraint, the distance is halved until the batch is full.
In a study (``proposer.learns``) the proposer is asked each tick for exactly the slots that are
free, after that tick's scores were told.

No configuration is proposed twice (judged on decoded configurations, running trials and the
batch itself included). Failed trials (non-finite scores) are left out of the fit, documented
rather than imputed: a diverging configuration tells little about the scale of good ones, and
it can never be proposed again anyway. With fewer than ``min_observations`` finite scores the
proposer falls back to scrambled Sobol points.

Transfer (``add_source``): a finished study on another environment (the *source* task) can be
given before the study. Its observations enter every fit beside the proposer's own, with one
more input column, the task feature: 1 for the source's rows, 0 for the proposer's own, and
every prediction and acquisition is made at 0 (the proposer's own task). Each task's scores are
warped on their own (:func:`task_warp`: standardised, then Yeo-Johnson), so the two objectives
meet in comparable units whatever their scales; what differs between the tasks beyond that is
left to the task feature. Source observations count towards ``min_observations``: with a source
the posterior drives the asks from the first one (its predictions at task 0 are then the
source-informed prior). Without ``add_source`` nothing of the above applies: the inputs, the
fits and the proposals are exactly those of a proposer without transfer.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import math
import threading
import time
import warnings
from typing import Any, Mapping, NamedTuple

import jax
import numpy as np

from hyperjax.dedup import DedupProposer, config_key
from hyperjax.rng import generator_state, key_state, load_generator, load_key
from hyperjax.space import Choice, SearchSpace
from hyperjax.surrogate.bnn import BNN, BNNConfig, Posterior


def features(space: SearchSpace, u: np.ndarray) -> np.ndarray:
    """Cube points ``(n, d)`` -> network inputs ``(n, F)``: unordered choices one-hot, every
    other dimension (numbers, ordered choices) its cube coordinate."""
    u = np.atleast_2d(np.asarray(u, np.float64))
    cols = []
    for i, dim in enumerate(space.dims.values()):
        if isinstance(dim, Choice) and not dim.ordered:
            n = len(dim.choices)
            idx = np.clip(np.floor(u[:, i] * n), 0, n - 1).astype(int)
            cols.append(np.eye(n)[idx])
        else:
            cols.append(u[:, i : i + 1])
    return np.concatenate(cols, axis=1)


@dataclasses.dataclass(frozen=True)
class Warp:
    """A monotone map of scores onto a near-Gaussian scale: standardise, then Yeo-Johnson with
    the maximum-likelihood ``lam`` (``scipy.stats.yeojohnson_normmax``). Skewed objectives (a
    few good configurations far above a mass of poor ones, as returns often are) otherwise put
    their best points in the tail that the Student-t likelihood discounts as outliers. Monotone,
    so the ranking of configurations, and every Thompson maximiser, is unchanged.

    Back to scores, values beyond the warped range of the data (``lo``, ``hi``) continue the
    inverse linearly: the exact inverse is bounded (``lam < 0``) or explodes there, and a
    posterior draw that extrapolates past the best score seen must not become 1e12."""

    mean: float = 0.0
    std: float = 1.0
    lam: float = 1.0  # 1 with mean 0, std 1 and an unbounded range: the identity
    lo: float = -math.inf
    hi: float = math.inf

    @classmethod
    def fit(cls, y: np.ndarray) -> "Warp":
        from scipy import stats

        y = np.asarray(y, np.float64)
        std = float(np.std(y))
        if len(y) < 3 or not np.isfinite(std) or std < 1e-12:
            return cls()
        mean = float(np.mean(y))
        lam = float(np.clip(stats.yeojohnson_normmax((y - mean) / std), -2.0, 4.0))
        w = cls(mean, std, lam)(y)
        return cls(mean, std, lam, float(w.min()), float(w.max()))

    def __call__(self, y: np.ndarray) -> np.ndarray:
        from scipy import stats

        return stats.yeojohnson((np.asarray(y, np.float64) - self.mean) / self.std, self.lam)

    def _exact(self, w: np.ndarray) -> np.ndarray:
        lam = self.lam
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            up = np.expm1(w) if abs(lam) < 1e-8 else np.power(np.maximum(lam * w + 1, 1e-12), 1 / lam) - 1
            down = -np.expm1(-w) if abs(lam - 2) < 1e-8 else 1 - np.power(np.maximum(1 - (2 - lam) * w, 1e-12), 1 / (2 - lam))
        return np.where(w >= 0, up, down)

    def _d_exact(self, w: np.ndarray) -> np.ndarray:
        lam, w = self.lam, np.asarray(w, np.float64)
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            up = np.exp(w) if abs(lam) < 1e-8 else np.power(np.maximum(lam * w + 1, 1e-12), 1 / lam - 1)
            down = np.exp(-w) if abs(lam - 2) < 1e-8 else np.power(np.maximum(1 - (2 - lam) * w, 1e-12), 1 / (2 - lam) - 1)
        return np.where(w >= 0, up, down)

    def inverse(self, w: np.ndarray) -> np.ndarray:
        """Warped values back to scores (linear past the data's warped range)."""
        w = np.asarray(w, np.float64)
        z = self._exact(np.clip(w, self.lo, self.hi))
        if math.isfinite(self.hi):
            z = np.where(w > self.hi, z + (w - self.hi) * self._d_exact(self.hi), z)
        if math.isfinite(self.lo):
            z = np.where(w < self.lo, z + (w - self.lo) * self._d_exact(self.lo), z)
        return z * self.std + self.mean

    def slope(self, w: np.ndarray) -> np.ndarray:
        """d(score)/d(warped value) at ``w`` (carries noise scales back, to first order)."""
        w = np.asarray(w, np.float64)
        return self._d_exact(np.clip(w, self.lo, self.hi)) * self.std


def task_warp(y: np.ndarray, yeo_johnson: bool = True) -> Warp:
    """The warp of one task's scores ``y (n,)`` when two tasks share a fit (transfer): each task
    is standardised on its own, so a source environment whose returns run to 500 and a target
    whose returns run to -200 meet in units of their own spread (a shared standardisation would
    leave the offset and the scale to the task feature, from a handful of target scores).
    Standardised rather than rank-transformed: the target's warp must invert, to give
    predictions back in its own units, and magnitudes (how much better the best configurations
    are) are information the ranks throw away. With ``yeo_johnson`` and three or more distinct
    scores this is :meth:`Warp.fit` (standardise, then Yeo-Johnson, as without transfer); with
    fewer it only standardises (one score: centred, unit scale), where ``Warp.fit`` would
    leave the raw scores, far from the other task's units."""
    y = np.asarray(y, np.float64)
    if yeo_johnson and len(y) >= 3:
        w = Warp.fit(y)
        if w != Warp():
            return w
    mean = float(np.mean(y)) if len(y) else 0.0
    std = float(np.std(y)) if len(y) > 1 else 0.0
    return Warp(mean, std if math.isfinite(std) and std > 1e-12 else 1.0)


def _blocked_by(pool: np.ndarray, picks: list[int], radius: float) -> np.ndarray:
    """``(C,)``: the candidates of ``pool (C, d)`` that are picks or closer than ``radius`` (RMS
    over the cube's dimensions) to one."""
    blocked = np.zeros(len(pool), bool)
    blocked[picks] = True
    if radius > 0 and picks:
        d2 = ((pool[:, None, :] - pool[picks][None, :, :]) ** 2).mean(-1)
        blocked |= (d2 < radius**2).any(1)
    return blocked


def spread_batch(score_of, pool: np.ndarray, k: int, min_distance: float) -> list[int]:
    """Greedy batch of ``min(k, C)`` distinct candidates of ``pool (C, d)`` (unit-cube points):
    the ``j``-th pick maximises ``score_of(j, picks) -> (C,)`` over the candidates that are not
    within ``min_distance`` (RMS over the dimensions) of an earlier pick. When every candidate
    is blocked the distance is halved (and, below 1e-6, dropped) until the batch is full."""
    c = len(pool)
    radius = float(min_distance)
    picks: list[int] = []
    blocked = np.zeros(c, bool)
    for j in range(min(k, c)):
        while blocked.all():
            radius /= 2
            blocked = _blocked_by(pool, picks, radius if radius > 1e-6 else 0.0)
        row = np.where(blocked, -np.inf, score_of(j, picks))
        i = int(np.argmax(row))
        if not np.isfinite(row[i]):  # every free candidate is rated -inf: the first free one
            i = int(np.flatnonzero(~blocked)[0])
        picks.append(i)
        blocked |= _blocked_by(pool, [i], radius if radius > 1e-6 else 0.0)
    return picks


class _Fit(NamedTuple):
    """A fitted posterior and what it was fitted with: the score warp (of the proposer's own
    scores), the proposer's own finite observations it saw (not counting a source's), the
    lowest budget among them and the source's (the fidelity feature's origin)."""

    posterior: Posterior
    warp: Warp
    n: int
    lo: float


class BNNProposer(DedupProposer):
    """Ask/tell over a :class:`~hyperjax.surrogate.bnn.BNN` surrogate.

    ``counts`` says how many proposals came from the posterior (``"surrogate"``) and how many
    from the Sobol fallback (``"fallback"``: too few scores yet, or the pool ran dry).

    Args:
      space: the search space.
      seed: PRNG seed (fits, draws and candidate pools all flow from it).
      acquisition: ``"thompson"`` or ``"qei"``.
      config: the surrogate's settings (:class:`BNNConfig`).
      target_budget: the fidelity proposals are judged at (default: the largest one told).
      min_observations: finite scores needed before the surrogate is used (default ``2d + 2``).
      num_candidates: Sobol points in each pool; ``num_local`` perturbations of each of the
        ``num_top`` best configurations are added, with standard deviation ``local_scale``.
      warp: fit the surrogate to Yeo-Johnson-warped scores (:class:`Warp`); predictions come
        back in the scores' own units either way.
      min_distance: picks of one batch are at least this far apart (RMS over the dimensions of
        the unit cube; 0 turns the spreading off). Default: 0.1 for Thompson batches, 0 for q-EI,
        whose greedy picks already account for the batch (benchmarks/README.md, test functions).
      refit_growth: in a study, a new fit starts only once the scores told have grown by this
        fraction (at least one) since the last fit started; 0 refits every tick. Fits then cost
        O(log n) over a study of n scores instead of one per tick, which matters when ticks are
        shorter than a fit (small phases, many structural buckets, two CPU cores).
      precompile: start compiling the surrogate's first fit program now, on a worker thread,
        so that it is ready when ``min_observations`` scores have arrived (a study trains
        meanwhile); later capacities are compiled ahead the same way by the surrogate itself.

    A source task's observations may be added before the first fit (:meth:`add_source`,
    transfer from a study on another environment; see the module's docstring).
    """

    learns = True  # a study asks it for the free slots each tick (Study.next_config)
    asks_within = True  # ask(k, where=...): the best configurations within a structural bucket

    def __init__(self, space: SearchSpace, seed: int = 0, acquisition: str = "thompson",
                 config: BNNConfig | None = None, target_budget: float | None = None,
                 min_observations: int | None = None, num_candidates: int = 1024, num_top: int = 5,
                 num_local: int = 64, local_scale: float = 0.05, max_tries: int = 100,
                 precompile: bool = True, warp: bool = True, min_distance: float | None = None,
                 refit_growth: float = 0.2):
        super().__init__(space, max_tries)
        if acquisition not in ("thompson", "qei"):
            raise ValueError(f"bnn proposer: acquisition={acquisition!r} is unknown; allowed: thompson, qei")
        from scipy.stats import qmc

        if min_distance is None:  # measured on the test functions: spreading helps Thompson, hurts q-EI
            min_distance = 0.1 if acquisition == "thompson" else 0.0
        if isinstance(min_distance, bool) or not isinstance(min_distance, (int, float)) \
                or not 0 <= min_distance <= 1:
            raise ValueError(f"bnn proposer: min_distance={min_distance!r} must be a number in [0, 1]")
        if isinstance(refit_growth, bool) or not isinstance(refit_growth, (int, float)) or refit_growth < 0:
            raise ValueError(f"bnn proposer: refit_growth={refit_growth!r} must be a number >= 0")
        self.acquisition = acquisition
        self.min_distance = float(min_distance)
        self.refit_growth = float(refit_growth)
        # proposals made from the posterior vs from the Sobol fallback (too few scores yet)
        self.counts = {"surrogate": 0, "fallback": 0}
        self.bnn = BNN(config)
        self.target_budget = target_budget
        self.min_observations = min_observations or 2 * space.ndim + 2
        self.num_candidates, self.num_top, self.num_local, self.local_scale = num_candidates, num_top, num_local, local_scale
        self._key = jax.random.key(seed)
        self._seed = seed
        self._sobol = qmc.Sobol(space.ndim, scramble=True, seed=seed)
        self._rng = np.random.default_rng(seed)
        self.posterior: Posterior | None = None
        self._fitted_on = -1
        self._lo: float | None = None  # the newest posterior's lowest budget
        self.fit_seconds: list[float] = []  # each fit, from its start until its draws exist
        self.wait_seconds: list[float] = []  # what each ask in a study waited for its posterior
        # fits started by refit_async (in a study, one per tick), run in order on one worker
        self._seq = 0  # fits started
        self._refit_told = 0  # scores the newest started fit saw
        self._jobs: list[tuple[int, int, Any, concurrent.futures.Future]] = []  # (seq, told, key, future)
        self._done: dict[int, _Fit | None] = {}  # finished fits an ask may still use, by seq
        self._chain: tuple[int, dict] | None = None  # (seq, BNN state before it) of the running fit
        self._lock = threading.Lock()
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._precompile = precompile
        self.warp_scores = warp
        self.warp = Warp()  # refit with every posterior
        self._num_features = self._base_features()
        # a source task's finite observations (u (m, d), scores (m,), budgets (m,)): add_source
        self._source: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        if precompile:
            self.bnn.prepare(self.min_observations, self._num_features)

    # -- saving and loading ------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """History, PRNG key, Sobol position, generator, the fitted posterior, its warp and the
        BNN's warm-start state, and the fits started by :meth:`refit_async` (finished ones an ask
        may still use; unfinished ones as what restarts them: the scores they see, their key,
        and the warm-start state before the first of them): a proposer loaded from it proposes
        exactly what this one would, whenever its fits finish. Does not wait for them."""
        with self._lock:  # a fit finishing now would change the warm-start state mid-way
            unfinished = [(seq, told, key) for seq, told, key, fut in self._jobs if seq not in self._done]
            if unfinished and self._chain is not None and self._chain[0] == unfinished[0][0]:
                bnn = self._chain[1]  # the first unfinished fit is running: the state before it
            else:
                bnn = self.bnn.state_dict()
            done = {str(seq): None if f is None else {"posterior": f.posterior.state_dict(), "warp": dataclasses.asdict(f.warp),
                                                      "n": f.n, "lo": f.lo}
                    for seq, f in self._done.items()}
            return {**super().state_dict(), "key": key_state(self._key), "sobol": int(self._sobol.num_generated),
                    "seed": self._seed, "rng": generator_state(self._rng),
                    "posterior": None if self.posterior is None else self.posterior.state_dict(),
                    "fitted_on": self._fitted_on, "lo": self._lo, "fit_seconds": list(self.fit_seconds),
                    "wait_seconds": list(self.wait_seconds), "warp": dataclasses.asdict(self.warp), "bnn": bnn,
                    "counts": dict(self.counts), "seq": self._seq, "refit_told": self._refit_told, "done": done,
                    "unfinished": [[seq, told, key_state(key)] for seq, told, key in unfinished],
                    # only with a source: a proposer without one saves exactly what it saved before
                    **({} if self._source is None else {"source": {
                        "u": self._source[0], "scores": self._source[1], "budgets": self._source[2]}})}

    def load_state_dict(self, d: dict) -> None:
        from scipy.stats import qmc

        super().load_state_dict(d)
        src = d.get("source")
        self._source = None if src is None else (
            np.asarray(src["u"], np.float64).reshape(-1, self.space.ndim), np.asarray(src["scores"], np.float64),
            np.asarray(src["budgets"], np.float64))
        self._num_features = self._base_features() + (self._source is not None)
        self._key = load_key(d["key"])
        self._seed = d["seed"]
        self._sobol = qmc.Sobol(self.space.ndim, scramble=True, seed=self._seed)
        if int(d["sobol"]):  # scipy raises on fast_forward(0)
            self._sobol.fast_forward(int(d["sobol"]))
        self._rng = load_generator(d["rng"])
        self.posterior = None if d["posterior"] is None else Posterior.from_state(d["posterior"])
        self._fitted_on = int(d["fitted_on"])
        self.fit_seconds = [float(x) for x in d["fit_seconds"]]
        self.wait_seconds = [float(x) for x in d.get("wait_seconds", [])]
        self.warp = Warp(**{k: float(v) for k, v in d["warp"].items()})
        self._lo = None if d.get("lo") is None else float(d["lo"])
        self.bnn.load_state_dict(d["bnn"])
        self.counts = {k: int(v) for k, v in d.get("counts", {"surrogate": 0, "fallback": 0}).items()}
        self._seq = int(d.get("seq", 0))
        self._refit_told = int(d.get("refit_told", 0))
        self._jobs, self._chain = [], None
        self._done = {int(seq): None if f is None else _Fit(Posterior.from_state(f["posterior"]),
                                                            Warp(**{k: float(v) for k, v in f["warp"].items()}),
                                                            int(f["n"]), float(f["lo"]))
                      for seq, f in d.get("done", {}).items()}
        for seq, told, key in d.get("unfinished", []):  # restarted in order, from the saved state
            self._start(int(seq), int(told), load_key(key))
        if self._precompile and len(self.history_score):
            self.bnn.prepare(max(len(self.history_score) + self._num_source, self.min_observations), self._num_features)

    # -- fallbacks -----------------------------------------------------------------------------
    def _draw(self, n: int) -> np.ndarray:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*balance properties.*")
            return self._sobol.random(n)

    def tell(self, u: np.ndarray, scores: np.ndarray, budgets: np.ndarray) -> None:
        super().tell(u, scores, budgets)
        if self._precompile:  # observations arrive in bursts: keep the next fit's program coming
            self.bnn.prepare(max(len(self.history_score) + self._num_source, self.min_observations), self._num_features)

    # -- transfer ------------------------------------------------------------------------------
    def _base_features(self) -> int:
        return features(self.space, np.full((1, self.space.ndim), 0.5)).shape[1] + 1  # + fidelity

    @property
    def _num_source(self) -> int:
        return 0 if self._source is None else len(self._source[1])

    @property
    def source(self) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """The source task's finite observations ``(u (m, d), scores (m,), budgets (m,))``
        (:meth:`add_source`), or ``None``."""
        return self._source

    def add_source(self, u: np.ndarray, scores: np.ndarray, budgets: np.ndarray) -> None:
        """Adds a source task's observations (transfer from a study on another environment):
        cube points ``u (n, d)`` of this proposer's space, their ``scores (n,)`` in the source's
        own units and ``budgets (n,)`` in env steps on the same scale as the budgets this
        proposer is told (``hyperjax.transfer.transfer_proposer`` rescales them to
        ``target_budget``). Non-finite scores are left out, as failed trials are.

        From then on every fit sees them with the task feature 1 (the proposer's own
        observations 0), each task's scores warped on their own (:func:`task_warp`), and
        every prediction is made for the proposer's own task (feature 0), in its own score
        units once it has two or more scores of its own (before that, in the standardised units
        the fit shares with the source: a prior's shape, good for ranking, with no level).
        They count towards ``min_observations``: a source of that many scores or more drives
        the asks before the proposer has a score of its own, which is the point of transfer.
        Calls add up (one source task); no call may come after the first fit (its inputs
        would change shape under a fitted posterior): ValueError."""
        if self.posterior is not None or self._seq or self._fitted_on >= 0:
            raise ValueError("add_source: the proposer has fitted its posterior already; add the source "
                             "before the first ask or refit_async")
        d = self.space.ndim
        u = np.asarray(u, np.float64)
        if u.ndim != 2 or u.shape[1] != d:
            raise ValueError(f"add_source: u must have shape (n, {d}) (points of the unit cube), got {u.shape}")
        n = len(u)
        scores = np.asarray(scores, np.float64)
        budgets = np.asarray(budgets, np.float64)
        for name, v in (("scores", scores), ("budgets", budgets)):
            if v.shape != (n,):
                raise ValueError(f"add_source: {name} must have shape ({n},) like u's rows, got {v.shape}")
        if not np.all(np.isfinite(u)) or (n and (u.min() < 0 or u.max() > 1)):
            raise ValueError("add_source: u must be finite points of the unit cube [0, 1]")
        if not np.all(np.isfinite(budgets) & (budgets > 0)):
            bad = budgets[~(np.isfinite(budgets) & (budgets > 0))]
            raise ValueError(f"add_source: budgets must be finite and > 0, got {bad[:3]}")
        ok = np.isfinite(scores)
        if not ok.any():
            raise ValueError(f"add_source: none of the {n} scores is finite")
        new = (u[ok], scores[ok], budgets[ok])
        if self._source is not None:
            new = tuple(np.concatenate([a, b]) for a, b in zip(self._source, new))
        self._source = new
        self._num_features = self._base_features() + 1  # + the task feature
        if self._precompile:
            self.bnn.prepare(max(len(self.history_score) + self._num_source, self.min_observations), self._num_features)

    def _enough(self, n_own: int) -> bool:
        """Whether ``n_own`` finite scores of its own (and the source's) are enough to fit."""
        return n_own + self._num_source >= self.min_observations

    # -- data ----------------------------------------------------------------------------------
    def _data(self, told: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The finite observations among the first ``told`` (default: all) told."""
        told = len(self.history_score) if told is None else told
        # slices first: a fit's worker reads while the study's thread may be telling more
        u = np.asarray(self.history_u[:told], np.float64).reshape(-1, self.space.ndim)
        y = np.asarray(self.history_score[:told], np.float64)
        b = np.asarray(self.history_budget[:told], np.float64)
        ok = np.isfinite(y) & np.isfinite(b) & (b > 0)
        return u[ok], y[ok], b[ok]

    def _fidelity(self, budgets: np.ndarray, lo: float, target: float) -> np.ndarray:
        if target <= lo:
            return np.ones_like(budgets, dtype=np.float64)
        return (np.log(budgets) - math.log(lo)) / (math.log(target) - math.log(lo))

    @property
    def target(self) -> float:
        """The fidelity proposals are judged at: ``target_budget``, else the largest told (else
        the source's largest, else 1)."""
        _, _, b = self._data()
        if self.target_budget or len(b) or self._source is None:
            return self.target_budget or (float(b.max()) if len(b) else 1.0)
        return float(self._source[2].max())

    def _lowest(self, b: np.ndarray) -> float:
        if self._source is not None:  # the source's budgets share the fidelity axis
            b = np.concatenate([b, self._source[2]])
        return float(min(b.min(), self.target)) if len(b) else self.target

    def inputs(self, u: np.ndarray, budgets: np.ndarray | float, lo: float | None = None,
               task: float = 0.0) -> np.ndarray:
        """Network inputs for cube points ``u (n, d)`` at ``budgets`` (scalar or ``(n,)``);
        fidelities are measured from ``lo`` (default: the newest posterior's lowest budget,
        else the lowest told). With a source (:meth:`add_source`) a last column holds ``task``:
        0 for the proposer's own task (every prediction), 1 for the source's observations."""
        if lo is None:
            lo = self._lo if self._lo is not None else self._lowest(self._data()[2])
        z = self._fidelity(np.broadcast_to(np.asarray(budgets, np.float64), (len(u),)), lo, self.target)
        x = np.concatenate([features(self.space, u), z[:, None]], axis=1)
        if self._source is not None:
            x = np.concatenate([x, np.full((len(x), 1), float(task))], axis=1)
        return x

    def _fit_on(self, key, told: int) -> _Fit | None:
        """Fits the posterior to the first ``told`` observations (None if too few); the BNN
        warm-starts from its last fit. Timed until the draws exist (asynchronous dispatch)."""
        u, y, b = self._data(told)
        if not self._enough(len(y)):
            return None
        t0 = time.perf_counter()
        lo = self._lowest(b)
        if self._source is None:
            warp = Warp.fit(y) if self.warp_scores else Warp()
            post = self.bnn.fit(key, self.inputs(u, b, lo), warp(y))
        else:  # each task's scores in units of its own spread; the task feature tells them apart
            su, sy, sb = self._source
            warp = task_warp(y, self.warp_scores)
            x = np.concatenate([self.inputs(u, b, lo, task=0.0), self.inputs(su, sb, lo, task=1.0)])
            w = np.concatenate([warp(y) if len(y) else np.zeros(0), task_warp(sy, self.warp_scores)(sy)])
            post = self.bnn.fit(key, x, w)
        jax.block_until_ready(post.draws)
        self.fit_seconds.append(time.perf_counter() - t0)
        return _Fit(post, warp, len(y), lo)

    def _newest(self, f: _Fit) -> None:
        self.posterior, self.warp, self._fitted_on, self._lo = f.posterior, f.warp, f.n, f.lo

    def fit(self) -> Posterior | None:
        """Fits the posterior to everything told so far (skipped if nothing new), after the fits
        :meth:`refit_async` started have finished."""
        self._finish_jobs()
        u, y, b = self._data()
        if not self._enough(len(y)):
            return None
        if self._fitted_on == len(y) and self.posterior is not None:
            return self.posterior
        self._key, k = jax.random.split(self._key)
        self._newest(self._fit_on(k, len(self.history_score)))
        return self.posterior

    # -- fits beside training --------------------------------------------------------------------
    def refit_async(self) -> None:
        """Starts fitting the posterior to everything told so far, on a worker thread (fits run
        one at a time, in order, each warm-started from the one before). A study calls this once
        per tick, after the tick's scores are told, and its asks use the fit started one call
        before the newest one: that fit has had a whole tick of training to run beside, and the
        ask waits for it if it is not done (``wait_seconds``). While that fit saw too few scores
        to fit at all (the study's first refills, the largest wave under early stopping), an ask
        waits for the newest fit instead. So a refill comes from a posterior that has seen every
        score up to the tick before the last (the last, at first), and the proposals are the
        same however long the fits take.

        A call starts nothing unless the scores told have grown by ``refit_growth`` (at least
        one score) since the last fit started, so "tick" above reads "fit" when ticks are many."""
        told = len(self.history_score)
        if self._seq and told < self._refit_told + max(1, math.ceil(self.refit_growth * self._refit_told)):
            return
        self._key, k = jax.random.split(self._key)
        self._start(self._seq, told, k)
        self._refit_told = told
        self._seq += 1

    def _start(self, seq: int, told: int, key) -> None:
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="hyperjax-bnn-fit")
        self._jobs.append((seq, told, key, self._executor.submit(self._job, seq, told, key)))

    def _job(self, seq: int, told: int, key) -> None:
        with self._lock:
            self._chain = (seq, self.bnn.state_dict())
        f = self._fit_on(key, told)
        with self._lock:
            self._done[seq] = f
            if f is not None:
                self._newest(f)
            self._chain = None

    def _finish_jobs(self, upto: int | None = None) -> None:
        """Waits for the started fits (those up to ``upto``); re-raises a fit's error."""
        for seq, _, _, fut in list(self._jobs):
            if upto is None or seq <= upto:
                fut.result()
        self._jobs = [j for j in self._jobs if not j[3].done()]

    def _posterior_for_ask(self) -> _Fit | None:
        """The posterior an ask uses: in a study (fits started by refit_async), the fit started
        before the newest one, waited for; else everything told, fitted now."""
        if self._seq == 0:
            post = self.fit()
            return None if post is None else _Fit(post, self.warp, self._fitted_on, self._lo)
        use = self._seq - 2
        t0 = time.perf_counter()
        if use >= 0:
            self._finish_jobs(upto=use)
        if use < 0 or self._done.get(use) is None:
            # that fit saw too few scores (or there is none): the study's first refills, the
            # largest wave under early stopping, wait for the newest fit instead
            use = self._seq - 1
            self._finish_jobs(upto=use)
        self.wait_seconds.append(time.perf_counter() - t0)
        with self._lock:
            for seq in [s for s in self._done if s < use]:
                del self._done[seq]
            return self._done.get(use)

    def predict(self, u: np.ndarray, budget: float | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Posterior ``(mean (n,), epistemic std (n,), noise scale (n,))`` at ``budget``
        (default: the target fidelity) for cube points ``u (n, d)``."""
        means, scales = self.draws(u, budget)
        return means.mean(0), means.std(0), scales.mean(0)

    def draws(self, u: np.ndarray, budget: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Posterior draws at ``budget`` (default: the target fidelity) for cube points
        ``u (n, d)``: means and noise scales ``(S, n)`` in the scores' units."""
        post = self.fit()
        if post is None:
            raise ValueError(f"bnn proposer: {self.min_observations} finite observations needed before predicting")
        return self._draws(_Fit(post, self.warp, self._fitted_on, self._lo), u, budget)

    def _draws(self, f: _Fit, u: np.ndarray, budget: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        means, scales = f.posterior.predict(self.inputs(u, budget or self.target, f.lo))
        return f.warp.inverse(means), scales * f.warp.slope(means)

    def recommend(self, budget: float | None = None) -> np.ndarray:
        """The told configuration with the highest posterior mean at ``budget`` (default: the
        target fidelity), as a cube point ``(d,)``. On noisy objectives this is the better pick
        than the best single observation, which favours lucky draws from noisy regions."""
        u, _, _ = self._data()
        if self.fit() is None:
            raise ValueError(f"bnn proposer: {self.min_observations} finite observations needed before recommending")
        if not len(u):  # a source alone: nothing of this task's was told to recommend
            raise ValueError("bnn proposer: recommend needs observations of the proposer's own task "
                             "(only a source's were given)")
        uniq = np.unique(u, axis=0)
        return uniq[int(np.argmax(self.predict(uniq, budget)[0]))]

    # -- proposals -----------------------------------------------------------------------------
    def _pool(self, u_obs: np.ndarray, mean_obs: np.ndarray) -> np.ndarray:
        cands = [self._draw(self.num_candidates)]
        if len(u_obs):
            top = u_obs[np.argsort(-mean_obs)[: self.num_top]]
            noise = self._rng.normal(scale=self.local_scale, size=(len(top), self.num_local, self.space.ndim))
            cands.append(np.clip(top[:, None, :] + noise, 0.0, 1.0).reshape(-1, self.space.ndim))
        return np.concatenate(cands)

    def ask(self, k: int, where: Mapping[str, Any] | None = None) -> np.ndarray:
        """``k`` cube points ``(k, d)``: the acquisition's batch. ``where`` (dimension name ->
        value) asks for the best configurations with those dimensions fixed (a study asks so
        for a free slot of a structural bucket none of the batch fell in); it is honoured when
        the posterior is used, not by the Sobol fallback."""
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
            raise ValueError(f"ask: k={k!r} must be an integer >= 0")
        fixed = self.space.fixed_columns(where)
        post = self._posterior_for_ask() if k else None
        if post is None:
            self.counts["fallback"] += k
            return super().ask(k)
        u_obs, _, _ = self._data()
        if self._source is not None:  # the source's configurations seed the local candidates too
            u_obs = np.concatenate([u_obs, self._source[0]])
        target = self.target
        uniq = np.unique(u_obs, axis=0)
        obs_means, _ = self._draws(post, uniq, target)
        obs_mean = obs_means.mean(0)
        pool = self._pool(uniq, obs_mean)
        for col, value in fixed:
            pool[:, col] = value
        keys = [config_key(self.space, row) for row in pool]
        fresh, seen_now = [], set()
        for i, key in enumerate(keys):
            if key not in self.seen and key not in seen_now:
                seen_now.add(key)
                fresh.append(i)
        pool = pool[fresh]
        keys = [keys[i] for i in fresh]
        means, _ = self._draws(post, pool, target)  # (S, C)
        means = np.where(np.isfinite(means), means, -np.inf)
        incumbent = float(obs_mean.max())
        if self.acquisition == "thompson":
            picks = self._thompson(means, k, pool)
        else:
            picks = self._qei(means, incumbent, k, pool)
        out = [pool[i] for i in picks]
        for i in picks:
            self.seen.add(keys[i])
        self.counts["surrogate"] += len(out)
        if len(out) < k:  # the pool ran dry: top up with fresh Sobol points
            self.counts["fallback"] += k - len(out)
            out.extend(super().ask(k - len(out)))
        return np.asarray(out, np.float64).reshape(k, self.space.ndim)

    def explore_near(self, u: np.ndarray, budget: float, free: np.ndarray | None = None, scale: float = 0.1,
                     candidates: int = 128, beta: float = 1.0) -> np.ndarray | None:
        """PB2's explore step: for each source point of ``u (R, d)``, the point among the source
        itself and ``candidates - 1`` Gaussian steps of ``scale`` on the ``free (d,)`` dimensions
        (clipped to the cube) with the highest upper confidence bound ``mean + beta * std`` of
        the score at ``budget``; each pick at least ``min_distance`` from the earlier ones
        (halved while impossible). ``(R, d)``, or ``None`` while there is no posterior (in a
        study: the fit started the tick before the last, as for ``ask``)."""
        post = self._posterior_for_ask()
        if post is None:
            return None
        u = np.atleast_2d(np.asarray(u, np.float64))
        r, d = u.shape
        free = np.ones(d, bool) if free is None else np.asarray(free, bool)
        steps = self._rng.normal(scale=scale, size=(r, candidates, d)) * free
        cands = np.clip(u[:, None, :] + steps, 0.0, 1.0)
        cands[:, 0] = u  # staying put is a candidate too
        flat = cands.reshape(-1, d)  # source j's candidates: rows j * candidates ...
        means, _ = self._draws(post, flat, budget)  # (S, R * C)
        ucb = means.mean(0) + beta * means.std(0)
        picks: list[int] = []
        for j in range(r):
            mine = slice(j * candidates, (j + 1) * candidates)
            radius = self.min_distance
            free_ = ~_blocked_by(flat, picks, radius)[mine]
            while not free_.any():  # at radius 0 only other sources' picks are blocked
                radius /= 2
                free_ = ~_blocked_by(flat, picks, radius if radius > 1e-6 else 0.0)[mine]
            row = np.where(free_ & np.isfinite(ucb[mine]), ucb[mine], -np.inf)
            picks.append(j * candidates + (int(np.argmax(row)) if np.isfinite(row).any() else 0))
        self.counts["explore"] = self.counts.get("explore", 0) + r
        return flat[picks]

    def _thompson(self, means: np.ndarray, k: int, pool: np.ndarray) -> list[int]:
        order = self._rng.permutation(means.shape[0])
        return spread_batch(lambda j, picks: means[order[j % len(order)]], pool, k, self.min_distance)

    def _qei(self, means: np.ndarray, incumbent: float, k: int, pool: np.ndarray) -> list[int]:
        base = np.full(means.shape[0], incumbent)

        def gain(j, picks):
            current = np.maximum(base, means[:, picks].max(1)) if picks else base
            return np.maximum(means, current[:, None]).mean(0) - current.mean()

        return spread_batch(gain, pool, k, self.min_distance)

    def importance(self, n: int = 2048, budget: float | None = None, seed: int = 0) -> Any:
        """Sobol indices of the posterior mean at ``budget`` (default: target fidelity) over
        the cube: see :func:`hyperjax.surrogate.importance.sobol_indices`."""
        from hyperjax.surrogate.importance import sobol_indices

        return sobol_indices(lambda u: self.predict(u, budget)[0], self.space, n=n, seed=seed)
