"""The seed experiment's script (experiments/hypertrick_vs_hyperband.py): its configurations
are the paper's protocol, and a tiny run produces the table's columns and resumes."""

from __future__ import annotations

import json
import math
import os
import sys

import pytest
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "experiments"))
import hypertrick_vs_hyperband as exp  # noqa: E402

from hyperjax.config import tune_arguments  # noqa: E402

CONFIGS = [exp.CONFIG, os.path.join(HERE, "..", "experiments", "configs", "hypertrick_vs_hyperband_gpu.yaml")]


@pytest.mark.parametrize("path", CONFIGS)
@pytest.mark.parametrize("smoke", [False, True])
def test_shipped_configs_are_the_papers_protocol(path, smoke):
    import hyperjax as hj

    c = exp.load_config(path, smoke=smoke)
    assert set(c["methods"]) >= {"hypertrick", "hypertrick-np5", "hyperband", "successive-halving", "random-search",
                                 "hypertrick-bnn"}
    for game in c["games"]:
        assert game.endswith("-MinAtar")
        for m in c["methods"]:
            agent, space, kw = tune_arguments(exp.study_config(c, game, m, 0))
            assert agent.name == "a2c" and agent.env == game
            lr, tmax, gamma = space.dims["learning_rate"], space.dims["t_max"], space.dims["gamma"]
            assert (lr.low, lr.high, lr.log) == (1e-5, 1e-2, True)
            assert tuple(gamma.choices) == (0.9, 0.95, 0.99, 0.995, 0.999, 0.9995, 0.9999)
            assert min(tmax.choices) == 2 and max(tmax.choices) == 100
            phases = kw["trial_steps"] // kw["phase_steps"]
            assert phases * kw["phase_steps"] == kw["trial_steps"]
            if m.startswith("hypertrick"):
                assert kw["scheduler"] == hj.schedulers.HyperTrick(r=0.25)
                assert phases == (5 if m == "hypertrick-np5" else 10)
    if smoke:
        assert c["seeds"] == 1 and len(c["games"]) == 1


def test_bad_configs_name_the_field(tmp_path):
    c = yaml.safe_load(open(exp.CONFIG))
    c["methods"]["hypertrick"]["phase"] = 3
    p = tmp_path / "bad.yaml"
    p.write_text(yaml.safe_dump(c))
    with pytest.raises(ValueError, match=r"methods.hypertrick: unknown key\(s\) \['phase'\]"):
        exp.load_config(str(p))
    c = yaml.safe_load(open(exp.CONFIG))
    c["methods"]["hypertrick"]["phases"] = 7
    p.write_text(yaml.safe_dump(c))
    with pytest.raises(ValueError, match="trial_steps=100000 is not a multiple of phases=7"):
        exp.study_config(exp.load_config(str(p)), "Breakout-MinAtar", "hypertrick", 0)


TINY = {
    "study": {"agent": {"name": "a2c", "num_envs": 4, "hidden": [16]},
              "space": {"learning_rate": {"type": "Float", "low": 1e-4, "high": 1e-2, "log": True},
                        "t_max": {"type": "Choice", "choices": [8], "ordered": True},
                        "gamma": {"type": "Choice", "choices": [0.9, 0.99], "ordered": True}},
              "budget": 9600, "trial_steps": 1280, "slots": 2, "eval_episodes": 2},
    "games": ["CartPole-v1"], "seeds": 2, "phases": 4,
    "methods": {"hypertrick": {"scheduler": {"name": "hypertrick", "r": 0.25}},
                "successive-halving": {"scheduler": {"name": "successive_halving", "eta": 2}},
                "random-search": {"scheduler": "none"}},
    "timeline": ["hypertrick", "successive-halving"],
}


def test_a_tiny_experiment_runs_resumes_and_tabulates(tmp_path, capsys):
    cfg, results, fig = tmp_path / "tiny.yaml", tmp_path / "cells.jsonl", tmp_path / "timeline.png"
    cfg.write_text(yaml.safe_dump(TINY, sort_keys=False))
    args = ["--config", str(cfg), "--results", str(results), "--figure", str(fig)]
    exp.main(args)
    rows = [json.loads(ln) for ln in results.read_text().splitlines()]
    assert [(r["method"], r["seed"]) for r in rows] == [(m, s) for s in (0, 1) for m in TINY["methods"]]
    for r in rows:
        assert r["env_steps"] <= TINY["study"]["budget"] and r["phases"] == 4
        assert 0 < r["alpha"] <= 1 and r["best_score"] is not None and math.isfinite(r["best_score"])
        assert r["time_to_best"] <= r["wall_seconds"] and set(r["best_config"]) == {"learning_rate", "t_max", "gamma"}
        if r["method"] == "random-search":
            assert r["alpha"] == 1.0  # nothing stopped early: every started trial ran all its phases
        if r["method"] == "hypertrick":
            assert r["expected_alpha"] == pytest.approx(0.6836, abs=1e-4)  # (1 + .75 + .75^2 + .75^3) / 4
            assert r["min_alpha"] == pytest.approx(r["expected_alpha"] / 2, abs=1e-4)
        else:
            assert "expected_alpha" not in r
    assert fig.exists() and fig.stat().st_size > 10_000
    # run again: every cell is on record, nothing trains, the table is printed
    capsys.readouterr()
    exp.main(args)
    assert len(results.read_text().splitlines()) == 6
    err = capsys.readouterr().err
    assert "| CartPole-v1 | hypertrick | 2 |" in err and "P(hypertrick better)" in err
    table = exp.table(rows)
    assert [t["method"] for t in table] == list(TINY["methods"])
    for t in table:
        scores = sorted(r["best_score"] for r in rows if r["method"] == t["method"])
        assert t["best_score_iqm"] == pytest.approx(sum(scores) / 2, abs=1e-3)  # two seeds: IQM is the mean
        assert t["best_score_max"] == pytest.approx(scores[-1], abs=1e-3)
