import numpy as np

from hyperjax.schedulers.simulate import simulate_async, simulate_successive_halving, synthetic_curves


def test_slot_simulation_invariants():
    rng = np.random.default_rng(0)
    curves = synthetic_curves(rng, 64, 5)
    none = simulate_async("none", curves, 8, rng)
    assert none.compute_fraction == 1.0 and none.alive_after_phase == [64] * 5
    ht = simulate_async("hypertrick", curves, 8, rng, r=0.3)
    assert ht.slot_utilization >= 0.95 and ht.compute_fraction < 1.0
    assert all(a >= b for a, b in zip(ht.alive_after_phase, ht.alive_after_phase[1:]))
    sh = simulate_successive_halving(curves, 8, eta=3)
    assert sh.alive_after_phase[-1] == 64 // 3 // 3 and sh.best_found_rank >= 1
