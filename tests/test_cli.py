"""The command line: YAML configs, tune/resume/show/best, errors that name the key."""

import json

import pytest
import yaml
from click.testing import CliRunner

import hyperjax as hj
from hyperjax.cli import main
from hyperjax.config import tune_arguments

CONFIG = {
    "agent": {"name": "ppo", "env": "CartPole-v1", "num_envs": 4, "num_steps": 16, "num_minibatches": 1,
              "num_epochs": 1, "hidden": [16]},
    "space": {"learning_rate": {"type": "Float", "low": 1.0e-4, "high": 1.0e-2, "log": True},
              "gamma": {"type": "Choice", "choices": [0.9, 0.99, 0.999], "ordered": True}},
    "scheduler": {"name": "hypertrick", "r": 0.3},
    "budget": 6 * 4 * 256 * 2, "phase_steps": 256, "trial_steps": 1024, "slots": 6, "eval_episodes": 2, "seed": 3,
}


def _write(tmp_path, config=CONFIG):
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def _timeless(result) -> dict:
    """The summary line less what reads the clock (the live clock at the end of a run differs
    from the one its last commit recorded)."""
    d = json.loads(result.output.splitlines()[0])
    return {k: v for k, v in d.items() if k not in ("seconds", "tuner_fraction")}


def test_tune_show_best_resume(tmp_path):
    cfg, store = _write(tmp_path), str(tmp_path / "s")
    runner = CliRunner()
    out = runner.invoke(main, ["tune", cfg, "--store", store, "--quiet"])
    assert out.exit_code == 0, out.output
    summary = _timeless(out)
    res = hj.load_study(store)
    assert summary["trials"] == len(res.trials) and summary["best_score"] == res.best_score
    shown = runner.invoke(main, ["show", store, "--top", "3"])
    assert shown.exit_code == 0 and _timeless(shown) == summary
    assert str(res.best.id) in shown.output.splitlines()[2]  # the best completed trial heads the table
    best = runner.invoke(main, ["best", store, "--episodes", "4"])
    assert best.exit_code == 0, best.output
    b = json.loads(best.output)
    assert b["trial"] == res.best.id and b["reevaluated"] == pytest.approx(res.evaluate_best(4, seed=1))
    again = runner.invoke(main, ["resume", store, "--quiet"])  # a finished study comes back as it was
    assert again.exit_code == 0 and _timeless(again) == summary


@pytest.mark.parametrize("sets, match", [
    (["scheduler.r=1.5"], "scheduler: scheduler hypertrick: r=1.5 must be"),
    (["budgett=3"], "config: unknown key"),
    (["agent.num_envs=0"], "agent: ppo: num_envs=0 must be an integer >= 1"),
    (["space.gamma.type=Uniform"], "space: gamma: .* must be a mapping with type"),
    (["slots=0"], "tune: slots=0"),
    (["nokey"], "must look like key.sub=value"),
])
def test_bad_config_values_name_the_key(tmp_path, sets, match):
    agent_key = dict(CONFIG, agent=dict(CONFIG["agent"], hidden=[14]))  # untraced shapes
    out = CliRunner().invoke(main, ["tune", _write(tmp_path, agent_key), "--store", str(tmp_path / "s"), "--quiet",
                                    *sum((["--set", s] for s in sets), [])])
    assert out.exit_code != 0
    import re

    assert re.search(match, out.output), out.output
    assert hj.get_runner(hj.PPO(env="CartPole-v1", num_envs=4, num_steps=16, num_minibatches=1, num_epochs=1,
                                hidden=(14,))).trace_count == 0  # nothing was compiled


def test_quickstart_config_is_the_quick_start():
    import os
    import sys

    with open(os.path.join(os.path.dirname(__file__), "..", "experiments", "configs", "quickstart.yaml")) as f:
        agent, space, kw = tune_arguments(yaml.safe_load(f))
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "experiments"))
    import quickstart

    assert space.dims == quickstart.SPACE.dims and agent == hj.PPO(env="CartPole-v1")
    assert kw["scheduler"] == hj.schedulers.HyperTrick(r=0.3) and kw["budget"] == 30_000_000
    assert kw["trial_steps"] == 8 * kw["phase_steps"] == 8 * 32_768 and kw["slots"] == 32
