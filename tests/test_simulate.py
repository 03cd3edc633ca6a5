"""Schedulers on synthetic curves through the real engine and policies (no agent)."""

import numpy as np
import pytest

from hyperjax.schedulers import PBT, HyperTrick, SuccessiveHalving
from hyperjax.study.simulate import expected_alpha, simulate, true_final


def test_none_runs_everything_and_finds_the_best():
    r = simulate("none", slots=8, trials=64, phases=5, seed=0)
    assert r.trials == 64 and r.compute_fraction == 1.0 and r.alive_after_phase == [64] * 5
    assert r.best_found_rank == 1 and r.slot_utilization == 1.0


def test_hypertrick_keeps_slots_busy_and_saves_compute():
    r = simulate(HyperTrick(r=0.3), slots=8, trials=64, phases=5, seed=0)
    assert r.trials == 64 and r.slot_utilization == 1.0
    assert all(a >= b for a, b in zip(r.alive_after_phase, r.alive_after_phase[1:]))
    # alpha is near the paper's expectation (early arrivals continue unconditionally: above it)
    assert expected_alpha(0.3, 5) <= r.compute_fraction < 0.85
    assert r.best_found_rank <= 3


def test_successive_halving_and_pbt_through_the_engine():
    sh = simulate(SuccessiveHalving(eta=3), slots=8, trials=64, phases=9, seed=1)
    # rungs at 1, 3 and 9 phases keep the top third of each
    assert sh.alive_after_phase[0] == sh.trials // 3 and sh.alive_after_phase[-1] == sh.trials // 9
    assert 0.9 <= sh.slot_utilization <= 1.0
    pbt = simulate(PBT(interval=1, quantile=0.25), slots=8, trials=8, phases=6, seed=1)
    assert pbt.ticks == 6 and pbt.overall_utilization == 1.0 and pbt.trials > 8  # children were made


def test_true_final_is_the_noiseless_curve():
    assert true_final({"quality": 0.5, "speed": 0.0}, 3) == pytest.approx(0.0)
    hi = true_final({"quality": 0.99, "speed": 0.0}, 10)
    assert hi == pytest.approx(2.326, rel=1e-3) and np.isfinite(hi)
