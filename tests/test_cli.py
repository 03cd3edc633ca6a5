"""The command line: YAML configs, tune/resume/show/best, errors that name the key."""

import json

import pytest
import yaml
from click.testing import CliRunner

import hyperjax as hj
from hyperjax.cli import main
from hyperjax.config import tune_arguments

from .conftest import SMALL_STUDY

CONFIG = dict(SMALL_STUDY, budget=6 * 4 * 256 * 2)


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
    (["callbacks=[console, tensorbored]"], r"callbacks\[1\]: callback 'tensorbored' is unknown; allowed: console"),
    (["callbacks=[{name: console, colour: red}]"], r"callbacks\[0\]: console: .*colour"),
    (["callbacks=console"], "callbacks: 'console' must be a list"),
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


@pytest.mark.parametrize("name", ["quickstart", "acrobot", "a2c_minatar"])
def test_every_shipped_config_parses(name, tmp_path, monkeypatch):
    import os

    monkeypatch.chdir(tmp_path)  # callbacks with relative log directories must not write at parse time
    with open(os.path.join(os.path.dirname(__file__), "..", "experiments", "configs", f"{name}.yaml")) as f:
        agent, space, kw = tune_arguments(yaml.safe_load(f))
    assert space.ndim >= 3 and kw["trial_steps"] >= 5 * kw["phase_steps"]
    assert all(callable(c) for c in kw.get("callbacks", []))
    assert os.listdir(tmp_path) == []


def test_callback_time_is_measured(tmp_path):
    """The engine times every callback (``timing["callbacks"]`` and per class), so what a
    watcher costs is visible in the study's own summary."""
    import time

    def slow(study, changes):
        time.sleep(0.01)

    agent, space, kw = tune_arguments(CONFIG)
    res = hj.tune(agent, space, callbacks=[slow], **kw)
    ticks = res.ticks + 1  # the final call too
    assert res.timing["callback_slow"] == pytest.approx(res.timing["callbacks"], rel=0.05)
    assert 0.01 * ticks <= res.timing["callbacks"] < 0.01 * ticks + 0.5


def test_to_optuna_command(hypertrick_store, tmp_path):
    import optuna

    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    out = CliRunner().invoke(main, ["to-optuna", hypertrick_store, url, "--name", "s"])
    assert out.exit_code == 0, out.output
    res = hj.load_study(hypertrick_store, params=False)
    study = optuna.load_study(study_name="s", storage=url)
    assert json.loads(out.output) == {"study_name": "s", "trials": len(res.trials), "storage": url}
    # Optuna's best is the highest first evaluation; hyperjax's choice carries its re-evaluation
    assert study.best_value == max(t.final_score for t in res.trials if t.scored)
    exported = {t.number: t for t in study.trials}
    assert exported[res.best.id].user_attrs["reeval_score"] == res.best.reeval_score
    assert study.user_attrs["summary"]["best"] == res.best.id
    again = CliRunner().invoke(main, ["to-optuna", hypertrick_store, url, "--name", "s"])
    assert again.exit_code != 0 and "overwrite" in again.output


def test_watch_command(hypertrick_store, tmp_path):
    from PIL import Image

    out = CliRunner().invoke(main, ["watch", hypertrick_store, "--out", str(tmp_path / "best.gif"), "--steps", "40"])
    assert out.exit_code == 0, out.output
    rec = json.loads(out.output)
    res = hj.load_study(hypertrick_store, params=False)
    assert f"trial {res.best.id}" in rec["label"] and rec["lengths"][0] <= 40
    with Image.open(tmp_path / "best.gif") as im:
        assert im.n_frames == rec["lengths"][0] + 1
    evicted = next(t.id for t in res.trials if t.status == "evicted")
    bad = CliRunner().invoke(main, ["watch", hypertrick_store, "--trial", str(evicted), "--out", str(tmp_path / "x.gif")])
    assert bad.exit_code != 0 and f"trial {evicted}" in bad.output


def test_report_command(hypertrick_store, tmp_path):
    out = CliRunner().invoke(main, ["report", hypertrick_store, "--out", str(tmp_path / "r")])
    assert out.exit_code == 0, out.output
    paths = out.output.split()
    assert str(tmp_path / "r" / "report.html") in paths and any(p.endswith("timeline.png") for p in paths)
    assert all((tmp_path / "r" / p.rsplit("/", 1)[-1]).stat().st_size > 1000 for p in paths)


def test_lazy_top_level_names():
    import sys

    import hyperjax.reports

    assert hj.report is hyperjax.reports.report and hj.reports is sys.modules["hyperjax.reports"]
    assert hj.watch is sys.modules["hyperjax.render"].watch
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        hj.nope


def test_configuration_round_trips_through_yaml():
    """Agents, spaces and every scheduler spec go to plain data, through YAML and back equal."""
    from hyperjax import config as cfg
    from hyperjax.schedulers.specs import SPECS
    from hyperjax.space import Choice, Float, Int, SearchSpace

    space = SearchSpace({"learning_rate": Float(1e-5, 1e-2, log=True), "ent_coef": Float(0.0, 0.1),
                         "t_max": Choice((2, 5, 14), ordered=True), "hidden": Choice(((32,), (64, 64))),
                         "num_envs": Int(4, 16, log=True)})
    back = cfg.space_from_dict(yaml.safe_load(yaml.safe_dump(cfg.space_to_dict(space))))
    assert back.dims == space.dims
    agent = hj.A2C(env="Breakout-MinAtar", t_max=7, hidden=(32, 16), optimizer="adam")
    assert cfg.agent_from_dict(yaml.safe_load(yaml.safe_dump(cfg.agent_to_dict(agent)))) == agent
    for name, spec_cls in SPECS.items():
        spec = spec_cls()
        assert cfg.scheduler_from_dict(yaml.safe_load(yaml.safe_dump(cfg.scheduler_to_dict(spec)))) == spec, name
    spec = hj.schedulers.PBT(interval=3, quantile=0.3)
    assert cfg.scheduler_from_dict(yaml.safe_load(yaml.safe_dump(cfg.scheduler_to_dict(spec)))) == spec
