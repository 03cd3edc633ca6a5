"""Transfer from a similar environment: a source task in the BNN (task feature, per-task
standardisation), the source's best configurations proposed first, reading a finished study as
a prior, and the probe-based similarity of two environments.

Surrogate fits here use FAST's program on a 1-d space with the task feature: 3 inputs
(coordinate, fidelity, task) at capacity 64, the program tests/test_surrogate.py's 3-feature
fits share, so a whole-suite run compiles nothing new for them (see that file's note)."""

import math

import numpy as np
import pytest

import hyperjax as hj
from hyperjax.dedup import config_key
from hyperjax.proposers import SobolProposer
from hyperjax.space import Choice, Float, Int, SearchSpace
from hyperjax.store.serialize import dumps, loads
from hyperjax.study.records import StudyResult, Trial
from hyperjax.surrogate import BNN, BNNConfig, BNNProposer
from hyperjax.surrogate.proposer import Warp, features, task_warp
from hyperjax.transfer import FirstProposals, Source, similarity, source_observations, transfer_proposer

FAST = BNNConfig(svi_steps=1500)
LINE = SearchSpace({"a": Float(0, 1)})
OPTIMUM = 0.3


def _f(u):
    """The shared shape: one bump at ``OPTIMUM``, height 1."""
    return np.exp(-(((np.asarray(u)[:, 0] - OPTIMUM) / 0.15) ** 2))


def _source(n=40, seed=0):
    u = np.random.default_rng(seed).uniform(size=(n, 1))
    return u, _f(u), np.full(n, 1e5)


def _target(u):
    return 50.0 + 200.0 * _f(u)  # the same optimum on another scale, shifted


class _FixedHistoryBNN(BNN):
    """A BNN that does not compile the next data capacity ahead (as in tests/test_surrogate.py):
    these histories stay within capacity 64, and the ahead-of-need compile of 128 that a fit of
    more than 32 observations queues would only cost CPU."""

    def prepare(self, n: int, features: int) -> None:
        pass


def _bnn(seed, source=True, **kw):
    prop = BNNProposer(LINE, seed=seed, config=FAST, precompile=False, target_budget=1e5, **kw)
    prop.bnn = _FixedHistoryBNN(FAST)
    if source:
        prop.add_source(*_source())
    return prop


# -- the BNN with a source task --------------------------------------------------------------------
def test_the_source_guides_the_first_asks():
    """Source f(u), target 50 + 200 f(u): with the source added, the first two asks (before any
    target score, then with 3 of them: fewer than the 4 the surrogate needs on its own) land
    nearer the shared optimum than without it (the Sobol fallback, spread over the line), for
    every seed and by half on average. Batches are not spread (min_distance 0): this measures
    where the posterior points, not the spacing Thompson batches keep."""
    dist = {True: [], False: []}
    for seed in (0, 1, 2):
        for with_source in (True, False):
            prop = _bnn(seed, with_source, min_distance=0.0)
            u1 = prop.ask(3)
            prop.tell(u1, _target(u1), np.full(3, 1e5))
            u2 = prop.ask(4)
            dist[with_source].append(np.abs(np.concatenate([u1, u2])[:, 0] - OPTIMUM).mean())
            assert prop.counts == ({"surrogate": 7, "fallback": 0} if with_source else {"surrogate": 0, "fallback": 7})
    # measured: 0.09, 0.14, 0.15 with the source; 0.24, 0.31, 0.31 without
    assert all(a < b for a, b in zip(dist[True], dist[False])), dist
    assert np.mean(dist[True]) < 0.6 * np.mean(dist[False]), dist


def test_predictions_are_in_the_targets_units_at_task_zero():
    prop = _bnn(3)
    x = prop.inputs(np.array([[0.2], [0.7]]), 1e5)
    assert x.shape == (2, 3) and np.all(x[:, -1] == 0.0)  # coordinate, fidelity, task 0
    u = np.random.default_rng(4).uniform(size=(12, 1))
    prop.tell(u, _target(u), np.full(12, 1e5))
    grid = np.linspace(0.05, 0.95, 10)[:, None]
    mean, _, _ = prop.predict(grid)
    truth = _target(grid)
    # the target's own units (50..250), not the standardised ones the fit shares with the source
    assert np.abs(mean - truth).mean() < 30, (mean, truth)
    assert np.corrcoef(mean, truth)[0, 1] > 0.9
    assert prop.warp == task_warp(_target(u))  # the target's scores, warped on their own


def test_without_a_source_fits_see_what_they_saw_before():
    """No add_source: inputs without a task column, scores warped as ever (Warp.fit), the
    saved state without a source entry, and the same proposals as a fresh proposer's."""
    rng = np.random.default_rng(5)
    u = rng.uniform(size=(6, 1))
    y = _target(u)
    budgets = np.array([2.5e4, 5e4, 1e5, 1e5, 5e4, 1e5])
    prop = _bnn(0, source=False)
    prop.tell(u, y, budgets)
    seen = {}

    class Stop(Exception):
        pass

    def record(key, x, w):
        seen["x"], seen["w"] = x, w
        raise Stop

    prop.bnn.fit = record
    with pytest.raises(Stop):
        prop._fit_on(None, len(y))
    z = (np.log(budgets) - np.log(2.5e4)) / (np.log(1e5) - np.log(2.5e4))
    np.testing.assert_allclose(seen["x"], np.concatenate([features(LINE, u), z[:, None]], axis=1))
    np.testing.assert_allclose(seen["w"], Warp.fit(y)(y))
    assert "source" not in prop.state_dict() and prop.source is None
    a, b = _bnn(7, source=False), _bnn(7, source=False)
    np.testing.assert_array_equal(a.ask(5), b.ask(5))


def test_a_saved_proposer_with_a_source_resumes_exactly():
    prop = _bnn(1)
    u = prop.ask(4)
    prop.tell(u, _target(u), np.full(4, 1e5))
    state = loads(dumps(prop.state_dict()))  # plain data, as a store keeps it
    resumed = _bnn(1, source=False)  # the source comes back from the state
    resumed.load_state_dict(state)
    np.testing.assert_array_equal(resumed.source[0], prop.source[0])
    v = prop.ask(4)
    np.testing.assert_array_equal(v, resumed.ask(4))
    with pytest.raises(ValueError, match="add_source: the proposer has fitted"):
        prop.add_source(*_source())


def test_add_source_checks_its_arguments():
    prop = _bnn(0, source=False)
    u, y, b = _source(5)
    with pytest.raises(ValueError, match=r"u must have shape \(n, 1\)"):
        prop.add_source(u[:, 0], y, b)
    with pytest.raises(ValueError, match=r"scores must have shape \(5,\)"):
        prop.add_source(u, y[:3], b)
    with pytest.raises(ValueError, match="budgets must be finite and > 0"):
        prop.add_source(u, y, np.zeros(5))
    with pytest.raises(ValueError, match="none of the 5 scores is finite"):
        prop.add_source(u, np.full(5, np.nan), b)
    y[0] = np.nan  # a failed trial's: left out
    prop.add_source(u, y, b)
    assert len(prop.source[1]) == 4
    assert task_warp(np.array([3.0])) == Warp(3.0, 1.0) and task_warp(np.array([1.0, 3.0])) == Warp(2.0, 1.0)


# -- the source's best configurations first --------------------------------------------------------
SPACE = SearchSpace({"lr": Float(1e-4, 1e-2, log=True), "n": Choice((16, 32)), "k": Int(1, 4)})


def test_first_proposals_come_first_then_the_inners_never_twice():
    # the first points are the inner's own next Sobol points: without registering them with the
    # inner (mark_seen) it would propose them again
    first = SobolProposer(SPACE, seed=0)._draw(3)
    prop = FirstProposals(SobolProposer(SPACE, seed=0), np.concatenate([first, first[:1]]))  # a repeat: dropped
    assert prop.remaining == 3
    a = prop.ask(2)
    np.testing.assert_array_equal(a, first[:2])
    b = prop.ask(5)
    np.testing.assert_array_equal(b[0], first[2])
    assert prop.counts == {"transfer": 3} and prop.remaining == 0
    c = prop.ask(8)
    keys = [config_key(SPACE, row) for row in np.concatenate([a, b, c])]
    assert len(set(keys)) == len(keys) == 15
    # a study drops proposals it did not run: first points come back first, others go to the inner
    prop.forget(np.concatenate([a[1:], c[:1]]))
    assert config_key(SPACE, c[0]) not in prop.inner.seen  # the inner forgot it: it may propose it again
    assert config_key(SPACE, first[1]) in prop.inner.seen  # the inner never proposes a first point
    d = prop.ask(2)
    np.testing.assert_array_equal(d[0], first[1])
    assert prop.ask(0).shape == (0, 3)


def test_first_proposals_within_a_bucket_and_what_a_study_looks_up():
    class Learner(SobolProposer):
        learns = True
        asks_within = True

        def ask(self, k, where=None):
            self.where = where
            return super().ask(k)

        def refit_async(self):
            self.refits = getattr(self, "refits", 0) + 1

    first = SPACE.encode([{"lr": 1e-3, "n": 16, "k": 1}, {"lr": 2e-3, "n": 32, "k": 2}])
    prop = FirstProposals(Learner(SPACE, seed=1), first)
    u = prop.ask(2, where={"n": 32})
    np.testing.assert_array_equal(u[0], first[1])
    assert prop.inner.where == {"n": 32}
    assert prop.learns and prop.asks_within and hasattr(prop, "refit_async") and hasattr(prop, "state_dict")
    prop.refit_async()
    assert prop.inner.refits == 1
    with pytest.raises(ValueError, match="where names 'm'"):
        prop.ask(1, where={"m": 1})
    plain = FirstProposals(SobolProposer(SPACE, seed=1), first)
    assert not getattr(plain, "learns", False) and not hasattr(plain, "refit_async")

    class Stateless:  # a user's proposer without state: the study re-tells it on resume instead
        space = SPACE

        def ask(self, k):
            return np.full((k, 3), 0.5)

        def tell(self, u, scores, budgets):
            pass

    assert not hasattr(FirstProposals(Stateless(), first), "state_dict")


def test_first_proposals_resume_exactly():
    first = SPACE.sobol(4, seed=9)

    def new():
        return FirstProposals(SobolProposer(SPACE, seed=2), first)

    prop = new()
    prop.ask(3)
    prop.forget(first[1:2])  # given back: proposed again after resuming
    state = loads(dumps(prop.state_dict()))
    assert "seen" in state and "first_proposals" in state  # the inner's state, one entry added
    resumed = new()
    resumed.load_state_dict(state)
    np.testing.assert_array_equal(prop.ask(6), resumed.ask(6))
    assert prop.counts == resumed.counts


# -- reading a finished study ------------------------------------------------------------------------
def _result(space, trials):
    return StudyResult(trials=trials, best=None, best_state=None, best_agent=None, scheduler="asha", space=space,
                       slots=2, seconds=1.0, env_steps=0, ticks=1, found_best_at=0.0, timing={},
                       slot_utilization={}, buckets=[])


def _trial(i, u, curve, final=math.nan, status="completed"):
    return Trial(id=i, config={}, u=np.asarray(u, np.float64), bucket=0, seeds=(0,), status=status,
                 curve=list(curve), curve_steps=[100 * (j + 1) for j in range(len(curve))], final_score=final)


def test_source_observations_of_a_hand_made_study():
    space = SearchSpace({"a": Float(0, 1), "b": Choice((1, 2, 3))})
    swapped = SearchSpace({"b": Choice((1, 2, 3)), "a": Float(0, 1)})  # the same dimensions, other order
    trials = [_trial(0, [0.5, 0.1], [1.0, math.nan, 3.0], final=3.0),
              _trial(1, [0.9, 0.2], [2.0], final=5.0),
              _trial(2, [0.5, 0.1], [4.0], final=9.0, status="failed"),  # not scored: not among the best
              _trial(3, [0.1, 0.9], [0.5, 0.7], status="evicted")]
    src = source_observations(_result(swapped, trials), space, top=4)
    np.testing.assert_array_equal(src.u[0], [0.1, 0.5])  # columns in space's order
    np.testing.assert_array_equal(src.scores, [1.0, 3.0, 2.0, 4.0, 0.5, 0.7])
    np.testing.assert_array_equal(src.budgets, [100, 300, 100, 100, 100, 200])
    np.testing.assert_array_equal(src.best, [[0.2, 0.9], [0.1, 0.5]])
    np.testing.assert_array_equal(src.best_scores, [5.0, 3.0])
    other = SearchSpace({"a": Float(0, 2), "c": Choice((1, 2, 3))})
    with pytest.raises(ValueError, match=r"a\.high: 1 -> 2.*b: in the source's space only.*c: in space only") as e:
        source_observations(_result(space, trials), other)
    assert "source_observations" in str(e.value)
    with pytest.raises(ValueError, match="no finite observation"):
        source_observations(_result(space, [_trial(0, [0.5, 0.5], [math.nan])]), space)
    with pytest.raises(ValueError, match="must be a StudyResult or a store directory"):
        source_observations(42, space)


def test_a_finished_study_as_a_prior(hypertrick_store, tmp_path):
    res = hj.load_study(hypertrick_store, params=False)
    src = source_observations(hypertrick_store, res.space)
    n = sum(int(np.isfinite(t.curve).sum()) for t in res.trials)
    assert src.u.shape == (n, 2) and src.scores.shape == src.budgets.shape == (n,) and n > 0
    assert set(src.budgets) <= {256.0, 512.0, 768.0, 1024.0}
    scored = sorted((t for t in res.trials if t.scored), key=lambda t: -t.final_score)
    np.testing.assert_array_equal(src.best[0], scored[0].u)
    assert len(src.best) == min(4, len(scored)) and np.all(np.diff(src.best_scores) <= 0)

    # a BNN proposer is given the observations (budgets rescaled to its target) and wrapped
    bnn = BNNProposer(res.space, seed=0, config=FAST, precompile=False, target_budget=2048.0)
    prop = transfer_proposer(bnn, src, first=2)
    assert isinstance(prop, FirstProposals) and prop.inner is bnn and len(prop.first) == 2
    assert len(bnn.source[1]) == n and bnn.source[2].max() == 2048.0
    # a study with it proposes the source's best configurations first
    space = res.space
    agent = hj.PPO(env="CartPole-v1", num_envs=4, num_steps=16, num_minibatches=1, num_epochs=1, hidden=(16,))
    kw = dict(budget=6 * 256, phase_steps=256, trial_steps=256, slots=6, scheduler="asha", eval_episodes=2, seed=0)
    store = str(tmp_path / "target")
    out = hj.tune(agent, space, transfer_from=hypertrick_store, store=store, **kw)
    np.testing.assert_array_equal(np.stack([t.u for t in out.trials[:len(src.best)]]), src.best)
    assert out.proposer.counts["transfer"] == len(src.best)
    keys = [config_key(space, t.u) for t in out.trials]
    assert len(set(keys)) == len(keys)
    # the store records where it transferred from; the same call reads the finished study back
    assert hj.store.load_meta(store)["config"]["transfer_from"] == hypertrick_store
    assert [t.id for t in hj.tune(agent, space, transfer_from=hypertrick_store, store=store, **kw).trials] == \
        [t.id for t in out.trials]
    # another space is refused before anything trains, naming the difference
    other = SearchSpace({"learning_rate": Float(1e-4, 1e-1, log=True), "gamma": Choice((0.9, 0.99, 0.999),
                                                                                        ordered=True)})
    with pytest.raises(ValueError, match="learning_rate.high"):
        hj.tune(agent, other, transfer_from=hypertrick_store, **kw)


# -- similarity ----------------------------------------------------------------------------------
AGENT = hj.PPO(env="CartPole-v1", num_envs=4, num_steps=16, num_minibatches=1, num_epochs=1, hidden=(16,))
PROBE_SPACE = SearchSpace({"learning_rate": Float(1e-4, 1e-1, log=True), "gamma": Float(0.8, 0.999),
                           "num_steps": Choice((16, 32))})  # structural: kept at the agent's 16


def test_similarity_of_an_environment_with_itself():
    """The same environment, probes and seeds on both sides give the same scores in the same
    order: rho is exactly 1 (a pairing or seeding mistake would break it)."""
    out = similarity(AGENT, "CartPole-v1", "CartPole-v1", PROBE_SPACE, probes=5, total_timesteps=1024, seeds=2,
                     eval_episodes=2)
    assert [sorted(p) for p in out["probes"]] == [["gamma", "learning_rate"]] * 5
    np.testing.assert_array_equal(out["source_scores"], out["target_scores"])
    assert len(np.unique(out["source_scores"])) > 1, out["source_scores"]  # a ranking to compare
    assert out["spearman"] == pytest.approx(1.0, abs=1e-12) and out["likely_to_help"] and "likely to help" in out["summary"]


def test_similarity_checks_before_training():
    with pytest.raises(ValueError, match="probes=2 must be an integer >= 3"):
        similarity(AGENT, "CartPole-v1", "CartPole-v1", PROBE_SPACE, probes=2)
    with pytest.raises(ValueError, match="target_env='NoSuchEnv-v0'"):
        similarity(AGENT, "CartPole-v1", "NoSuchEnv-v0", PROBE_SPACE)
    with pytest.raises(ValueError, match="no traced hyperparameter"):
        similarity(AGENT, "CartPole-v1", "CartPole-v1", SearchSpace({"num_steps": Choice((16, 32))}))
    with pytest.raises(ValueError, match="total_timesteps=10 must be an integer >= 64"):
        similarity(AGENT, "CartPole-v1", "CartPole-v1", PROBE_SPACE, total_timesteps=10)
    with pytest.raises(ValueError, match="transfer_proposer: first=-1"):
        transfer_proposer(SobolProposer(LINE), Source(*_source(), np.zeros((0, 1)), np.zeros(0)), first=-1)
