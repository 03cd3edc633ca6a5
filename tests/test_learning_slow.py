"""Learning checks (minutes each): run with ``python -m pytest -m slow``."""

import numpy as np
import pytest

from benchmarks.learning import run

pytestmark = pytest.mark.slow


def test_ppo_solves_cartpole_for_most_seeds():
    rows = run("ppo-cartpole", seeds=3)
    assert sum(r["eval_return"] >= 475 for r in rows) >= 2, rows


def test_a2c_learns_cartpole():
    rows = run("a2c-cartpole", seeds=3)
    assert np.median([r["eval_return"] for r in rows]) >= 200, rows


def test_brax_trains_end_to_end():
    pytest.importorskip("brax")
    rows = run("brax", seeds=2, timesteps=32 * 64 * 10)
    assert all(np.isfinite(r["eval_return"]) for r in rows), rows
