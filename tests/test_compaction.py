"""Compaction: when few of a pool's slots are occupied, only their members run, as a smaller
compiled population. The members it runs are the occupied ones (each with its own values), the
others stay as they were, and the arithmetic agrees with the whole population's to float
rounding; a study that compacts its tail is deterministic, resumes exactly and runs fewer
member-phases than its slots would."""

import jax
import numpy as np
import pytest

import hyperjax as hj
from hyperjax.population import get_runner
from hyperjax.study.pool import COMPACT_LEVELS, Pool, compact_sizes
from tests.test_store import PHASE, _crash_at, _same, _study

AGENT = hj.PPO(env="CartPole-v1", num_envs=4, num_steps=16, num_minibatches=1, num_epochs=1, hidden=(16,))


def _pool(slots: int, seeds: int = 1) -> Pool:
    defaults = AGENT.hparams()
    base = {n: float(getattr(defaults, n)) for n in AGENT.hparam_names()}
    pool = Pool(0, {}, AGENT, get_runner(AGENT), slots, 0, seeds, PHASE, jax.random.key(0), base)
    pool.compact_sizes = pool.compact_sizes_for(COMPACT_LEVELS)
    return pool


def test_sizes_keep_two_members_per_device():
    assert compact_sizes(32, 2, COMPACT_LEVELS) == (16, 8)
    assert compact_sizes(32, 2, 3) == (16, 8, 4)
    assert compact_sizes(8, 2, 2) == (4,)  # 2 would leave one member per device
    assert compact_sizes(8, 1, 2) == (4, 2)
    assert compact_sizes(6, 2, 2) == ()  # 3 is not a whole number per device
    assert compact_sizes(12, 2, 2) == (6,)
    assert compact_sizes(3, 1, 2) == ()
    assert compact_sizes(64, 4, 0) == ()


def _leaves(state, index):
    return [np.asarray(x)[index] for x in jax.tree.leaves(state) if not jax.dtypes.issubdtype(x.dtype,
                                                                                              jax.dtypes.prng_key)]


def test_a_compact_advance_runs_the_occupied_members_and_leaves_the_rest():
    pool = _pool(4, seeds=2)  # 8 members on 2 devices; 4 run when they hold every occupied slot
    assert pool.compact_sizes == (4,)
    for slot, lr in enumerate(np.geomspace(1e-4, 3e-2, 4)):
        pool.set_hp(slot, {"learning_rate": float(lr)})
    pool.trial[2] = 12  # members 4, 5
    busy = np.asarray([4, 5])
    start = pool.state
    pool.compile_compact().result()
    metrics = jax.device_get(pool.advance())
    ran = pool.advanced_index
    assert ran.tolist() == [0, 1, 4, 5]  # the occupied members, then the lowest idle ones
    expanded = {n: pool.expand(np.asarray(getattr(metrics, n))) for n in ("return_sum", "return_count", "entropy")}
    compact = pool.state
    pool.compact_sizes, pool.state = (), start
    full_metrics = jax.device_get(pool.advance())
    assert pool.advanced_index is None
    # the members it did not run are untouched
    rest = np.setdiff1d(np.arange(8), ran)
    for a, b in zip(_leaves(compact, rest), _leaves(start, rest)):
        np.testing.assert_array_equal(a, b)
    # the ones it ran agree with the whole population's arithmetic to float rounding (each with its
    # own learning rate: a mix-up of members or values would be far off)
    for a, b in zip(_leaves(compact, busy), _leaves(pool.state, busy)):
        np.testing.assert_allclose(a, b, rtol=2e-3, atol=2e-3)
    for name, rows in expanded.items():
        assert rows.shape[0] == 8 and (rows[rest] == 0).all()
        np.testing.assert_allclose(rows[busy], np.asarray(getattr(full_metrics, name))[busy], rtol=2e-3, atol=2e-3)


def test_a_study_compacts_its_tail_deterministically_and_resumes_exactly(monkeypatch, tmp_path):
    """8 slots on 2 devices: once at most 4 are occupied (HyperTrick's tail), populations of 4
    run; the member-phases the device ran are fewer than the slots', the budget is kept, the same
    seed gives the same study and a crash inside a compacted tick resumes to the same end."""
    kw = dict(slots=8, budget=8 * 4 * PHASE * 3)
    a, b = _study(**kw), _study(**kw)
    _same(a, b)
    util = a.slot_utilization
    assert util["compute"] > util["overall"] and a.env_steps <= kw["budget"]
    # which ticks ran compacted: the ticks table's running counts (occupied slots after the tick's
    # decisions are not what ran; the trials' segments are)
    tl = a.timeline()
    ran = {t: int(((tl.start_tick < t) & (tl.end_tick >= t)).sum()) for t in range(1, a.ticks + 1)}
    tail = [t for t, n in ran.items() if 0 < n <= 4]
    assert tail, ran
    plain = _study(compact=False, **kw)
    assert plain.slot_utilization["compute"] == plain.slot_utilization["overall"]
    d = str(tmp_path / "s")
    _crash_at(monkeypatch, {tail[1] if len(tail) > 1 else tail[0]})
    with pytest.raises(Exception, match="crash in the commit"):
        _study(store=d, **kw)
    monkeypatch.undo()
    _same(hj.resume(d), a)
