"""Model-based views of a study: hyperparameter importance and the surrogate's fit.

- With a BNN surrogate (the study's BNN proposer, or the BNN a curve-extrapolation scheduler
  reads), the proposer is restored on the host from its saved state (no device of the study is
  needed, nothing is refit: predictions use the posterior it had) and read as it is.
- Otherwise importance comes from a regression fit to the trials: see :func:`regression_importance`.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd

from hyperjax.reports.source import NotApplicable, StudyData
from hyperjax.space import SearchSpace

SOBOL_POINTS = 1024  # base points of the Sobol-index estimate: (2d + 2) * 1024 model evaluations


def restore_proposer(space: SearchSpace, surrogate: dict):
    """A ``BNNProposer`` restored from ``surrogate`` (``StudyData.surrogate``), holding only the
    observations its posterior was fit on, so that predicting never refits (no SVI program to
    compile): it predicts exactly as the study's proposer did after its last fit."""
    # NumPyro only for studies with a surrogate (as hyperjax.proposers does)
    from hyperjax.surrogate.proposer import BNNProposer

    state = dict(surrogate["state"])
    scores = np.asarray(state["history_score"], np.float64)
    budgets = np.asarray(state["history_budget"], np.float64)
    used = np.cumsum(np.isfinite(scores) & np.isfinite(budgets) & (budgets > 0))  # what fit() counts
    fitted = int(state["fitted_on"])
    cut = len(scores)
    if len(used) and 0 < fitted <= used[-1]:  # just past the fitted_on-th observation fit() used
        cut = int(np.searchsorted(used, fitted, side="left")) + 1
    for k in ("history_u", "history_score", "history_budget"):
        state[k] = np.asarray(state[k])[:cut]
    proposer = BNNProposer(space, seed=int(state["seed"]), target_budget=surrogate.get("target"), precompile=False)
    proposer.load_state_dict(state)
    return proposer


def fitted_set(proposer) -> set[tuple]:
    """Keys (:func:`observation_key`) of the observations the proposer's posterior was fit on."""
    return {observation_key(u, b) for u, b in zip(proposer.history_u, proposer.history_budget)}


def observation_key(u: np.ndarray, budget: float) -> tuple:
    return (*np.round(np.asarray(u, np.float64), 9).tolist(), float(budget))


# -- importance -------------------------------------------------------------------------------------
@dataclasses.dataclass
class Importance:
    """Sobol indices (``hyperjax.surrogate.importance.sobol_indices``'s table) and what they
    were computed from (``source``, a sentence for the figure's title)."""

    table: pd.DataFrame
    source: str


def importance(data: StudyData) -> Importance:
    """Hyperparameter importance: the BNN's Sobol indices at the full fidelity when the study
    has a fitted BNN surrogate, else :func:`regression_importance` (computed once per ``data``)."""
    return data.cached("importance", compute_importance)


def compute_importance(data: StudyData) -> Importance:
    if data.surrogate is not None:
        proposer = restore_proposer(data.result.space, data.surrogate)
        table = proposer.importance(n=SOBOL_POINTS, budget=proposer.target)
        when = "live" if data.surrogate["tick"] < 0 else f"snapshot of tick {data.surrogate['tick']}"
        return Importance(table, f"BNN posterior mean at {proposer.target:,.0f} env steps "
                                 f"({len(proposer.history_score)} observations, {when})")
    return regression_importance(data)


def min_trials(space: SearchSpace) -> int:
    """Trials a regression importance needs: ``max(8, 2d + 2)`` (the BNN proposer's threshold)."""
    return max(8, 2 * space.ndim + 2)


def phase_counts(data: StudyData) -> dict[int, int]:
    """Trials with a finite score at each phase (counted from the start of the lineage, 1-based)."""
    out: dict[int, int] = {}
    for t in data.result.trials:
        for i, c in enumerate(t.curve):
            if math.isfinite(c):
                out[t.start_phase + i + 1] = out.get(t.start_phase + i + 1, 0) + 1
    return out


def phase_scores(data: StudyData, need: int) -> tuple[int, np.ndarray, np.ndarray]:
    """The deepest phase (counted from the start of the lineage, 1-based) at which at least
    ``need`` trials have a finite score: ``(phase, configurations' cube points (n, d), scores (n,))``.
    Phase 0 and empty arrays if there is none."""
    space = data.result.space
    at: dict[int, list[tuple[dict, float]]] = {}
    for t in data.result.trials:
        for i, c in enumerate(t.curve):
            if math.isfinite(c):
                at.setdefault(t.start_phase + i + 1, []).append((t.config, c))
    for phase in sorted(at, reverse=True):
        if len(at[phase]) >= need:
            cfgs = [cfg for cfg, _ in at[phase]]
            u = space.encode({n: [c[n] for c in cfgs] for n in space.names})
            return phase, u, np.asarray([c for _, c in at[phase]], np.float64)
    return 0, np.zeros((0, space.ndim)), np.zeros(0)


def snap(space: SearchSpace, u: np.ndarray) -> np.ndarray:
    """Cube points ``(n, d)`` moved to the point their decoded configuration encodes to (integer
    and choice cells to their centres): a model of configurations is a function of those."""
    dec = space.decode(u)
    return space.encode({n: list(dec[n]) if dec[n].dtype == object else dec[n] for n in space.names})


def cross_validated_fit(x: np.ndarray, y: np.ndarray, folds: int = 5, seed: int = 0):
    """A thin-plate-spline RBF regression of ``y (n,)`` on ``x (n, F)`` (scipy's
    ``RBFInterpolator`` with a linear trend), its smoothing chosen by ``folds``-fold cross
    validation. Returns ``(model on all data, cross-validated R^2)``."""
    from scipy.interpolate import RBFInterpolator

    n = len(y)
    mean, std = float(y.mean()), float(y.std()) or 1.0
    z = (y - mean) / std
    fold = np.random.default_rng(seed).permutation(n) % min(folds, n)
    best = (-math.inf, None)
    # large smoothing tends to the linear least-squares fit, small to an interpolant of the noise
    for s in np.logspace(-3, 3, 13):
        pred = np.empty(n)
        try:
            for k in range(fold.max() + 1):
                train, test = fold != k, fold == k
                pred[test] = RBFInterpolator(x[train], z[train], smoothing=s)(x[test])
        except (np.linalg.LinAlgError, ValueError):  # a fold too small for the linear trend
            continue
        r2 = 1.0 - float(np.sum((z - pred) ** 2)) / max(float(np.sum((z - z.mean()) ** 2)), 1e-12)
        if r2 > best[0]:
            best = (r2, s)
    if best[1] is None:
        return None, -math.inf
    model = RBFInterpolator(x, z, smoothing=best[1])
    return (lambda q: model(q) * std + mean), best[0]


def regression_importance(data: StudyData, min_r2: float = 0.05) -> Importance:
    """Importance from the trial table: Sobol indices of a regression of the trials' scores on
    their configurations.

    The scores are taken at one fidelity, the deepest phase that at least :func:`min_trials`
    trials reached (early-stopped trials included up to there; mixing phases would read a
    trial's fidelity as a hyperparameter effect). The model is a smoothed thin-plate-spline
    RBF regression (``scipy.interpolate.RBFInterpolator``; unordered choices one-hot, numbers
    and ordered choices by their cube coordinate, as the BNN sees them), smoothing chosen by
    5-fold cross validation; its Sobol indices over the cube are those of a smooth fit, not of
    the noise. Raises :class:`NotApplicable` with too few trials, or when the cross-validated
    R^2 is below ``min_r2`` (the hyperparameters do not explain the scores better than their
    mean: any importance would be noise).
    """
    from hyperjax.surrogate.importance import sobol_indices
    from hyperjax.surrogate.proposer import features

    space = data.result.space
    need = min_trials(space)
    phase, u, y = phase_scores(data, need)
    if phase == 0:
        most = max(phase_counts(data).values(), default=0)
        raise NotApplicable(f"too few trials for importance: {need} trials with a score at one phase needed, "
                            f"at most {most} so far")
    x = features(space, u)
    model, r2 = cross_validated_fit(x, y)
    if model is None or r2 < min_r2:
        raise NotApplicable(f"the hyperparameters do not explain the scores at phase {phase} "
                            f"({len(y)} trials, cross-validated R^2 = {r2:.2f}): importance would be noise")
    table = sobol_indices(lambda q: model(features(space, snap(space, q))), space, n=SOBOL_POINTS)
    return Importance(table, f"RBF regression on {len(y)} trials' scores at phase {phase} "
                             f"(cross-validated R\u00b2 = {r2:.2f})")


# -- the surrogate's fit ----------------------------------------------------------------------------
def predicted_vs_observed(data: StudyData) -> tuple[pd.DataFrame, str]:
    """The BNN surrogate's predictions at every observed (configuration, fidelity) of the study
    (computed once per ``data``).

    Returns ``(table, source)``: one row per finite observation: ``trial``, ``phase``,
    ``env_steps`` (the fidelity told), ``observed``, ``predicted`` (posterior mean), ``std``
    (epistemic: std of the posterior draws' means), ``noise`` (the predicted noise scale),
    ``in_fit`` (the posterior was fit on it; False: it came later, a held-out check); and a
    sentence naming the posterior. Raises :class:`NotApplicable` without a fitted BNN.
    """
    return data.cached("predicted_vs_observed", compute_predicted_vs_observed)


def compute_predicted_vs_observed(data: StudyData) -> tuple[pd.DataFrame, str]:
    if data.surrogate is None:
        if data.uses_surrogate:
            raise NotApplicable("the BNN surrogate had not been fitted by the last snapshot of the study")
        raise NotApplicable("the study has no BNN surrogate", kind=True)
    proposer = restore_proposer(data.result.space, data.surrogate)
    fitted = fitted_set(proposer)
    rows = []
    for t in data.result.trials:
        for i, (s, c) in enumerate(zip(t.curve_steps, t.curve)):
            if math.isfinite(c):
                rows.append({"trial": t.id, "phase": t.start_phase + i + 1, "env_steps": int(s), "observed": float(c),
                             "u": t.u, "in_fit": observation_key(t.u, s) in fitted})
    if not rows:
        raise NotApplicable("the study has no finite observation yet")
    df = pd.DataFrame(rows)
    for col in ("predicted", "std", "noise"):
        df[col] = np.nan
    for steps, idx in df.groupby("env_steps").groups.items():
        u = np.stack(df.loc[idx, "u"].to_list())
        mean, std, noise = proposer.predict(u, float(steps))
        df.loc[idx, "predicted"], df.loc[idx, "std"], df.loc[idx, "noise"] = mean, std, noise
    when = "live" if data.surrogate["tick"] < 0 else f"as of the snapshot of tick {data.surrogate['tick']}"
    source = f"BNN posterior fit on {len(proposer.history_score)} observations, {when}"
    return df.drop(columns="u"), source


def fit_summary(df) -> str:
    """RMSE and the share of observations inside the 95% predictive interval, in and out of fit."""
    parts = []
    for flag, label in ((True, "fitted on"), (False, "after the fit")):
        g = df[df["in_fit"] == flag]
        if len(g):
            rmse = math.sqrt(float(np.mean((g["predicted"] - g["observed"]) ** 2)))
            half = 2 * np.sqrt(g["std"] ** 2 + g["noise"] ** 2)
            cover = float(np.mean(np.abs(g["observed"] - g["predicted"]) <= half))
            parts.append(f"{label}: {len(g)} obs., RMSE {rmse:.3g}, {100 * cover:.0f}% inside the 95% interval")
    return "; ".join(parts)
