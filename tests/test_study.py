"""Studies end to end on small budgets: records, budget, slots, compile counts, failures,
buckets, synchronous brackets, PBT lineage, the trial log and host-side validation."""

import math
import time

import jax
import numpy as np
import pandas as pd
import pytest

import hyperjax as hj
from hyperjax.population import get_runner
from hyperjax.schedulers import ASHA, PBT, HyperTrick
from hyperjax.space import Choice, Float, Int, SearchSpace
from hyperjax.study.buckets import allocate_slots, enumerate_buckets
from hyperjax.study.policies import project
from tests.conftest import expected_best

AGENT = hj.PPO(env="CartPole-v1", num_envs=4, num_steps=16, num_minibatches=1, num_epochs=1, hidden=(16,))
SPACE = SearchSpace({"learning_rate": Float(1e-4, 1e-2, log=True), "gamma": Choice((0.9, 0.99, 0.999), ordered=True)})
PHASE = 4 * 16 * 4  # 4 updates per phase
KW = dict(phase_steps=PHASE, trial_steps=4 * PHASE, slots=6, eval_episodes=2, seed=3)


def _study(scheduler="hypertrick", space=SPACE, agent=AGENT, budget=6 * 4 * PHASE * 3, **kw):
    args = dict(KW)
    args.update(kw)
    return hj.tune(agent, space, budget=budget, scheduler=scheduler, **args)


def _host(x):
    return np.asarray(jax.random.key_data(x)) if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key) else np.asarray(x)


def _check_records(res, budget, num_phases=4):
    df = res.dataframe()
    assert set(df.status) <= {"completed", "evicted", "failed", "stopped"}
    assert res.env_steps == df.env_steps.sum() <= budget
    done = df[df.status == "completed"]
    assert (done.phases == num_phases).all()
    assert np.isfinite(done.final_score).all()
    # only evaluated trials have a final score: completed ones, and those a time limit stopped
    assert df[~df.status.isin(["completed", "stopped"])].final_score.isna().all()
    # no slot is held by two trials at once
    tl = res.timeline()
    for _, seg in tl.groupby("slot"):
        seg = seg.sort_values("start_tick")
        assert (seg.start_tick.values[1:] >= seg.end_tick.values[:-1]).all()
    # the best: the leader with the highest re-evaluation (the highest final score without one)
    assert res.best.status == "completed"
    assert res.best is expected_best(res)
    for t in res.trials:
        assert len(t.curve) == len(t.curve_steps) == t.phases - t.start_phase
    return df


def test_hypertrick_study_records_budget_and_no_recompiles():
    runner = get_runner(AGENT)
    budget = 6 * 4 * PHASE * 3
    seen = []
    res = _study(budget=budget, progress_fn=lambda steps, m: seen.append((steps, m["study/running"])))
    traces = runner.trace_count
    df = _check_records(res, budget)
    assert len(df) > 6  # slots were refilled
    assert (df.status == "evicted").any()
    assert seen and seen[-1][0] == res.env_steps and len(seen) == res.ticks
    assert res.best_params is not None and res.best_curve[1].shape == (4,)
    assert res.slot_utilization["while_queued"] == 1.0
    # A second study (other values, same shapes) compiles nothing new.
    res2 = _study(budget=budget, seed=4)
    assert runner.trace_count == traces
    assert res2.ticks > 4


def test_same_seed_same_study():
    a = _study(scheduler="asha").dataframe()
    b = _study(scheduler="asha").dataframe()
    cols = ["trial", "status", "phases", "final_score", "last_score", "env_steps", "slot", "config/learning_rate"]
    pd.testing.assert_frame_equal(a[cols], b[cols])


def test_failed_trials_are_recycled_and_never_best():
    space = SearchSpace({"learning_rate": Choice((3e-4, 1e30, 1e-3, 1e31)), "gamma": Float(0.95, 0.99)})
    res = _study(scheduler="none", space=space, budget=12 * 4 * PHASE)
    df = res.dataframe()
    failed = df[df.status == "failed"]
    assert len(failed) >= 2 and (failed["config/learning_rate"] > 1).all()
    assert (df[df.status == "completed"]["config/learning_rate"] < 1).all()
    assert res.best is not None and res.best.config["learning_rate"] < 1
    assert (failed.phases == 1).all()  # caught at the first boundary
    assert len(df) > 12  # the budget failures did not use went to new trials


def test_buckets_share_one_study():
    agent = hj.A2C(env="CartPole-v1", num_envs=4, hidden=(16,))
    space = SearchSpace({"learning_rate": Float(1e-4, 3e-3, log=True), "t_max": Choice((4, 8), ordered=True)})
    res = hj.tune(agent, space, budget=8 * 3 * 64 * 3, phase_steps=64, trial_steps=3 * 64, slots=4, scheduler="median",
                  eval_episodes=2, seed=0)
    df = res.dataframe()
    assert set(df["config/t_max"]) == {4, 8}
    assert set(df.bucket) == {0, 1}
    assert [b["t_max"] for b in res.buckets] == [4, 8] and [b["slots"] for b in res.buckets] == [2, 2]
    assert res.best_agent.t_max == res.best.config["t_max"]
    _check_records(res, 8 * 3 * 64 * 3, num_phases=3)


def _leaves(tree):
    return [_host(x) for x in jax.tree.leaves(tree)]


def _same(a, b):
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))


def test_successive_halving_pauses_and_resumes(monkeypatch):
    """A promoted trial resumes, in whatever slot is free, from exactly the members it was paused
    with (params, optimizer and env state, key, bit for bit), not from a fresh start: the slot's
    members right after the resume (Pool.flush: refills and puts) are compared with those the
    trial's slot held when it paused."""
    from hyperjax.study import engine

    at_pause: dict[int, list] = {}  # trial -> its members when it paused
    checked: list[tuple[int, bool]] = []  # (trial, members after the resume == at the pause)
    saved_ok: list[bool] = []
    flush = engine.Pool.flush

    def checked_flush(pool):
        ran = flush(pool)
        for slot in pool.occupied():
            tid = int(pool.trial[slot])
            if tid in at_pause:  # a paused trial is in no slot until it resumes: this is its resume
                checked.append((tid, _same(_leaves(pool.take(int(slot))), at_pause.pop(tid))))
        return ran

    calls = []

    def on_tick(study, changes):  # records only: a callback that raises is disabled, not fatal
        calls.append(study.tick)
        for d in changes["decisions"]:
            if d.action.value == "pause":
                # released, not refilled yet: the slot still holds the trial's trained members
                at_pause[d.trial] = _leaves(study.pools[d.pool].take(d.slot))
                kept = study.paused.get(d.trial)  # absent if evicted at this tick's rung end
                saved_ok.append(kept is None or _same(_leaves(kept[0]), at_pause[d.trial]))
            elif d.action.value == "evict" and d.trial in at_pause:  # a paused trial not promoted
                del at_pause[d.trial]

    monkeypatch.setattr(engine.Pool, "flush", checked_flush)
    res = _study(scheduler="successive_halving", budget=6 * 4 * PHASE * 2, callbacks=[on_tick])
    _check_records(res, 6 * 4 * PHASE * 2)
    resumed = [t for t in res.trials if len(t.segments) > 1]
    assert len(calls) == res.ticks + 1
    assert resumed, "promoted trials resume from their paused state"
    assert saved_ok and all(saved_ok)  # what the study keeps is what the slot held
    assert sorted(tid for tid, _ in checked) == sorted(t.id for t in resumed)
    assert all(ok for _, ok in checked), checked
    assert not at_pause  # every paused trial was resumed or evicted while paused
    # the check means something: some slot was used by another trial between a pause and a resume
    tl = res.timeline()
    assert any(((tl.slot == seg[0]) & (tl.trial != t.id) & (tl.start_tick >= prev[4]) & (tl.start_tick < seg[3])).any()
               for t in resumed for prev, seg in zip(t.segments, t.segments[1:]))
    # rungs at ceil(4/3)=2 and 4 phases: every trial stopped at a rung
    assert set(t.phases for t in res.trials) <= {2, 4}
    for t in resumed:
        assert t.curve_steps == [PHASE * (i + 1) for i in range(t.phases)]


def test_hyperband_runs_its_brackets():
    res = _study(scheduler="hyperband", budget=6 * 4 * PHASE * 3)
    _check_records(res, 6 * 4 * PHASE * 3)
    assert {2, 4} <= set(t.phases for t in res.trials)


class _FixedProposer:
    """Proposes the rows of ``u`` in order (then from the start again)."""

    def __init__(self, u):
        self.u, self.i = np.asarray(u, np.float64), 0

    def ask(self, k):
        rows = self.u[(self.i + np.arange(k)) % len(self.u)]
        self.i += k
        return rows

    def tell(self, u, scores, budgets):
        pass


def test_pbt_lineage_and_failed_members(monkeypatch):
    """PBT with one member that diverges (learning rate 1e30: NaN within its first phase): it is
    marked failed at the first boundary and never becomes the best, its slot is refilled at
    once by a copy of a running member and every slot runs to the end. Every exploit copies the
    parent's members (params, optimizer and env state, key) bit for bit into the child's slot as
    they were just before the copy, and leaves every other slot untouched."""
    from hyperjax.study import engine

    space = SearchSpace({"learning_rate": Float(1e-4, 1e30, log=True), "ent_coef": Float(0.0, 0.05)})
    lr_u = lambda lr: np.log(lr / 1e-4) / np.log(1e34)  # noqa: E731
    rows = [[lr_u(lr), e] for lr, e in ((3e-4, 0.1), (1e-3, 0.5), (1e30, 0.3), (3e-3, 0.9), (5e-4, 0.7), (2e-3, 0.2))]
    copies = {}  # tick -> ({child slot: parent slot}, every slot holds what it should after the copy)
    ticks = [0]  # ticks whose callbacks ran; a copy is applied during the tick after the last one
    copy_from = engine.Pool.copy_from

    def checked_copy(pool, source_slot):
        before = [_leaves(pool.take(s)) for s in range(pool.slots)]
        copy_from(pool, source_slot)
        ok = all(_same(_leaves(pool.take(s)), before[source_slot.get(s, s)]) for s in range(pool.slots))
        assert ticks[-1] + 1 not in copies  # one gather per exploit step
        copies[ticks[-1] + 1] = (dict(source_slot), ok)

    decisions = []

    def on_tick(study, changes):  # records only: a callback that raises is disabled, not fatal
        decisions.extend((study.tick, d) for d in changes["decisions"])
        ticks.append(study.tick)

    monkeypatch.setattr(engine.Pool, "copy_from", checked_copy)
    # no resampling: children are perturbed copies of healthy members, so exactly one member fails
    res = _study(scheduler=PBT(interval=1, quantile=0.34, resample_prob=0.0), space=space, budget=6 * 4 * PHASE,
                 proposer=_FixedProposer(rows), callbacks=[on_tick])
    assert ticks[1:] == list(range(1, res.ticks + 1)) + [res.ticks]  # every tick, then the final call
    df = res.dataframe()
    by_id = {t.id: t for t in res.trials}

    failed = by_id[2]
    assert failed.config["learning_rate"] == pytest.approx(1e30)
    assert failed.status == "failed" and failed.end_reason == "non-finite values" and failed.phases == 1
    assert len(failed.curve) == 1 and math.isnan(failed.curve[0]) and math.isnan(failed.final_score)
    assert list(df[df.status == "failed"].trial) == [2]  # the only failure
    assert res.best is not None and res.best.id != 2 and res.best.config["learning_rate"] < 1
    assert math.isfinite(res.best_score) and res.best is expected_best(res)
    # the population goes on: its slot is refilled by a copy at the same boundary ...
    slot = failed.slot
    heir = [t for t in res.trials if t.origin == "pbt" and t.segments[0][0] == slot and t.segments[0][3] == 1]
    assert len(heir) == 1 and by_id[heir[0].parent].status != "failed" and heir[0].start_phase == 1
    # ... and every slot trains to the end
    assert (df.status == "completed").sum() == 6 and res.env_steps == 6 * 4 * PHASE

    exploits = [(tick, d) for tick, d in decisions if d.action.value == "exploit"]
    kids = [t for t in res.trials if t.origin == "pbt"]
    assert len(exploits) == len(kids) > 1, "exploit steps create children"
    assert sorted(copies) == sorted({tick for tick, _ in exploits})  # one gather per exploit step
    assert all(ok for _, ok in copies.values()), copies
    for tick, d in exploits:
        child, parent = by_id[d.trial], by_id[d.source]
        assert child.parent == parent.id and child.segments[0][0] == d.slot
        assert copies[tick][0][d.slot] == parent.slot  # the child's slot took the parent's members
        assert child.start_phase == tick and parent.phases >= child.start_phase
        assert 1e-4 <= child.config["learning_rate"] < 1 and 0.0 <= child.config["ent_coef"] <= 0.05
    steps, scores = res.best_curve
    assert list(steps) == [PHASE * (i + 1) for i in range(4)]
    # the best's schedule: its lineage's values from the phase each generation took over
    sched = res.best_schedule()
    chain = res.lineage(res.best.id)
    assert [s for s, _ in sched] == sorted({t.start_phase * PHASE for t in chain})
    assert sched[-1][1] == {n: res.best.config[n] for n in AGENT.hparam_names()}


def test_max_seconds_stops_the_study():
    """The clock is checked after every tick: no tick starts once ``max_seconds`` has passed, so
    the study overshoots by at most the tick that crossed it plus the final bookkeeping, and the
    trials still running then are stopped. Bounds are relative to the ticks measured in this run
    (a loaded machine slows ticks and bounds alike), not absolute seconds; measured on a 2-core
    machine: ticks of 5-30 ms (0.3 s with the pause below), the bookkeeping under 1 ms."""
    _study(budget=6 * 4 * PHASE)  # compile outside the clock: the timed study then runs many short ticks
    limit = 3.0
    ends, busy = [], []  # study seconds and occupied slots at the end of every tick, then after the final call

    def clock(study, changes):
        # A watcher much slower in the last second: the study's estimate of a tick leaves
        # callbacks out, so trials still start that cannot end in time, and the limit almost
        # always finds trials running (else the population drained first: no trial starts that
        # is not expected to end in time).
        if not changes["final"] and study.now() > limit - 1.0:
            time.sleep(0.3)
        ends.append(study.now())
        busy.append(sum(len(p.occupied()) for p in study.pools))

    # the final choice by the first evaluation: nothing is kept back from the limit
    res = _study(budget=10**9, max_seconds=limit, callbacks=[clock], reevaluate=0)
    ticks, final = np.asarray(ends[:-1]), ends[-1]
    assert len(ticks) == res.ticks >= 5  # short ticks: many of them before the limit
    lengths = np.diff(ticks)  # whole ticks (fill, train, decide, apply, callbacks), 2nd to last
    # every tick but the last ended before the limit: none started after it ...
    assert np.all(ticks[:-1] < limit), (ticks, limit)
    # ... and the last one crossed it (the trials it left running are stopped), or the
    # population had drained: the study did not stop early
    assert ticks[-1] >= limit or busy[-2] == 0, (ticks[-1], busy[-2])
    assert (res.dataframe().status == "stopped").sum() == busy[-2]
    # the overshoot is at most the last tick plus the final bookkeeping (stopping the running
    # trials, the last callback, the result: far less than a tick), allowed the longest tick
    margin = float(lengths.max())
    assert res.seconds - limit <= lengths[-1] + margin, (res.seconds - limit, lengths[-1], margin)
    assert final <= res.seconds <= final + margin
    assert len(res.trials) >= 6
    # the trials the limit stopped while they ran were evaluated (a study always has an answer)
    stopped = [t for t in res.trials if t.status == "stopped" and t.end_reason == "study ended" and t.segments]
    assert all(t.scored and len(t.final_scores) == 1 for t in stopped), [t.final_score for t in stopped]
    assert res.best is not None and res.best is expected_best(res)


def test_a_study_stopped_by_time_before_any_completion_has_an_answer(tmp_path):
    """A time limit that ends a study before any trial can complete (trials of 1000 phases)
    still returns the best of what ran: the trials running then are evaluated like completed
    ones, the best is the highest of them, marked ``"stopped"`` with its trained members, and
    the store gives back the same best and parameters."""
    _study(budget=6 * 4 * PHASE)  # compile outside the clock (the study's clock counts compiles)
    d = str(tmp_path / "s")
    res = _study(budget=10**9, trial_steps=1000 * PHASE, max_seconds=1.0, store=d)
    assert not any(t.status == "completed" for t in res.trials)
    # "auto" would retrain the leaders for 1000 phases each: far more than a quarter of the
    # limit, so the retraining is dropped and the best is the highest first evaluation
    assert res.selection == {"reevaluate": 0, "reevaluate_seeds": 0, "retrain_dropped": True}
    assert not any(t.reseed_scores or math.isfinite(t.reeval_score) for t in res.trials)
    ran = [t for t in res.trials if t.status == "stopped" and t.segments]  # running at the end
    assert ran and all(t.scored and len(t.final_scores) == 1 for t in ran)
    assert all(not t.scored for t in res.trials if t not in ran)  # evicted, failed or never run
    assert res.best.status == "stopped" and res.summary()["best_status"] == "stopped"
    assert res.best is expected_best(res) and res.best in ran
    assert res.best_so_far()[-1][1] == max(t.final_score for t in ran)
    assert res.best_state is not None and np.isfinite(res.evaluate_best(episodes=2))
    back = hj.load_study(d)
    assert back.best.id == res.best.id and back.best_score == res.best_score
    for a, b in zip(jax.tree.leaves(res.best_params), jax.tree.leaves(back.best_params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(budget=10), "budget=10 is smaller than one phase"),
        (dict(slots=0), "slots=0"),
        (dict(scheduler=None), "scheduler=None"),
        (dict(scheduler="bohb"), "scheduler='bohb' is unknown"),
        (dict(proposer="tpe"), "proposer='tpe' is unknown"),
        (dict(phase_steps=10), "phase_steps=10 is less than one update"),
        (dict(trial_steps=PHASE - 1), "trial_steps=255 must be >= phase_steps"),
        (dict(max_seconds=-1), "max_seconds=-1"),
        (dict(reevaluate=-1), "reevaluate=-1"),
        (dict(reevaluate_seeds=-1), "reevaluate_seeds=-1"),
        (dict(reevaluate_seeds=2, reevaluate=0), r"reevaluate_seeds=2 .* needs reevaluate >= 1 \(got 0\)"),
        (dict(reevaluate="Auto"), "reevaluate='Auto' must be 'auto' or an integer >= 0"),
        (dict(reevaluate_seeds=2.0), "reevaluate_seeds=2.0 must be an integer >= 0"),
        (dict(reevaluate_seeds=2, reevaluate=4, scheduler="pbt"), "needs an asynchronous scheduler .* not 'pbt'"),
        (dict(reevaluate_seeds=2, reevaluate=4, budget=8 * 4 * PHASE), "does not fit retraining the leaders"),
        (dict(reevaluate_episodes=0), "reevaluate_episodes=0"),
        (dict(seeds=0), "seeds=0"),
        (dict(fixed={"clip_eps": -1.0}), "clip_eps"),
    ],
)
def test_bad_arguments_fail_on_the_host(kwargs, match, no_population):
    args = dict(budget=10**6)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        _study(**args)


@pytest.fixture
def no_population(monkeypatch):
    """Makes building a population (a Pool: tracing and compiling its programs) fail the test
    with an AssertionError, whatever JAX has cached: what is checked on the host must be refused
    before. (A cache-proof count of every compile needs jax.clear_caches(), which would make the
    rest of this module compile its programs again: see tests/test_validate.py for that check.)"""
    from hyperjax.study import engine

    def refuse(self, *args, **kwargs):
        raise AssertionError("a population was built (its programs traced and compiled) before the error")

    monkeypatch.setattr(engine.Pool, "__init__", refuse)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: ASHA(eta=1), "eta=1 must be"),
        (lambda: HyperTrick(r=1.5), "r=1.5 must be"),
        (lambda: HyperTrick(r=0), "r=0 must be"),
        (lambda: hj.schedulers.Hyperband(eta=1.5), "eta=1.5"),
        (lambda: PBT(quantile=0.9), "quantile=0.9"),
    ],
)
def test_bad_scheduler_options(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(space=SearchSpace({"num_steps": Float(8, 32)})), "'num_steps' fixes array shapes"),
        (dict(space=SearchSpace({"num_steps": Int(8, 64), "num_envs": Int(2, 8)})), "more than 32"),
        (dict(space=SearchSpace({"num_steps": Choice((8, 16, 32))}), slots=2), "fewer than the 3 structural buckets"),
        (dict(space=SearchSpace({"gamma": Float(0.9, 1.5)})), "gamma"),  # a corner of the space is no valid gamma
        (dict(scheduler="hyperband", budget=10**12), "would start"),  # brackets cannot plan an endless budget
        (dict(scheduler="pbt", budget=PHASE * 6), "smaller than what PBT runs"),
    ],
)
def test_space_problems_fail_on_the_host(kwargs, match, no_population):
    with pytest.raises(ValueError, match=match):
        _study(**kwargs)


def test_bucket_allocation_and_enumeration():
    space = SearchSpace({"t_max": Choice((2, 5, 10, 20, 50, 100), ordered=True), "learning_rate": Float(1e-5, 1e-2, log=True),
                         "gamma": Choice((0.9, 0.95, 0.99, 0.995, 0.999, 0.9995, 0.9999), ordered=True)})
    buckets, w = enumerate_buckets(space, hj.A2C)
    assert [b["t_max"] for b in buckets] == [2, 5, 10, 20, 50, 100]
    np.testing.assert_allclose(w, 1 / 6)
    alloc = allocate_slots(32, w)
    assert alloc.sum() == 32 and alloc.min() >= 5
    alloc = allocate_slots(10, np.array([0.9, 0.05, 0.05]))
    assert list(alloc) == [8, 1, 1]
    with pytest.raises(ValueError, match="slots=2 is fewer"):
        allocate_slots(2, np.ones(3))


def test_project_onto_the_space():
    np.testing.assert_allclose(project(Float(1e-4, 1e-2, log=True), np.array([1e-5, 5e-3, 1.0]), np.zeros(3)), [1e-4, 5e-3, 1e-2])
    np.testing.assert_allclose(project(Int(2, 100, q=2), np.array([1.0, 7.2, 1e3]), np.zeros(3)), [2, 8, 100])
    g = Choice((0.9, 0.99, 0.999), ordered=True)
    # x1.2 of 0.99 rounds back to 0.99 by distance but moves up one step; x0.8 moves down
    np.testing.assert_allclose(project(g, np.array([0.99 * 1.2, 0.99 * 0.8, 0.99]), np.full(3, 0.99)), [0.999, 0.9, 0.99])


def test_hypertrick_budget_sets_number_of_trials(monkeypatch):
    """The budget sets how many trials start, exactly. HyperTrick's N starts at budget / (phase
    cost * sum_p (1 - r)^p) = 64 / 1.875 -> 34 and is revised before every fill to what the rest
    of the budget affords at the observed survival (never above 34); within it, at every fill as
    many start as there are free slots while (a) the env steps used, plus what every running
    trial could still use, plus the new trials' whole runs fit the budget and (b) after the first
    fill, the budget left could still keep the smallest population the pool runs (compaction's
    half: 4 of the 8 slots) busy for a whole trial. Replayed from the
    study's own state at every tick (the count is two-sided: no more and no fewer than the rule
    allows)."""
    from hyperjax.study.policies import AsyncPolicy

    slots, phases, budget = 8, 4, 8 * 4 * PHASE * 2
    tail = {}  # compaction's smallest population (8 members on two devices: 4)
    n_max = int(budget // (PHASE * sum(0.5**p for p in range(phases))))
    assert n_max == 34
    ns = {0: n_max}  # tick -> N the fill after it used (the first fill: the budget's)
    revise = AsyncPolicy._revise_n

    def recorded(self, study):
        revise(self, study)
        ns[study.tick] = self.max_trials

    monkeypatch.setattr(AsyncPolicy, "_revise_n", recorded)

    def allowed(tick, trials, used, committed, running):
        """Trials the fill after ``tick`` ticks may start."""
        j = 0
        while (j < slots - running and trials + j < ns[tick]
               and used + committed + (j + 1) * phases * PHASE <= budget
               and (tick == 0 or budget - used >= phases * tail["members"] * PHASE)):
            j += 1
        return j

    states = [(0, 0, 0, 0, 0)]  # (ticks, trials, used, committed, running) before each fill

    def record(study, changes):
        if changes["final"]:
            return
        tail["members"] = min(study.pools[0].compact_sizes, default=slots)
        running = [study.trials[t] for t in study.pools[0].trial if t >= 0]
        states.append((study.tick, len(study.trials), study.used, sum((phases - t.phases) * PHASE for t in running),
                       len(running)))

    res = _study(scheduler=HyperTrick(r=0.5), budget=budget, slots=slots, callbacks=[record])
    assert len(states) == res.ticks + 1  # the state before every fill, the last one started nothing
    assert tail["members"] < slots  # the rule at compaction's size is what ran
    assert all(1 <= n <= n_max for n in ns.values()) and min(ns.values()) < n_max  # revised, within bounds
    starts = [t.segments[0][3] for t in res.trials]  # the tick count at each trial's fill
    for tick, trials, used, committed, running in states:
        assert starts.count(tick) == allowed(tick, trials, used, committed, running), (tick, states, ns)
    assert len(res.trials) == sum(allowed(*st) for st in states)
    assert 10 <= len(res.trials) <= n_max and res.env_steps <= budget
    assert math.isfinite(res.best_score)


def test_hypertricks_n_follows_the_observed_survival():
    """The observed survival at each phase boundary and the expected phases still to run, by
    hand."""
    from types import SimpleNamespace as T

    from hyperjax.study.policies import remaining_phases, survival

    trials = [T(phases=1, start_phase=0, origin="proposer", status="evicted"),
              T(phases=2, start_phase=0, origin="proposer", status="evicted"),
              T(phases=2, start_phase=0, origin="proposer", status="running"),
              T(phases=1, start_phase=0, origin="proposer", status="running"),
              T(phases=4, start_phase=0, origin="proposer", status="completed"),
              T(phases=3, start_phase=1, origin="pbt", status="running"),  # a PBT child: not the rule's
              T(phases=1, start_phase=0, origin="proposer", status="failed")]  # says nothing of the rule
    s = survival(trials, 4, prior=0.5, min_decided=2)
    # boundary 1: 5 decided (evicted, then 4 went on: phases 2, 2, running at 1, completed);
    # boundary 2: 3 decided (evicted, running, completed: 2 went on); boundary 3: 1 decided < 2
    np.testing.assert_allclose(s, [1.0, 4 / 5, 2 / 3, 0.5, 0.0])
    assert remaining_phases(s, 0) == pytest.approx(1 + 4 / 5 + 4 / 5 * 2 / 3 + 4 / 5 * 2 / 3 * 0.5)
    assert remaining_phases(s, 2) == pytest.approx(1 + 0.5)
    assert remaining_phases(s, 3) == pytest.approx(1.0)
    assert remaining_phases(s, 4) == 0.0


def test_hypertricks_compute_fraction_comes_near_its_expectation():
    """With N from the budget (no max_trials), the fraction of trial-phases run stays near
    E[alpha] = sum_p (1 - r)^p / P: N revised to what the study starts keeps the rule's quotas
    right (with N fixed at budget / expected cost only 37-39 of 79 trials started here and alpha
    was 0.62-0.66: the quotas let nearly everything through)."""
    from hyperjax.analysis import expected_alpha
    from hyperjax.study.simulate import simulate

    e = expected_alpha(0.25, 10)
    for seed in range(2):
        r = simulate(HyperTrick(r=0.25), slots=8, trials=None, phases=10, budget=300, seed=seed)
        assert r.trials >= 50 and r.compute_fraction < e + 0.15, (r, e)


class _BadProposer:
    def __init__(self, make):
        self.make = make

    def ask(self, k):
        return self.make(k)

    def tell(self, u, scores, budgets):
        pass


@pytest.mark.parametrize("make, match", [
    (lambda k: np.full((k, 2), np.nan), "non-finite values"),
    (lambda k: np.full((k, 2), 1.5), r"outside the unit cube \[0, 1\]"),
    (lambda k: np.full((k, 3), 0.5), r"returned shape \(8, 3\); expected \(8, 2\)"),
    (lambda k: np.zeros((0, 2)), r"returned shape \(0, 2\).*raise ValueError from ask"),
    (lambda k: "abc", "returned"),
])
def test_bad_proposer_output_fails_before_compiling(make, match):
    agent = AGENT.replace(hidden=(13,))  # a bucket no other test builds: its programs start untraced
    with pytest.raises(ValueError, match="proposer _BadProposer: ask.*" + match):
        _study(proposer=_BadProposer(make), budget=10**6, agent=agent)
    assert get_runner(agent).trace_count == 0  # no population program was traced or compiled


def test_failing_callback_is_disabled_not_fatal():
    calls = []

    def bad(study, changes):
        calls.append(study.tick)
        raise RuntimeError("boom")

    seen = []
    with pytest.warns(UserWarning, match="callback .* raised RuntimeError: boom; it is disabled"):
        res = _study(scheduler="asha", callbacks=[bad, lambda st, ch: seen.append(len(ch["observations"]))])
    assert calls == [1]  # called once, then disabled
    assert len(seen) == res.ticks + 1 and sum(seen) == sum(len(t.curve) for t in res.trials)
    ref = _study(scheduler="asha").dataframe()
    pd.testing.assert_frame_equal(res.dataframe()[["trial", "status", "final_score"]], ref[["trial", "status", "final_score"]])


def test_compiles_only_at_setup_and_first_use():
    """What compiles when: building the pools and the first tick (init, advance, refill, the
    rule), then only the first use of a program a study had not needed yet (evaluate/take at
    the first completion, take at the first pause, put at the first resume, the PBT gather);
    a second study of the same shapes compiles nothing at all."""
    import jax

    agent = AGENT.replace(hidden=(12,))  # fresh shapes: nothing compiled by other tests
    events = []
    tick = [0]
    jax.monitoring.register_event_duration_secs_listener(
        lambda name, secs, **kw: events.append(tick[0]) if name == "/jax/core/compile/backend_compile_duration" else None)
    for sched, budget in (("hypertrick", 6 * 4 * PHASE * 3), ("successive_halving", 6 * 4 * PHASE * 2),
                          (PBT(interval=1, quantile=0.34), 6 * 4 * PHASE)):
        for rep in range(2):
            events.clear()
            tick[0] = 0
            firsts, paused = {}, set()

            def watch(study, changes):
                for d in changes["decisions"]:
                    kind = d.action.value
                    if kind == "pause":
                        paused.add(d.trial)
                    if kind == "resume" and d.trial in paused:
                        kind = "resume paused"  # put: a queued trial's first start is a refill
                    firsts.setdefault(kind, study.tick - 1)  # compiled during that tick's work
                tick[0] = study.tick

            _study(scheduler=sched, budget=budget, agent=agent, seed=3 + rep, callbacks=[watch])
            if rep == 0:
                allowed = {0} | {firsts[a] for a in ("complete", "pause", "resume paused", "exploit") if a in firsts}
                assert set(events) <= allowed, (sched, sorted(set(events)), allowed)
            else:
                assert events == [], (sched, events)


def test_console_progress_lines_and_panel():
    import io

    log, term = io.StringIO(), io.StringIO()
    res = _study(scheduler="asha", callbacks=[hj.callbacks.Console(file=log),
                                              hj.callbacks.Console(file=term, force_terminal=True)])
    lines = log.getvalue().splitlines()
    assert len(lines) == res.ticks + 1 and lines[-1].startswith("done: tick")
    assert f"{res.env_steps:,} / " in lines[-1] and f"completed {res.summary()['completed']}" in lines[-1]
    assert f"best {res.best_score:.4g} (trial {res.best.id}" in lines[-1]
    panel = term.getvalue()
    assert "hyperjax study" in panel and "steps/s" in panel and "completed" in panel


def test_pbt_replaces_a_failed_member_at_once():
    """PBT with ``interval=3``: a member that diverges (learning rate 1e30: NaN within its
    first phase) fails at tick 1, which is no exploit tick, and its slot gets a child (a copy
    of a running member) at that very tick, not at tick 3; between intervals nothing else is
    exploited, and every slot runs to the end."""
    space = SearchSpace({"learning_rate": Float(1e-4, 1e30, log=True), "ent_coef": Float(0.0, 0.05)})
    lr_u = lambda lr: np.log(lr / 1e-4) / np.log(1e34)  # noqa: E731
    rows = [[lr_u(lr), e] for lr, e in ((3e-4, 0.1), (1e-3, 0.5), (1e30, 0.3), (3e-3, 0.9), (5e-4, 0.7), (2e-3, 0.2))]
    decisions = []

    def on_tick(study, changes):
        decisions.extend((study.tick, d) for d in changes["decisions"])

    interval = 3
    res = _study(scheduler=PBT(interval=interval, quantile=0.34, resample_prob=0.0), space=space,
                 budget=6 * 4 * PHASE, proposer=_FixedProposer(rows), callbacks=[on_tick])
    by_id = {t.id: t for t in res.trials}
    failed = by_id[2]
    assert failed.status == "failed" and failed.phases == 1 and [t.id for t in res.trials if t.status == "failed"] == [2]
    slot, fail_tick = failed.slot, failed.segments[-1][4]
    assert [(tick, d.trial) for tick, d in decisions if d.action.value == "fail"] == [(fail_tick, 2)]
    assert fail_tick == 1 and fail_tick % interval != 0  # not an exploit tick
    # the heir: started in the failed trial's slot at the tick it failed, from a running parent
    heirs = [t for t in res.trials if t.origin == "pbt" and t.segments[0][0] == slot and t.segments[0][3] == fail_tick]
    assert len(heirs) == 1, [(t.id, t.segments) for t in res.trials if t.origin == "pbt"]
    heir = heirs[0]
    assert heir.start_phase == fail_tick and by_id[heir.parent].status != "failed" and heir.parent != 2
    assert by_id[heir.parent].segments[0][3] == 0 and by_id[heir.parent].slot != slot
    # exploits: the failed slot's at tick 1, the rest at multiples of the interval only
    exploits = [(tick, d.slot) for tick, d in decisions if d.action.value == "exploit"]
    assert (fail_tick, slot) in exploits
    assert all(tick % interval == 0 for tick, s in exploits if (tick, s) != (fail_tick, slot)), exploits
    assert any(tick == interval for tick, _ in exploits), "the interval's own exploit step still happens"
    assert len([t for t in res.trials if t.origin == "pbt"]) == len(exploits)
    df = res.dataframe()
    assert (df.status == "completed").sum() == 6 and res.env_steps == 6 * 4 * PHASE
    assert res.best.id != 2


def test_a_trial_fails_if_any_of_its_seeds_does():
    """``seeds=2``: a trial's score is the mean over its seeds, and it fails if any of them
    does. A learning rate on the edge of divergence (4.6e17: Adam's first steps of that size
    overflow one seed's losses within the first phase while the other seed trains on; found
    by a scan of learning rates with this study's seed 3, where the band 4.3e17-5.0e17 fails
    seed 0 alone) makes exactly one member of trial 1 non-finite: the trial fails at the first
    boundary although its other seed is healthy (checked from the members' own ``failed``
    flags when the trial fails). The healthy trials' curves and final scores are the means of
    their seeds'."""
    space = SearchSpace({"learning_rate": Float(1e-4, 1e30, log=True), "ent_coef": Float(0.0, 0.05)})
    lr_u = lambda lr: np.log(lr / 1e-4) / np.log(1e34)  # noqa: E731
    rows = [[lr_u(3e-4), 0.2], [lr_u(4.6e17), 0.2], [lr_u(1e-3), 0.2]]
    failed_seeds = {}  # trial -> its members' failed flags when it failed

    def on_tick(study, changes):
        for d in changes["decisions"]:
            if d.action.value == "fail":  # released, not refilled yet: the slot still holds its members
                failed_seeds[d.trial] = np.asarray(study.pools[d.pool].take(d.slot).failed).tolist()

    # 3 slots x 2 seeds: the 6 members of the other studies here
    res = _study(scheduler="none", space=space, slots=3, seeds=2, budget=3 * 4 * PHASE * 2, max_trials=3,
                 proposer=_FixedProposer(rows), callbacks=[on_tick])
    edge = {t.id: t for t in res.trials}[1]
    assert edge.config["learning_rate"] == pytest.approx(4.6e17)
    assert sorted(failed_seeds[1]) == [False, True], failed_seeds  # one seed diverged, the other did not
    assert list(failed_seeds) == [1]
    assert edge.status == "failed" and edge.end_reason == "non-finite values" and edge.phases == 1
    assert math.isnan(edge.curve[0]) and math.isnan(edge.final_score) and not edge.scored
    assert len(edge.seed_curve[0]) == 2
    healthy = [t for t in res.trials if t.id != 1]
    assert len(healthy) == 2 and all(t.status == "completed" for t in healthy)
    for t in healthy:
        assert len(t.final_scores) == 2 and t.final_score == pytest.approx(np.mean(t.final_scores), rel=1e-12)
        for per_seed, score in zip(t.seed_curve, t.curve):
            assert len(per_seed) == 2 and score == pytest.approx(np.mean(per_seed), rel=1e-12)
    assert any(s[0] != s[1] for t in healthy for s in t.seed_curve)  # two runs, not one counted twice
    assert res.best.id != 1 and res.best is expected_best(res) and res.best in healthy
