"""``tune(objective=...)``: what the scheduler, the proposer and the choice of the best optimise."""

from __future__ import annotations

import math

import numpy as np
import pytest

import hyperjax as hj
from hyperjax.dedup import DedupProposer
from hyperjax.space import Float, SearchSpace
from hyperjax.study.records import Trial, final_objective, phase_objective

AGENT = hj.PPO(env="CartPole-v1", num_envs=4, num_steps=16, num_minibatches=1, num_epochs=1, hidden=(16,))
SPACE = SearchSpace({"learning_rate": Float(1e-4, 1e-2, log=True), "gamma": Float(0.9, 0.999)})
PHASE = 4 * 16 * 4  # 4 updates per phase
KW = dict(phase_steps=PHASE, trial_steps=3 * PHASE, slots=4, eval_episodes=2, seed=5, budget=4 * 3 * PHASE * 2 * 2)


def test_objectives_by_hand():
    assert phase_objective("final", [1.0, 5.0], np.array([4.0, 6.0])) == 5.0
    assert phase_objective("auc", [1.0, math.nan, 5.0], np.array([4.0, 6.0])) == 3.0  # NaN phases skipped
    assert phase_objective("lcb", [1.0, 5.0], np.array([4.0, 6.0])) == pytest.approx(5.0 - math.sqrt(2.0))
    t = Trial(0, {}, np.zeros(1), 0, (0, 1), status="completed", curve=[1.0, 2.0, 6.0], final_score=10.0,
              final_scores=[8.0, 12.0])
    assert final_objective("final", t) == 10.0
    assert final_objective("auc", t) == 3.0
    assert final_objective("lcb", t) == pytest.approx(10.0 - math.sqrt(8.0))
    t.status = "evicted"  # not scored: no objective
    assert math.isnan(final_objective("final", t)) and math.isnan(final_objective("auc", t))


@pytest.mark.parametrize("kw, match", [
    (dict(objective="median"), "objective='median' is unknown; allowed: final, auc, lcb"),
    (dict(objective="lcb", seeds=1), "objective='lcb' needs seeds >= 2"),
])
def test_bad_objective_is_refused_first(kw, match):
    with pytest.raises(ValueError, match=match):
        hj.tune(AGENT, SPACE, **{**KW, **kw})


class Recording(DedupProposer):
    """Sobol-free: uniform draws from a fixed generator; records every score it is told."""

    def __init__(self, space):
        super().__init__(space)
        self.rng = np.random.default_rng(0)
        self.told: list[tuple[tuple, float, float]] = []

    def _draw(self, n):
        return self.rng.uniform(size=(n, self.space.ndim))

    def tell(self, u, scores, budgets):
        super().tell(u, scores, budgets)
        for row, s, b in zip(u, scores, budgets):
            self.told.append((tuple(np.round(row, 12)), float(s), float(b)))


@pytest.mark.parametrize("objective", ["auc", "lcb"])
def test_the_study_optimises_the_objective(objective, tmp_path):
    """The proposer is told the objective at every phase boundary, the best is the scored trial
    with the highest objective, and the store keeps the objective (read back, resumed)."""
    prop = Recording(SPACE)
    store = str(tmp_path / "s")
    res = hj.tune(AGENT, SPACE, scheduler="none", proposer=prop, objective=objective, seeds=2, store=store,
                  reevaluate=8, **KW)
    assert res.objective == objective
    by_u = {tuple(np.round(t.u, 12)): t for t in res.trials}
    told = 0
    for u, score, budget in prop.told:
        t = by_u[u]
        i = t.curve_steps.index(int(budget))
        want = phase_objective(objective, t.curve[: i + 1], np.asarray(t.seed_curve[i]))
        assert score == pytest.approx(want, rel=1e-9, abs=1e-9)
        told += 1
    assert told == sum(np.isfinite(t.curve).sum() for t in res.trials) > 0
    scored = [t for t in res.trials if t.scored]
    objs = [final_objective(objective, t) for t in scored]
    if objective == "auc":  # no re-evaluation: a greedy evaluation does not measure training returns
        assert all(math.isnan(t.reeval_score) for t in res.trials)
        assert res.best is scored[int(np.argmax(objs))] and res.best_objective == max(objs)
    else:  # the leaders re-evaluated on the objective: per-seed means, their mean less their spread
        leaders = [t for t in res.trials if math.isfinite(t.reeval_score)]
        assert len(leaders) == min(8, len(scored))
        for t in leaders:
            v = np.asarray(t.reeval_scores)
            assert len(v) == 2 and t.reeval_score == pytest.approx(v.mean() - v.std(ddof=1), rel=1e-9)
        assert res.best is max(leaders, key=lambda t: t.reeval_score)
    assert res.summary()["objective"] == objective
    if objective == "auc":
        # the curve's mean, not the greedy evaluation, ranks the trials here
        assert res.best_objective == pytest.approx(np.nanmean(res.best.curve))
    back = hj.load_study(store)
    assert back.objective == objective and back.best.id == res.best.id
    again = hj.tune(AGENT, SPACE, scheduler="none", proposer=Recording(SPACE), objective=objective, seeds=2,
                    store=store, reevaluate=8, **KW)  # the same configuration: the finished study, read back
    assert again.best.id == res.best.id
    with pytest.raises(ValueError, match="objective"):
        hj.tune(AGENT, SPACE, scheduler="none", proposer=Recording(SPACE), seeds=2, store=store, reevaluate=8, **KW)


def test_final_is_the_default_and_unchanged():
    # without the final re-evaluation (the default) the best is the highest first evaluation
    res = hj.tune(AGENT, SPACE, scheduler="none", **KW)
    assert res.objective == "final" and "objective" not in res.summary()
    assert res.best.final_score == max(t.final_score for t in res.trials if t.scored) == res.best_objective
    assert all(math.isnan(t.reeval_score) and not t.reeval_scores for t in res.trials)
