"""The final re-evaluation of the leaders (``hyperjax.study.selection``): its pure parts by hand,
and a finished study's choice recomputed from its store."""

from __future__ import annotations

import math

import jax
import numpy as np
import pytest

import hyperjax as hj
from hyperjax.config import tune_arguments
from hyperjax.population import get_runner
from hyperjax.study import selection
from hyperjax.study.records import Trial
from hyperjax.rng import as_key
from hyperjax.train import member_keys
from tests.conftest import SMALL_STUDY, expected_best


def _trial(i, status="completed", score=0.0, seeds=(0,), scores=None):
    t = Trial(id=i, config={}, u=np.zeros(1), bucket=0, seeds=seeds, status=status)
    t.final_score = score
    t.final_scores = list(scores if scores is not None else [score] * len(seeds))
    return t


def test_leaders_are_the_top_evaluated_trials_best_first():
    trials = [_trial(0, score=5.0), _trial(1, "evicted", score=99.0), _trial(2, score=7.0), _trial(3, score=7.0),
              _trial(4, "failed", score=50.0), _trial(5, "stopped", score=6.0), _trial(6, "running", score=80.0),
              _trial(7, score=math.nan), _trial(8, score=-1.0)]
    # evicted, failed, running and unevaluated trials never lead; ties: the earlier trial first
    assert selection.leaders(trials, "final", 3) == [2, 3, 5]
    assert selection.leaders(trials, "final", 100) == [2, 3, 5, 0, 8]
    assert selection.leaders(trials, "final", 0) == []
    # "lcb": the mean of the per-seed evaluations less their spread ranks them
    two = [_trial(0, score=10.0, seeds=(0, 1), scores=[0.0, 20.0]), _trial(1, score=8.0, seeds=(0, 1), scores=[8.0, 8.0])]
    assert selection.leaders(two, "final", 2) == [0, 1] and selection.leaders(two, "lcb", 2) == [1, 0]


def test_rounds_and_packing():
    assert selection.rounds(64, 16) == 4 and selection.rounds(65, 16) == 5 and selection.rounds(1, 16) == 1
    calls = selection.packing([7, 3, 9], 2, 4)
    # every leader once per round, rounds in turn, at most `slots` copies per call
    assert calls == [[(7, 0), (3, 0), (9, 0), (7, 1)], [(3, 1), (9, 1)]]
    assert selection.packing([], 4, 32) == []
    assert len(selection.packing(list(range(8)), 4, 32)) == 1  # the default on 32 slots: one call


def test_episode_keys_are_common_to_every_leader_and_fresh():
    key = jax.random.key(0)
    data = selection.episode_key_data(key, 3, 2)
    assert data.shape[:2] == (3, 2)
    keys = jax.random.key_data(selection.episode_keys(data, np.array([0, 1, 0, 2]), jax.random.key_impl(key)))
    rows = [tuple(np.asarray(k).ravel()) for k in keys]
    # member (slot j, seed s): the same episodes for the same (round, seed) in any slot ...
    assert rows[0] == rows[4] and rows[1] == rows[5]
    # ... and different ones for another round or another seed
    assert len({rows[0], rows[1], rows[2], rows[3], rows[6], rows[7]}) == 6
    # none is one of the study's own evaluation keys (or its training keys)
    train, ev = member_keys(key, 1, 2)
    study = {tuple(np.asarray(k).ravel()) for k in jax.random.key_data(jax.numpy.concatenate([train, ev]))}
    assert not study & set(rows)


def test_reevaluated_objective_and_pick():
    assert selection.reevaluated_objective("final", np.array([1.0, 3.0])) == 2.0
    assert selection.reevaluated_objective("lcb", np.array([1.0, 3.0])) == pytest.approx(2.0 - math.sqrt(2.0))
    assert selection.reevaluated_objective("lcb", np.array([4.0])) == 4.0  # one seed: no spread
    assert math.isnan(selection.reevaluated_objective("final", np.array([1.0, np.inf])))
    # the highest finite score; ties go to the earlier leader (the first evaluation's order)
    assert selection.pick([4, 2, 9], {4: 1.0, 2: 3.0, 9: 3.0}) == 2
    assert selection.pick([4, 2], {4: math.nan, 2: -5.0}) == 2
    assert selection.pick([4, 2], {4: math.nan}) is None
    # a configuration that diverged on a fresh seed (-inf) ranks below every finite score, but
    # when every leader did, the first evaluation's order decides
    assert selection.pick([4, 2], {4: -math.inf, 2: -500.0}) == 2
    assert selection.pick([4, 2], {4: -math.inf, 2: -math.inf}) == 4


def test_retrained_objective():
    runs = np.array([[1.0, 3.0], [5.0, 7.0]])  # (R, S)
    assert selection.retrained_objective("final", runs) == 4.0
    assert selection.retrained_objective("lcb", runs) == pytest.approx(4.0 - np.std([1, 3, 5, 7], ddof=1))
    assert selection.retrained_objective("final", np.array([[1.0], [np.nan]])) == -math.inf


def test_a_finished_study_chose_its_best_by_the_reevaluation(hypertrick_store):
    """The shared small study (6 slots, 2 evaluation episodes, 8 leaders on 8 fresh episodes):
    the re-evaluated trials are exactly the eight leaders by first evaluation; the best is the
    one of them that scored highest there; and the best's re-evaluation is reproduced from its
    stored parameters with the documented keys (its copies on the same episodes in any slot)."""
    res = hj.load_study(hypertrick_store)
    scored = [t for t in res.trials if t.scored]
    assert len(scored) > 8, "the study must have more evaluated trials than leaders"
    leaders = selection.leaders(res.trials, "final", 8)
    assert {t.id for t in res.trials if math.isfinite(t.reeval_score)} == set(leaders)
    assert all(len(res.trials[i].reeval_scores) == 1 for i in leaders)
    assert res.best is expected_best(res) and res.best.id in leaders
    assert res.best.reeval_score == max(res.trials[i].reeval_score for i in leaders)
    # recomputed: the best's members in every slot of a 6-member population, rounds 0..3
    rounds = selection.rounds(4 * SMALL_STUDY["eval_episodes"], SMALL_STUDY["eval_episodes"])
    assert rounds == 4
    runner = get_runner(res.best_agent)
    state = runner.place(jax.tree.map(lambda x: jax.numpy.repeat(x, 6, axis=0), res.best_state))
    k_study = jax.random.split(as_key(SMALL_STUDY["seed"], "seed"), 4)[3]  # as tune splits its key
    data = selection.episode_key_data(k_study, rounds, 1)
    keys = selection.episode_keys(data, np.array([0, 1, 2, 3, 0, 0]), jax.random.key_impl(k_study))
    out = np.asarray(runner.evaluate(keys, state, SMALL_STUDY["eval_episodes"]))[:rounds]
    assert float(out.mean()) == pytest.approx(res.best.reeval_score, rel=1e-6)


def test_retraining_the_leaders_on_fresh_seeds_chooses_the_configuration(tmp_path):
    """``reevaluate_seeds=2``: every leader's configuration is trained again from scratch on two
    fresh seeds for a whole trial; the best is the leader whose runs score highest; their env
    steps count against the budget, which is never exceeded, and the store keeps the scores."""
    config = dict(SMALL_STUDY, reevaluate=4, reevaluate_seeds=2)
    agent, space, kw = tune_arguments(config)
    store = str(tmp_path / "s")
    res = hj.tune(agent, space, store=store, **kw)
    leaders = [t for t in res.trials if t.reseed_scores]
    assert len(leaders) == 4 and {t.id for t in leaders} == {t.id for t in res.trials if math.isfinite(t.reeval_score)}
    for t in leaders:
        assert len(t.reseed_scores) == 2 and t.reseed_score == pytest.approx(np.mean(t.reseed_scores), rel=1e-12)
    assert res.best is max(leaders, key=lambda t: (t.reseed_score, -selection.leaders(res.trials, "final", 4).index(t.id)))
    # the retrained runs' env steps are the study's: 4 leaders x 2 runs x a whole trial
    retrained = 4 * 2 * SMALL_STUDY["trial_steps"]
    assert res.env_steps == sum(t.env_steps for t in res.trials) + retrained <= SMALL_STUDY["budget"]
    back = hj.load_study(store)
    assert back.best.id == res.best.id and back.summary()["best_reseed_score"] == res.best.reseed_score
    assert [t.reseed_scores for t in back.trials] == [t.reseed_scores for t in res.trials]


def test_default_choice_resolves_auto():
    """``"auto"``: 8 leaders retrained on 2 fresh runs each where that applies (an asynchronous
    scheduler, an objective the re-evaluation ranks) and costs at most a quarter of the budget;
    else neither. Numbers given are kept (``tune`` checks them)."""
    dc, auto = selection.default_choice, selection.AUTO
    kw = dict(asynchronous=True, objective="final", budget=64 * 1000, trial_steps=1000)
    assert dc(auto, auto, **kw) == (8, 2)  # 8 x 2 x 1000 = a quarter of the budget
    assert dc(auto, auto, **dict(kw, budget=64 * 1000 - 1)) == (0, 0)
    assert dc(auto, auto, **dict(kw, asynchronous=False)) == (0, 0)  # PBT, brackets
    assert dc(auto, auto, **dict(kw, objective="auc")) == (0, 0)
    assert dc(auto, auto, **dict(kw, objective="lcb")) == (8, 2)
    assert dc(0, auto, **kw) == (0, 0)
    assert dc(4, auto, **kw) == (4, 2)
    assert dc(4, auto, **dict(kw, budget=32 * 1000 - 1)) == (4, 0)  # 4 x 2 x 1000 > a quarter
    assert dc(auto, 0, **kw) == (0, 0)  # no retraining: no re-evaluation either (it picks policies)
    assert dc(auto, 3, **dict(kw, budget=1000)) == (8, 3)
    assert dc(5, 1, **dict(kw, asynchronous=False)) == (5, 1)


def test_auto_retrains_the_leaders_when_the_budget_affords_it(tmp_path):
    """``tune``'s defaults on a budget of 64 trials: the 8 leaders are retrained on 2 fresh seeds
    each and the best chosen by that; the store records ``"auto"`` (what was asked) and the
    result what ran."""
    from hyperjax.store import load_meta

    config = {k: v for k, v in SMALL_STUDY.items() if k != "reevaluate"}
    config.update(budget=64 * SMALL_STUDY["trial_steps"], max_trials=12)
    agent, space, kw = tune_arguments(config)
    store = str(tmp_path / "s")
    res = hj.tune(agent, space, store=store, **kw)
    assert res.selection == {"reevaluate": 8, "reevaluate_seeds": 2, "retrain_dropped": False}
    leaders = [t for t in res.trials if t.reseed_scores]
    assert len(leaders) == min(8, sum(t.scored for t in res.trials)) >= 2
    assert all(len(t.reseed_scores) == 2 for t in leaders)
    assert res.best in leaders and res.best.reseed_score == max(t.reseed_score for t in leaders)
    assert res.env_steps <= config["budget"]
    stored = load_meta(store)["config"]
    assert stored["reevaluate"] == stored["reevaluate_seeds"] == "auto"
    back = hj.load_study(store)
    assert back.selection == res.selection and back.summary()["selection"] == res.selection
    assert back.best.id == res.best.id


def test_auto_drops_the_retraining_that_would_take_too_long():
    """With ``max_seconds``, "auto" drops the retraining once it is expected to take more than a
    quarter of the limit (a whole trial of median ticks per call: judged from the third tick,
    or at the end from whatever ran); dropped, nothing is kept back and the state says so."""
    from hyperjax.proposers import make_proposer
    from hyperjax.study.engine import Study
    from hyperjax.study.policies import POLICIES
    from hyperjax.schedulers.specs import scheduler_spec
    from hyperjax.rng import numpy_rng
    from hyperjax.study.simulate import SPACE, SyntheticPool

    def study(share=0.25):
        pool = SyntheticPool(6, 1, 0.1, np.random.default_rng(0))
        st = Study(agent=None, space=SPACE, structural=(), buckets=[{}], pools=[pool],
                   proposer=make_proposer("sobol", SPACE, 0), num_phases=10, seeds=1, budget=10**6, max_seconds=100.0,
                   eval_episodes=1, base_hp={}, key=as_key(0), scheduler_name="hypertrick", reevaluate=8,
                   reevaluate_seeds=2, retrain_share=share)
        return st, POLICIES["asynchronous"](st, scheduler_spec("hypertrick"), None, numpy_rng(as_key(1)))

    st, policy = study()
    st.tick_seconds = [9.0, 3.0]  # the first tick compiles: 10 x 3 s = 30 s > 25 s, not judged yet
    assert not st.retraining_too_long() and st.retraining_too_long(final=True)
    st.tick_seconds = [9.0, 2.0, 2.5, 2.4]  # 10 x 2.4 s (the median after the first) = 24 s: within a quarter
    assert not st.retraining_too_long()
    st.tick_seconds = [9.0, 2.0, 2.6, 2.7]  # 10 x 2.6 s = 26 s
    assert st.retraining_too_long() and st.reserve_steps() == 8 * 2 * 10
    st.drop_retraining()
    assert st.reserve_steps() == 0 and st.reserve_seconds() == 0.0 and not st.retraining_too_long(final=True)
    assert st.final_choice() == {"reevaluate": 0, "reevaluate_seeds": 0, "retrain_dropped": True}
    other, other_policy = study()
    other.load_state_dict(st.state_dict(policy), other_policy, st.device_state())
    assert other.final_choice() == st.final_choice()
    never, _ = study(share=None)  # numbers given: never dropped
    never.tick_seconds = [9.0, 30.0, 30.0]
    assert not never.retraining_too_long(final=True)
