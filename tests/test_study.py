"""Studies end to end on small budgets: records, budget, slots, compile counts, failures,
buckets, synchronous brackets, PBT lineage, the trial log and host-side validation."""

import math

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
    assert df[df.status != "completed"].final_score.isna().all()
    # no slot is held by two trials at once
    tl = res.timeline()
    for _, seg in tl.groupby("slot"):
        seg = seg.sort_values("start_tick")
        assert (seg.start_tick.values[1:] >= seg.end_tick.values[:-1]).all()
    # the best is the completed trial with the highest final score
    assert res.best.status == "completed"
    assert res.best_score == done.final_score.max()
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


def test_successive_halving_pauses_and_resumes():
    res = _study(scheduler="successive_halving", budget=6 * 4 * PHASE * 2)
    _check_records(res, 6 * 4 * PHASE * 2)
    resumed = [t for t in res.trials if len(t.segments) > 1]
    assert resumed, "promoted trials resume from their paused state"
    # rungs at ceil(4/3)=2 and 4 phases: every trial stopped at a rung
    assert set(t.phases for t in res.trials) <= {2, 4}
    for t in resumed:
        assert t.curve_steps == [PHASE * (i + 1) for i in range(t.phases)]


def test_hyperband_runs_its_brackets():
    res = _study(scheduler="hyperband", budget=6 * 4 * PHASE * 3)
    _check_records(res, 6 * 4 * PHASE * 3)
    assert {2, 4} <= set(t.phases for t in res.trials)


def test_pbt_lineage_and_failed_members():
    space = SearchSpace({"learning_rate": Float(1e-4, 1e-2, log=True), "ent_coef": Float(0.0, 0.05)})
    copies = []

    def check_copies(study, changes):
        # right after the exploit step, before the next phase trains: a child's members are
        # its parent's, bit for bit (params, optimizer and env state)
        for d in changes["decisions"]:
            if d.action.value == "exploit":
                pool = study.pools[d.pool]
                src = int(np.flatnonzero(pool.trial == d.source)[0])
                a, b = jax.tree.leaves(pool.take(d.slot)), jax.tree.leaves(pool.take(src))
                copies.append(all(np.array_equal(_host(x), _host(y)) for x, y in zip(a, b)))

    res = _study(scheduler=PBT(interval=1, quantile=0.34), space=space, budget=6 * 4 * PHASE, callbacks=[check_copies])
    assert copies and all(copies)
    df = res.dataframe()
    kids = [t for t in res.trials if t.origin == "pbt"]
    assert kids, "exploit steps create children"
    by_id = {t.id: t for t in res.trials}
    for t in kids:
        p = by_id[t.parent]
        assert t.start_phase >= 1 and p.phases >= t.start_phase
        assert 1e-4 <= t.config["learning_rate"] <= 1e-2 and 0.0 <= t.config["ent_coef"] <= 0.05
    assert (df.status == "completed").sum() == 6  # every slot runs to the end
    steps, scores = res.best_curve
    assert list(steps) == [PHASE * (i + 1) for i in range(4)]
    assert res.env_steps == 6 * 4 * PHASE


def test_max_seconds_stops_the_study():
    res = _study(budget=10**9, max_seconds=8.0)
    assert res.seconds < 8.0 + 10.0  # at most one tick (and its evaluation) over
    assert len(res.trials) >= 6


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
        (dict(seeds=0), "seeds=0"),
        (dict(fixed={"clip_eps": -1.0}), "clip_eps"),
    ],
)
def test_bad_arguments_fail_on_the_host(kwargs, match):
    args = dict(budget=10**6)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        _study(**args)


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


def test_space_problems_fail_on_the_host():
    with pytest.raises(ValueError, match="'num_steps' fixes array shapes"):
        _study(space=SearchSpace({"num_steps": Float(8, 32)}))
    with pytest.raises(ValueError, match="more than 32"):
        _study(space=SearchSpace({"num_steps": Int(8, 64), "num_envs": Int(2, 8)}))
    with pytest.raises(ValueError, match="fewer than the 3 structural buckets"):
        _study(space=SearchSpace({"num_steps": Choice((8, 16, 32))}), slots=2)
    with pytest.raises(ValueError, match="gamma"):  # a corner of the space is not a valid gamma
        _study(space=SearchSpace({"gamma": Float(0.9, 1.5)}))
    with pytest.raises(ValueError, match="would start"):  # brackets cannot plan an endless budget
        _study(scheduler="hyperband", budget=10**12)
    with pytest.raises(ValueError, match="smaller than what PBT runs"):
        _study(scheduler="pbt", budget=PHASE * 6)


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


def test_hypertrick_budget_sets_number_of_trials():
    res = _study(scheduler=HyperTrick(r=0.5), budget=6 * 4 * PHASE * 2)
    # N = budget / (phase cost * sum (1 - r)^p) = 48 / 1.875 = 25 trials at most
    assert len(res.trials) <= 25
    assert math.isfinite(res.best_score)


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
