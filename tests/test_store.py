"""The study store: records readable while and after a study runs, resume after a crash or a
SIGKILL at any moment ends exactly like the uninterrupted study, locks, damaged checkpoints."""

import math
import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import jax
import numpy as np
import pandas as pd
import pytest

import hyperjax as hj
from hyperjax.schedulers import PBT
from hyperjax.space import Choice, Float, SearchSpace
from hyperjax.store import StoreLocked, StudyStore
from hyperjax.store import sqlite as store_sqlite
from hyperjax.surrogate.bnn import BNNConfig
from hyperjax.surrogate.proposer import BNNProposer

AGENT = hj.PPO(env="CartPole-v1", num_envs=4, num_steps=16, num_minibatches=1, num_epochs=1, hidden=(16,))
SPACE = SearchSpace({"learning_rate": Float(1e-4, 1e-2, log=True), "gamma": Choice((0.9, 0.99, 0.999), ordered=True)})
PHASE = 4 * 16 * 4  # 4 updates per phase
# the final re-evaluation on: resumed studies must re-evaluate and choose the same
KW = dict(phase_steps=PHASE, trial_steps=4 * PHASE, slots=6, eval_episodes=2, seed=3, reevaluate=8)
STORE = dict(snapshot_seconds=0)  # a snapshot every tick: every crash point is a resume point
# what must be equal between an interrupted and an uninterrupted study (times are not)
COLS = ["trial", "status", "end_reason", "bucket", "origin", "parent", "phases", "final_score", "reeval_score",
        "last_score", "env_steps", "slot", "config/learning_rate", "config/gamma"]


def _study(scheduler="hypertrick", budget=6 * 4 * PHASE * 3, **kw):
    args = dict(KW, budget=budget, scheduler=scheduler)
    if "store" in kw:
        args.update(STORE)
    args.update(kw)
    space = args.pop("space", SPACE)
    return hj.tune(AGENT, space, **args)


def _same(a: hj.StudyResult, b: hj.StudyResult, cols=COLS):
    pd.testing.assert_frame_equal(a.dataframe()[cols], b.dataframe()[cols])
    ca, cb = a.curves(), b.curves()
    pd.testing.assert_frame_equal(ca[["trial", "env_steps", "score"]], cb[["trial", "env_steps", "score"]])
    ta, tb = a.timeline(), b.timeline()
    pd.testing.assert_frame_equal(ta[["trial", "slot", "start_tick", "end_tick", "status"]],
                                  tb[["trial", "slot", "start_tick", "end_tick", "status"]])
    assert a.best.id == b.best.id and a.best_score == b.best_score
    assert a.env_steps == b.env_steps


class Crash(Exception):
    pass


def _crash_at(monkeypatch, ticks: set[int]):
    """Makes the store raise inside tick ``t``'s SQLite transaction (after its checkpoint was
    started) for each ``t`` in ``ticks``, once: the tick is lost as in a kill during the commit."""
    original = StudyStore._write_trial

    def write_trial(self, t, params_tick):
        tick = getattr(self, "_tick_now", -1)
        if tick in ticks:
            ticks.discard(tick)
            raise Crash(f"crash in the commit of tick {tick}")
        return original(self, t, params_tick)

    original_persist = StudyStore.persist

    def persist(self, study, policy, changes, final=False):
        self._tick_now = study.tick
        return original_persist(self, study, policy, changes, final)

    monkeypatch.setattr(StudyStore, "_write_trial", write_trial)
    monkeypatch.setattr(StudyStore, "persist", persist)


@pytest.fixture(scope="module")
def reference():
    """Uninterrupted studies, by scheduler, to compare interrupted ones with."""
    return {}


def _ref(reference, name, **kw):
    if name not in reference:
        reference[name] = _study(**kw)
    return reference[name]


def test_store_records_what_the_study_returns(tmp_path, reference):
    d = str(tmp_path / "s")
    live = []  # what a reader sees while the study runs: every tick as soon as it is committed
    res = _study(store=d, callbacks=[lambda st, ch: live.append((st.tick, hj.load_study(d, params=False).ticks))])
    assert live[:-1] == [(t, t) for t in range(1, res.ticks + 1)]
    _same(res, _ref(reference, "hypertrick-sobol"))
    back = hj.load_study(str(tmp_path / "s"))
    _same(res, back, cols=COLS + ["compute_seconds", "start_time", "end_time"])
    assert back.summary()["trials"] == res.summary()["trials"]
    for a, b in zip(jax.tree.leaves(res.best_params), jax.tree.leaves(back.best_params)):
        np.testing.assert_array_equal(a, b)
    # readable without hyperjax: plain SQLite
    conn = sqlite3.connect(tmp_path / "s" / store_sqlite.FILE)
    obs = pd.read_sql("SELECT * FROM observations", conn)
    assert len(obs) == sum(len(t.curve) for t in res.trials)
    ticks = pd.read_sql("SELECT * FROM ticks", conn)
    assert list(ticks.tick) == list(range(1, res.ticks + 1))
    dec = pd.read_sql("SELECT action, COUNT(*) AS n FROM decisions GROUP BY action", conn).set_index("action").n
    assert dec["start"] == len(res.trials) and dec["complete"] == (res.dataframe().status == "completed").sum()
    conn.close()
    # the same call on the finished store returns the stored study without running it again
    again = _study(store=str(tmp_path / "s"))
    _same(res, again)


def test_store_refuses_another_configuration_and_a_second_writer(tmp_path):
    d = str(tmp_path / "s")
    _study(store=d, budget=6 * 4 * PHASE)
    with pytest.raises(ValueError, match=r"slots: 6 -> 4.*seed: 3 -> 5|seed: 3 -> 5.*slots: 6 -> 4"):
        _study(store=d, budget=6 * 4 * PHASE, slots=4, seed=5)
    w = StudyStore(d)
    try:
        with pytest.raises(StoreLocked, match="being written by pid"):
            StudyStore(d)
    finally:
        w.close()


def test_store_refuses_another_device_count(tmp_path, monkeypatch):
    """The device count is part of a study's configuration (a study is reproducible on the
    same machine and device count only): a store written with 2 devices (the tests' default
    layout) is refused with 1, and one written with 1 is refused by a resume with the default,
    each with a ValueError naming the ``devices`` field and nothing else, before any
    population is built (Pool.__init__ fails the test if called)."""
    from hyperjax.study import engine

    assert jax.device_count() == 2  # tests/conftest.py: HYPERJAX_HOST_DEVICES=2
    two = str(tmp_path / "two")
    _study(store=two, budget=6 * 4 * PHASE)  # default devices: both
    one = str(tmp_path / "one")

    def refuse(self, *args, **kwargs):
        raise AssertionError("a population was built before the error")

    monkeypatch.setattr(engine.Pool, "__init__", refuse)
    # a one-device study killed while it built its pools: the store holds its configuration
    with pytest.raises(AssertionError, match="a population was built"):
        _study(store=one, budget=6 * 4 * PHASE, devices=jax.devices()[:1])
    assert hj.store.load_meta(one)["config"]["devices"] == 1
    assert hj.store.load_meta(two)["config"]["devices"] == 2
    only_devices = r"holds a study with another configuration; differing fields: devices: {} -> {} \(use another"
    with pytest.raises(ValueError, match=only_devices.format(2, 1)):
        _study(store=two, budget=6 * 4 * PHASE, devices=jax.devices()[:1])
    with pytest.raises(ValueError, match=only_devices.format(2, 1)):
        hj.resume(two, devices=jax.devices()[:1])
    with pytest.raises(ValueError, match=only_devices.format(1, 2)):
        hj.resume(one)  # the default devices: both
    with pytest.raises(ValueError, match=only_devices.format(1, 2)):
        _study(store=one, budget=6 * 4 * PHASE)


def _host(x) -> np.ndarray:
    return np.asarray(jax.random.key_data(x) if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key) else x)


def _table(d: str, sql: str) -> pd.DataFrame:
    conn = sqlite3.connect(f"file:{os.path.join(d, store_sqlite.FILE)}?mode=ro", uri=True)
    try:
        return pd.read_sql(sql, conn)
    finally:
        conn.close()


def test_snapshot_every_k_ticks_records_every_tick(tmp_path, monkeypatch, reference):
    """``snapshot_every=3`` (with ``snapshot_seconds=0``: no rate limit): every tick's records
    are committed (a ``ticks`` row, the observations and decisions of each), but the host
    state and device checkpoint (a resume point) only at ticks 3, 6, 9, ...; a crash in the
    commit of tick 8 resumes from tick 6 (tick 7 is run again) and ends like the uninterrupted
    study."""
    ref = _ref(reference, "hypertrick-sobol")
    assert ref.ticks >= 9
    d = str(tmp_path / "s")
    _crash_at(monkeypatch, {8})
    with pytest.raises(Crash):
        _study(store=d, snapshot_every=3)
    ticks = _table(d, "SELECT tick, snapshot FROM ticks ORDER BY tick")
    assert list(ticks.tick) == list(range(1, 8))  # every tick before the crash was recorded
    assert list(ticks.snapshot) == [int(t % 3 == 0) for t in ticks.tick]
    assert list(_table(d, "SELECT tick FROM snapshots ORDER BY tick").tick) == [3, 6]
    assert set(_table(d, "SELECT DISTINCT tick FROM observations").tick) == set(range(1, 8))
    assert sorted(os.listdir(os.path.join(d, "checkpoints"))) == ["tick_00000003", "tick_00000006"]
    w = StudyStore(d)
    try:
        assert w.resume_points() == [6, 3]
    finally:
        w.close()
    resumed_at = []
    got = _study(store=d, snapshot_every=3, callbacks=[lambda st, ch: resumed_at.append(st.tick)])
    assert resumed_at[0] == 7  # the first tick after the snapshot of tick 6
    _same(ref, got)
    ticks = _table(d, "SELECT tick, snapshot FROM ticks ORDER BY tick")
    assert list(ticks.tick) == list(range(1, ref.ticks + 1))
    assert list(ticks.snapshot) == [int(t % 3 == 0) for t in ticks.tick]
    assert set(_table(d, "SELECT DISTINCT tick FROM observations").tick) == set(range(1, ref.ticks + 1))
    assert all(t % 3 == 0 for t in _table(d, "SELECT tick FROM snapshots").tick)


def test_keep_params_false_keeps_only_the_best_trials_parameters(tmp_path):
    """``keep_params=False``: the store keeps the final members of a completed trial only if
    it was the study's best when it completed (``params_tick`` set exactly for the trials the
    ``ticks`` table ever names as best, and the final best, which the re-evaluation of the
    leaders may choose among trials that never were); the final best's members load and equal
    the live result's; another completed trial's raise a ValueError naming it and the saved trials."""
    from hyperjax.study.reader import load_trial_params

    d = str(tmp_path / "s")
    res = _study(store=d, keep_params=False)
    trials = _table(d, "SELECT id, status, params_tick FROM trials ORDER BY id")
    saved = set(trials.id[trials.params_tick.notna()])
    bests = set(_table(d, "SELECT DISTINCT best_trial FROM ticks WHERE best_trial >= 0").best_trial)
    assert saved == bests | {res.best.id}
    completed = set(trials.id[trials.status == "completed"])
    unsaved = sorted(completed - saved)
    assert len(unsaved) >= 2, "completed trials that were never the best"
    # the params/ directory holds the ticks of the saved trials only
    ticks = set(trials.params_tick[trials.params_tick.notna()].astype(int))
    assert sorted(os.listdir(os.path.join(d, "params"))) == [f"tick_{t:08d}" for t in sorted(ticks)]
    agent, members = load_trial_params(d, res.best.id)
    assert agent == res.best_agent
    for a, b in zip(jax.tree.leaves(members), jax.tree.leaves(res.best_state), strict=True):
        np.testing.assert_array_equal(_host(a), _host(b))
    listed = ", ".join(map(str, sorted(saved)))
    for tid in unsaved:
        with pytest.raises(ValueError, match=rf"trial {tid} has no saved parameters \(status completed.*"
                                             rf"trials with saved parameters: {listed}$"):
            load_trial_params(d, tid)
    back = hj.load_study(d)  # the best's parameters are what load_study gives back
    for a, b in zip(jax.tree.leaves(back.best_params), jax.tree.leaves(res.best_params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("bad, match", [("", "must be a directory path"), ("FILE", "is not a directory"),
                                        ("FILE/sub", "is a file, not a directory")])
def test_bad_store_paths_fail_before_compiling(tmp_path, bad, match):
    f = tmp_path / "f.txt"
    f.write_text("x")
    path = bad.replace("FILE", str(f))
    agent = AGENT.replace(hidden=(11,))  # a bucket no other test builds: its programs start untraced
    with pytest.raises(ValueError, match="tune: store=.*" + match):
        hj.tune(agent, SPACE, budget=10**6, store=path, **KW)
    assert hj.get_runner(agent).trace_count == 0


@pytest.mark.parametrize("scheduler, crashes, proposer", [
    ("hypertrick", {3, 9, 10}, "sobol"), ("asha", {2, 6}, "random"), ("successive_halving", {5, 12}, "sobol"),
    (PBT(interval=1, quantile=0.34), {2, 3}, "sobol"), ("hyperband", {3, 7}, "sobol"), ("median", {2, 6}, "sobol")])
def test_crashed_study_resumes_exactly(tmp_path, monkeypatch, reference, scheduler, crashes, proposer):
    name = getattr(scheduler, "name", scheduler)
    budget = 6 * 4 * PHASE * (1 if name == "pbt" else 3)
    ref = _ref(reference, f"{name}-{proposer}", scheduler=scheduler, budget=budget, proposer=proposer)
    d = str(tmp_path / "s")
    expected_runs = len(crashes) + 1
    _crash_at(monkeypatch, set(crashes))
    runs = 0
    while True:
        runs += 1
        try:
            got = _study(scheduler=scheduler, budget=budget, store=d, proposer=proposer)
            break
        except Crash:
            # a reader sees the last committed tick while the study is down
            partial = hj.load_study(d, params=False)
            assert partial.ticks < ref.ticks
    assert runs == expected_runs  # every crash happened, and each resume went on from it
    _same(ref, got)
    _same(ref, hj.load_study(d))


def test_a_store_without_the_retraining_continues_without_it(tmp_path, monkeypatch):
    """A store records ``reevaluate_seeds`` only when it is not 0 (stores written before
    ``"auto"`` became the default never record it): the same call with the default, or
    ``hj.resume``, continues such a study with 0 (neither refused for a changed configuration
    nor retrained at the end, though "auto" would retrain at this budget), ending exactly like
    the uninterrupted study; a number given for it is another configuration."""
    budget = 64 * 4 * PHASE  # "auto" retrains the leaders from this budget up
    ref = _study(budget=budget, reevaluate_seeds=0)
    d = str(tmp_path / "s")
    _crash_at(monkeypatch, {3})
    with pytest.raises(Crash):
        _study(budget=budget, reevaluate_seeds=0, store=d)
    got = _study(budget=budget, store=d)  # reevaluate_seeds="auto"
    _same(ref, got)
    assert got.selection["reevaluate_seeds"] == 0 and not any(t.reseed_scores for t in got.trials)
    _same(ref, hj.resume(d))
    with pytest.raises(ValueError, match=r"reevaluate_seeds: \(absent\) -> 2"):
        _study(budget=budget, store=d, reevaluate_seeds=2)


def test_resume_falls_back_past_a_damaged_checkpoint(tmp_path, monkeypatch, reference):
    ref = _ref(reference, "hypertrick-sobol")
    d = tmp_path / "s"
    _crash_at(monkeypatch, {8})
    with pytest.raises(Crash):
        _study(store=str(d), snapshot_seconds=0)
    w = StudyStore(str(d))
    points = w.resume_points()
    w.close()
    assert len(points) == 2 and points[0] < 8  # the last two snapshots are kept
    # damage the newest resume point's checkpoint: its array data is gone
    for root, _, files in os.walk(d / "checkpoints" / f"tick_{points[0]:08d}"):
        for f in files:
            if f != "_CHECKPOINT_METADATA":
                open(os.path.join(root, f), "wb").close()
    with pytest.warns(UserWarning, match=f"checkpoint of tick {points[0]} could not be read"):
        got = _study(store=str(d))
    _same(ref, got)


@pytest.mark.parametrize("scheduler", ["hypertrick", "extrapolate", "pb2"])
def test_bnn_proposer_resumes_exactly(tmp_path, monkeypatch, scheduler):
    """The BNN's history, posterior, warm-start guide parameters, warp, key, Sobol position and
    generator come back; so do the extrapolation rule's incumbent and record."""

    def proposer():
        return BNNProposer(SPACE, seed=1, target_budget=4 * PHASE, min_observations=4, num_candidates=64,
                           num_local=8, config=BNNConfig(hidden=(8,), svi_steps=100, svi_warm_steps=30, ensemble=2,
                                                         num_draws=16))

    budget = 6 * 4 * PHASE * 2
    ref = _study(budget=budget, proposer=proposer(), scheduler=scheduler)
    assert ref.proposer.posterior is not None  # the surrogate did steer refills
    if scheduler == "pb2":
        assert ref.proposer.counts.get("explore", 0) > 0  # ... and PB2's explore steps
    d = str(tmp_path / "s")
    _crash_at(monkeypatch, {4, 7})
    for _ in range(3):
        try:
            got = (hj.resume(d, proposer=proposer()) if os.path.exists(d)
                   else _study(budget=budget, proposer=proposer(), store=d, scheduler=scheduler))
            break
        except Crash:
            continue
    _same(ref, got)


CHILD = textwrap.dedent("""
    import os, signal, sys, threading, time
    import hyperjax as hj
    from hyperjax.store import sqlite as S, checkpoint as C
    sys.path.insert(0, {tests!r})
    import test_store as T
    mode, at = sys.argv[1], int(sys.argv[2])
    # ticks of real studies take seconds, these take milliseconds: 50 ms more per tick keeps
    # the kills below inside the study rather than after its end
    slow = S.StudyStore.persist
    def persist_slowly(self, *a, **k):
        time.sleep(0.05)
        return slow(self, *a, **k)
    S.StudyStore.persist = persist_slowly
    if mode == "commit":  # SIGKILL inside the SQLite transaction of tick `at`
        orig = S.StudyStore._write_trial
        def wt(self, t, pt):
            if getattr(self, '_tick', -1) >= at:
                os.kill(os.getpid(), signal.SIGKILL)
            return orig(self, t, pt)
        S.StudyStore._write_trial = wt
        op = S.StudyStore.persist
        def persist(self, study, *a, **k):
            self._tick = study.tick
            return op(self, study, *a, **k)
        S.StudyStore.persist = persist
    elif mode == "checkpoint":  # SIGKILL in the middle of the first checkpoint write from tick `at` on
        # each tick waits for the writes before it: a busy writer skips snapshots, and a loaded
        # machine could otherwise finish the study before any snapshot from tick `at` began
        timed = S.StudyStore.persist
        def persist_after_writes(self, *a, **k):
            self.wait()
            return timed(self, *a, **k)
        S.StudyStore.persist = persist_after_writes
        orig = C.Checkpoints.save
        def save(self, tick, tree):
            if tick >= at and self.root.endswith("checkpoints"):
                threading.Timer(0.01, os.kill, (os.getpid(), signal.SIGKILL)).start()
            orig(self, tick, tree)
        C.Checkpoints.save = save
    # snapshots as by default (one write at a time, none queued), at any interval
    T._study(store={store!r}, budget=T.LONG, snapshot_seconds=1e-9)
""")
LONG = 6 * 4 * PHASE * 6  # about 24 ticks: room for three kills before the end


def _committed(d: str) -> int:
    path = os.path.join(d, store_sqlite.FILE)
    if not os.path.exists(path):
        return 0
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT COALESCE(MAX(tick), 0) FROM ticks").fetchone()[0]
    except sqlite3.OperationalError:  # the schema is not written yet
        return 0
    finally:
        conn.close()


def test_sigkill_at_any_moment_resumes_exactly(tmp_path, reference):
    """A real study in a subprocess, killed with SIGKILL inside a checkpoint write, inside the
    SQLite commit and at a random moment, resumed each time; then finished in this process."""
    ref = _ref(reference, "hypertrick-long", budget=LONG)
    d = str(tmp_path / "s")
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(tests=os.path.dirname(__file__), store=d))
    env = dict(os.environ)
    seen_ticks = []
    for mode, at in (("checkpoint", 4), ("commit", 9), ("random", 0)):
        assert _committed(d) < ref.ticks
        p = subprocess.Popen([sys.executable, str(script), mode, str(at)], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if mode == "random":
            # once a tick beyond the last kill's is committed, kill at an arbitrary moment
            deadline = time.monotonic() + 300
            while p.poll() is None and time.monotonic() < deadline:
                if _committed(d) > seen_ticks[-1] + 1:
                    break
                time.sleep(0.002)
            time.sleep(random.Random(0).uniform(0.0, 0.03))  # ticks take ~10-50 ms here
            p.send_signal(signal.SIGKILL)
        err = p.communicate(timeout=600)[1]
        assert p.returncode == -signal.SIGKILL, (mode, seen_ticks, _committed(d), err.decode()[-2000:])
        back = hj.load_study(d, params=False)  # readable after a kill
        seen_ticks.append(back.ticks)
        assert back.ticks < ref.ticks
    assert seen_ticks[0] >= 3 and seen_ticks[1] >= 8
    assert ref.ticks >= 20
    got = hj.resume(d)
    _same(ref, got)


def test_a_store_from_before_entropies_reads_and_gains_the_column(hypertrick_store, tmp_path):
    """Stores written before ``observations.entropy`` existed: readers give NaN entropies, and
    a writer opening one adds the column (NULL in the old rows) instead of failing its inserts."""
    import shutil

    old = str(tmp_path / "old")
    shutil.copytree(hypertrick_store, old)
    conn = sqlite3.connect(os.path.join(old, store_sqlite.FILE))
    conn.execute("ALTER TABLE observations DROP COLUMN entropy")
    conn.execute("ALTER TABLE trials DROP COLUMN reeval_score")  # and before the final re-evaluation
    conn.execute("ALTER TABLE trials DROP COLUMN reeval_scores")
    conn.commit()
    conn.close()
    res = hj.load_study(old, params=False)
    assert all(len(t.entropy_curve) == len(t.curve) and all(np.isnan(t.entropy_curve)) for t in res.trials)
    assert all(math.isnan(t.reeval_score) and t.reeval_scores == [] for t in res.trials)
    conn = store_sqlite.connect(old)  # the writer's connection
    try:
        columns = [r[1] for r in conn.execute("PRAGMA table_info(observations)")]
        assert columns[-1] == "entropy" and conn.execute("SELECT count(entropy) FROM observations").fetchone()[0] == 0
        columns = [r[1] for r in conn.execute("PRAGMA table_info(trials)")]
        assert columns[-2:] == ["reeval_score", "reeval_scores"]
    finally:
        conn.close()
