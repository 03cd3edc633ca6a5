"""The race's summaries (benchmarks/race.py): the table and the anytime curves from result rows,
without running a study."""

import json

import numpy as np

from benchmarks import race


def _rows():
    rows = []
    for seed, (ours, peer) in enumerate([(-80.0, -90.0), (-82.0, -85.0), (-81.0, -88.0)]):
        # an incumbent from the second tick on: score -76 + seed, then -72 from 100 s
        curve = [[10.0, 10**6, None], [20.0, 2 * 10**6, -76.0 + seed], [100.0, 10**7, -72.0], [200.0, 2 * 10**7, -72.0]]
        rows.append({"task": "Acrobot-v1", "method": "default", "seed": seed, "seconds": 300.0, "tuning_score": -72.0,
                     "test_return": ours, "heldout_return": ours + 1, "wall_seconds": 200.0, "env_steps": 2 * 10**7,
                     "slot_utilization": 0.95, "tuner_fraction": 0.01, "anytime": curve})
        rows.append({"task": "Acrobot-v1", "method": "peer", "seed": seed, "seconds": 300.0, "tuning_score": -74.0 - seed,
                     "test_return": peer, "wall_seconds": 300.0, "env_steps": 10**7, "anytime": []})
    return rows


def test_step_on_grid_holds_the_incumbent_and_is_nan_before_it():
    curve = [[10.0, 1, None], [20.0, 2, -5.0], [40.0, 4, -3.0]]
    got = race._step_on_grid(curve, 0, np.array([0.0, 15.0, 20.0, 39.9, 40.0, 99.0]))
    np.testing.assert_array_equal(got, [np.nan, np.nan, -5.0, -5.0, -3.0, -3.0])
    np.testing.assert_array_equal(race._step_on_grid(curve, 1, np.array([3.0])), [-5.0])  # env-step axis
    assert np.isnan(race._step_on_grid([[5.0, 1, None]], 0, np.array([1.0, 9.0]))).all()


def test_table_and_plot_from_result_rows(tmp_path):
    path = tmp_path / "race.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in _rows()))
    rows = {r["method"]: r for r in race.table(str(path))}
    assert rows["default"]["seeds"] == 3 and rows["peer"]["seeds"] == 3
    assert abs(rows["default"]["test_return_iqm"] - (-81.0)) < 1.0 and rows["peer"]["test_return_iqm"] < -84
    lo, hi = rows["default"]["test_return_ci"]
    assert lo <= rows["default"]["test_return_iqm"] <= hi
    # the peer's median tuning score is -75: seeds 0 and 1 pass it at 20 s, seed 2 at 100 s
    assert rows["default"]["seconds_to_peer_median"] == 20.0 and rows["default"]["reached_peer_median"] == 3
    assert "test_return_first_iqm" not in rows["default"]  # no paired pick in these rows
    png = tmp_path / "anytime.png"
    race.plot(str(path), str(png))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_table_pairs_the_reevaluated_pick_with_the_first(tmp_path):
    """Rows of method ``reeval`` carry the test return of the same study's highest-first-
    evaluation pick: the table gives its IQM beside, how often the picks differ and how often
    the re-evaluated one did better."""
    rows = []
    for seed, (re, first, same) in enumerate([(-79.0, -82.0, False), (-80.0, -80.0, True), (-78.0, -77.0, False)]):
        rows.append({"task": "Acrobot-v1", "method": "reeval", "seed": seed, "seconds": 300.0, "tuning_score": -72.0,
                     "test_return": re, "test_return_first": first, "first_pick": {"same": same},
                     "wall_seconds": 288.0, "env_steps": 10**8, "anytime": []})
    path = tmp_path / "race.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    (row,) = race.table(str(path))
    assert row["picks_differ"] == 2 and row["reeval_better"] == 1
    assert abs(row["test_return_first_iqm"] - (-80.0)) < 1.5 and abs(row["test_return_iqm"] - (-79.0)) < 1.0
    lo, hi = row["test_return_first_ci"]
    assert lo <= row["test_return_first_iqm"] <= hi
