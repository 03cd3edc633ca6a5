"""Early-stopping rules on synthetic scores, with no agent at all."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hyperjax.schedulers.early_stopping import asha, hypertrick, median_stopping, no_stopping


def _simulate(sched, n, phases, rng):
    """Every trial arrives at each phase in random order with i.i.d. scores; count survivors."""
    state = sched.init()
    alive = np.ones(n, bool)
    decide = jax.jit(sched.decide)
    survivors = []
    for p in range(phases):
        order = rng.permutation(np.flatnonzero(alive))
        scores = rng.normal(size=len(order)).astype(np.float32)
        state, keep = decide(state, np.full(len(order), p), scores, np.ones(len(order), bool))
        alive[order[~np.asarray(keep)]] = False
        survivors.append(alive.sum())
    return np.asarray(survivors)


def test_hypertrick_expected_survivors():
    n, r, phases = 256, 0.25, 6
    sched = hypertrick(n, r, phases)
    rng = np.random.default_rng(0)
    runs = np.stack([_simulate(sched, n, phases, rng) for _ in range(20)])
    expected = n * (1 - r) ** np.arange(1, phases + 1)
    np.testing.assert_allclose(runs.mean(0), expected, rtol=0.06)


def test_hypertrick_early_arrivals_continue_unconditionally():
    n, r = 100, 0.25
    sched = hypertrick(n, r, 2)
    free = int(n * (1 - np.sqrt(r)))  # 50 at phase 1
    scores = -np.arange(60, dtype=np.float32)  # arriving worse and worse
    state, keep = sched.decide(sched.init(), np.zeros(60, int), scores, np.ones(60, bool))
    keep = np.asarray(keep)
    assert keep[:free].all() and not keep[free:].any()


def test_failed_member_never_kept_nor_recorded():
    sched = hypertrick(10, 0.25, 2)
    state, keep = sched.decide(sched.init(), np.zeros(3, int), np.array([1.0, np.nan, np.inf * -1], np.float32), np.ones(3, bool))
    assert np.asarray(keep).tolist() == [True, False, False]
    assert int(state.count[0]) == 1


def test_asha_keeps_top_fraction():
    sched = asha(3, 1, 300)
    rng = np.random.default_rng(1)
    scores = rng.normal(size=300).astype(np.float32)
    _, keep = sched.decide(sched.init(), np.zeros(300, int), scores, np.ones(300, bool))
    frac = np.asarray(keep)[100:].mean()  # after a warm-up the promoted fraction is ~1/eta
    assert abs(frac - 1 / 3) < 0.07


def test_median_and_none():
    rng = np.random.default_rng(2)
    s = rng.normal(size=200).astype(np.float32)
    _, keep = median_stopping(1, 200).decide(median_stopping(1, 200).init(), np.zeros(200, int), s, np.ones(200, bool))
    assert 0.4 < np.asarray(keep)[50:].mean() < 0.65
    sched = no_stopping(1, 200)
    _, keep = sched.decide(sched.init(), np.zeros(200, int), s, np.ones(200, bool))
    assert np.asarray(keep).all()


def test_not_arrived_untouched():
    sched = asha(3, 2, 10)
    state, keep = sched.decide(sched.init(), np.zeros(3, int), np.array([5.0, -5.0, 0.0], np.float32), np.array([False, True, False]))
    assert np.asarray(keep).tolist() == [True, True, True] and int(state.count[0]) == 1


@pytest.mark.parametrize("r", [0.0, 1.0, 1.5])
def test_bad_rates(r):
    with pytest.raises(ValueError, match=rf"r={r!r} must be in \(0, 1\)"):
        hypertrick(10, r, 3)


def test_bad_eta():
    with pytest.raises(ValueError, match=r"eta=1 must be >= 2"):
        asha(1, 3, 10)


def test_pbt_bottom_copies_top_and_perturbs():
    from hyperjax.schedulers.pbt import pbt_exploit

    scores = jnp.asarray([5.0, 1.0, 9.0, 3.0, jnp.nan, 7.0, 2.0, 8.0])
    hp = {"lr": jnp.arange(1, 9, dtype=jnp.float32)}
    source, new, replaced = pbt_exploit(jax.random.key(0), scores, hp, quantile=0.25)
    source, replaced = np.asarray(source), np.asarray(replaced)
    assert replaced.tolist() == [False, True, False, False, True, False, False, False]  # 1.0 and NaN
    assert set(source[replaced]) <= {2, 7}  # the top quarter: 9.0 and 8.0
    assert (source[~replaced] == np.flatnonzero(~replaced)).all()
    ratio = np.asarray(new["lr"])[replaced] / np.asarray(hp["lr"])[source[replaced]]
    assert np.all(np.isclose(ratio, 0.8) | np.isclose(ratio, 1.2))
    np.testing.assert_array_equal(np.asarray(new["lr"])[~replaced], np.asarray(hp["lr"])[~replaced])
