"""Policies alone: fabricated arrivals, no agent, no device state; and state_dict round trips of
every stateful host object a study saves."""

import types

import numpy as np
import pytest

from hyperjax.proposers import RandomProposer, SobolProposer
from hyperjax.rng import generator_state, load_generator
from hyperjax.schedulers import HyperTrick, SuccessiveHalving
from hyperjax.space import Choice, Float, SearchSpace
from hyperjax.store import serialize
from hyperjax.study.decisions import Action, Arrival
from hyperjax.study.policies import AsyncPolicy, BracketPolicy, PBTPolicy
from hyperjax.study.records import Trial
from hyperjax.schedulers import PBT

SPACE = SearchSpace({"lr": Float(1e-4, 1e-2, log=True), "gamma": Choice((0.9, 0.99), ordered=True)})


def _stub(num_phases=2, slots=4, budget=10**6, trials=None):
    """The part of a study a policy reads: one bucket of ``slots`` slots, 100 steps a phase."""
    pool = types.SimpleNamespace(index=0, slots=slots, steps=100, trial=np.full(slots, -1), size=slots,
                                 compact_sizes=())
    st = types.SimpleNamespace(num_phases=num_phases, pools=[pool], seeds=1, budget=budget, num_slots=slots, tick=0,
                               trials=trials if trials is not None else [], exhausted=False, used=0, max_seconds=None,
                               space=SPACE, structural=(), buckets=[{}], key=None)
    st.committed = lambda: 0
    st.time_fits = lambda ticks: True
    st.reserve_steps = lambda: 0  # no retraining of the leaders at the end
    st.deadline = lambda: None
    u = SobolProposer(SPACE, seed=0).ask(64)
    queue = list(zip(u, SPACE.configs(u)))
    st.next_config = lambda bucket: queue.pop(0)
    st.take_proposals = lambda k: [queue.pop(0) for _ in range(k)]
    return st


def _arrive(trial, phases, score, failed=False, slot=0):
    return Arrival(trial=trial, pool=0, slot=slot, phases=phases, score=score, failed=failed)


def test_hypertrick_decisions_on_fabricated_arrivals():
    st = _stub()
    pol = AsyncPolicy(st, HyperTrick(r=0.5), max_trials=4, rng=np.random.default_rng(0))
    starts = pol.fill(st)
    assert [d.action for d in starts] == [Action.START] * 4 and [d.trial for d in starts] == [0, 1, 2, 3]
    assert [d.slot for d in starts] == [0, 1, 2, 3]
    # N = 4, r = 0.5: floor(4 (1 - sqrt .5)) = 1 trial continues unconditionally at phase 1;
    # later ones must reach the sqrt(.5) quantile of the phase-1 scores so far (themselves included).
    decide = lambda *a: pol.decide(st, [_arrive(*a)])[0].action  # noqa: E731
    assert decide(0, 1, 1.0) is Action.CONTINUE  # the first arrival
    assert decide(1, 1, 0.0) is Action.EVICT  # quantile(.707) of [1, 0] = 0.707 > 0
    assert decide(2, 1, 5.0) is Action.CONTINUE
    assert decide(3, 1, 0.0, True) is Action.FAIL  # a failed member fails, whatever the rule
    # the last phase: the trial has spent its budget and completes, even with the worst score
    assert decide(0, 2, -100.0) is Action.COMPLETE
    d = pol.decide(st, [_arrive(2, 2, 1.0, slot=2)])[0]
    assert (d.action, d.trial, d.slot, d.pool) == (Action.COMPLETE, 2, 2, 0)
    # N trials started: no more
    st.trials = [None] * 4
    assert pol.fill(st) == []


def test_async_policy_state_dict_round_trip():
    st = _stub(num_phases=3)
    a = AsyncPolicy(st, HyperTrick(r=0.3), max_trials=None, rng=np.random.default_rng(5))
    rng = np.random.default_rng(1)
    arrivals = lambda: [_arrive(i, int(rng.integers(1, 3)), float(rng.normal()), slot=i) for i in range(4)]  # noqa: E731
    for _ in range(5):
        a.decide(st, arrivals())
    b = AsyncPolicy(st, HyperTrick(r=0.3), max_trials=None, rng=np.random.default_rng(99))
    b.load_state_dict(serialize.loads(serialize.dumps(a.state_dict())))
    for _ in range(5):
        arr = arrivals()
        assert a.decide(st, arr) == b.decide(st, arr)


def test_successive_halving_decisions():
    st = _stub(num_phases=2, slots=2, budget=100 * 8)
    pol = BracketPolicy(st, SuccessiveHalving(eta=2), max_trials=None)
    out = pol.fill(st)
    queued = [d for d in out if d.action is Action.QUEUE]
    placed = [d for d in out if d.action is Action.RESUME]
    assert len(queued) >= 2 and [d.trial for d in queued] == list(range(len(queued)))
    assert [(d.trial, d.slot) for d in placed] == [(0, 0), (1, 1)]  # the first two take the slots
    st.trials = [Trial(id=d.trial, config=d.config, u=d.u, bucket=0, seeds=(0,)) for d in queued]
    n = len(queued)
    # rung 1 at 1 phase: every arrival pauses (freeing its slot) until the whole rung reported
    reported = 0
    while placed:
        for d in placed:
            out = pol.decide(st, [_arrive(d.trial, 1, float(d.trial), slot=d.slot)])[0]
            assert out.action is Action.PAUSE
            st.trials[d.trial].status = "paused"
            reported += 1
            if reported < n:
                assert pol.after_tick(st) == []
        placed = pol.fill(st)
        assert all(d.action is Action.RESUME and d.trial < n for d in placed)
    assert reported == n
    ends = pol.after_tick(st)  # the rung is complete: the bottom half is evicted
    assert {d.trial for d in ends} == set(range(n - n // 2)) and all(d.action is Action.EVICT for d in ends)
    st.pools[0].trial[:] = -1
    back = pol.fill(st)  # the top half resumes
    assert {d.trial for d in back} <= set(range(n - n // 2, n)) and all(d.action is Action.RESUME for d in back)
    # its state survives a round trip
    other = BracketPolicy(st, SuccessiveHalving(eta=2), max_trials=None)
    other.load_state_dict(serialize.loads(serialize.dumps(pol.state_dict())))
    arr = [_arrive(back[0].trial, 2, 3.0)]
    assert pol.decide(st, arr) == other.decide(st, arr)
    assert pol.decide(st, arr)[0].action is Action.COMPLETE


def test_pbt_decide_completes_at_the_end_and_fails_failures():
    st = _stub(num_phases=3)
    st.key = __import__("jax").random.key(0)
    pol = PBTPolicy(st, PBT(), None)
    out = pol.decide(st, [_arrive(0, 2, 1.0), _arrive(1, 3, 1.0, slot=1), _arrive(2, 1, 0.0, True, slot=2)])
    assert [d.action for d in out] == [Action.CONTINUE, Action.COMPLETE, Action.FAIL]
    st.time_fits = lambda ticks: False  # max_seconds reached: the population is evaluated now
    assert pol.decide(st, [_arrive(0, 2, 1.0)])[0].action is Action.COMPLETE


@pytest.mark.parametrize("make", [lambda: SobolProposer(SPACE, seed=3), lambda: RandomProposer(SPACE, key=3)])
def test_proposer_state_dict_round_trip(make):
    a = make()
    a.ask(5)
    a.tell(a.ask(3), np.arange(3.0), np.full(3, 100.0))
    b = make()
    b.load_state_dict(serialize.loads(serialize.dumps(a.state_dict())))
    np.testing.assert_array_equal(a.ask(7), b.ask(7))
    assert a.seen == b.seen and np.array_equal(a.history_u, b.history_u)


def test_trial_and_generator_round_trips():
    t = Trial(id=3, config={"lr": 0.1, "hidden": (32, 32)}, u=np.array([0.1, 0.9]), bucket=1, seeds=(0, 1), parent=2,
              curve=[1.0, float("nan")], curve_steps=[10, 20], segments=[[4, 0.5, float("nan"), 1, -1]])
    back = Trial.from_state(serialize.loads(serialize.dumps(t.state_dict())))
    assert back.row().keys() == t.row().keys()
    assert back.config == t.config and back.seeds == t.seeds and back.segments[0][:2] == [4, 0.5]
    g = np.random.default_rng(7)
    g.random(3)
    h = load_generator(serialize.loads(serialize.dumps(generator_state(g))))
    assert g.random() == h.random()
