"""Optuna export: a hyperjax study's store written into an Optuna SQLite storage reads back with
the same trials, states, params, distributions, curves, best value and PBT lineages, and
optuna.visualization draws it."""

import datetime
import json
import math
import sqlite3
import sys

import pytest

optuna = pytest.importorskip("optuna")

import hyperjax as hj  # noqa: E402
from hyperjax.interop import to_optuna  # noqa: E402
from hyperjax.interop import optuna as hjo  # noqa: E402

State = optuna.trial.TrialState
STATES = {"completed": State.COMPLETE, "evicted": State.PRUNED, "failed": State.FAIL, "stopped": State.FAIL,
          "running": State.RUNNING, "paused": State.RUNNING, "queued": State.WAITING}


@pytest.fixture(autouse=True)
def _quiet():
    optuna.logging.set_verbosity(optuna.logging.WARNING)


def _url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'optuna.db'}"


def _export_and_load(store, tmp_path, name="s"):
    url = _url(tmp_path)
    to_optuna(store, url, name)
    return optuna.load_study(study_name=name, storage=url), hj.load_study(store, params=False)


def _check_same(loaded, res):
    """Every hyperjax trial is the Optuna trial of the same number, with matching contents."""
    assert len(loaded.trials) == len(res.trials) > 0
    for ot, t in zip(loaded.trials, res.trials):
        assert ot.number == t.id == ot.user_attrs["hyperjax_trial"]
        nan_eval = t.status == "completed" and math.isnan(t.final_score)  # Optuna fails a NaN objective
        assert ot.state == (State.FAIL if nan_eval else STATES[t.status]), (t.id, t.status, ot.state)
        assert ot.user_attrs["status"] == t.status and ot.user_attrs["end_reason"] == t.end_reason
        if ot.state == State.COMPLETE:
            assert ot.value == pytest.approx(t.final_score)
        else:
            assert ot.value is None
        # the curve at its env steps, NaN points left out and listed
        want = {s: c for s, c in zip(t.curve_steps, t.curve) if not math.isnan(c)}
        assert ot.intermediate_values == pytest.approx(want)
        nan_steps = [s for s, c in zip(t.curve_steps, t.curve) if math.isnan(c)]
        assert ot.user_attrs.get("nan_score_steps", []) == nan_steps
        for name, dim in res.space.dims.items():
            assert ot.params[name] == hjo.param_value(dim, t.config[name])
        assert set(ot.params) == set(res.space.names)
        assert ot.user_attrs["fixed"] == {k: v for k, v in t.config.items() if k not in res.space.names}
        assert ot.user_attrs["env_steps"] == t.env_steps and ot.user_attrs["bucket"] == t.bucket
        assert ot.user_attrs["final_scores"] == [None if math.isnan(v) else v for v in t.final_scores]
        assert ot.user_attrs["segments"] == [
            dict(zip(("slot", "start_s", "end_s", "start_tick", "end_tick"), seg)) for seg in t.segments]
        assert ot.user_attrs["origin"] == t.origin and ot.user_attrs["parent"] == t.parent
        assert ot.user_attrs["lineage"] == [a.id for a in res.lineage(t.id)]
        assert (ot.datetime_start is None) == (ot.state == State.WAITING)
        assert (ot.datetime_complete is None) == (not ot.state.is_finished())
        if ot.state.is_finished() and t.segments:  # its span is its slot segments' span
            span = (ot.datetime_complete - ot.datetime_start).total_seconds()
            assert span == pytest.approx(t.end_time - t.start_time, abs=1e-3)


def test_hypertrick_round_trip(hypertrick_store, tmp_path):
    loaded, res = _export_and_load(hypertrick_store, tmp_path)
    _check_same(loaded, res)
    states = {t.state for t in loaded.trials}
    assert State.COMPLETE in states and State.PRUNED in states  # HyperTrick evicted some
    assert loaded.direction == optuna.study.StudyDirection.MAXIMIZE
    # Optuna's best: the highest first evaluation (hyperjax's choice re-evaluated its leaders)
    top = max((t for t in res.trials if t.scored), key=lambda t: (t.final_score, -t.id))
    assert loaded.best_value == pytest.approx(top.final_score) and loaded.best_trial.number == top.id
    assert loaded.trials[res.best.id].user_attrs["reeval_score"] == res.best.reeval_score
    reevaluated = {t.number for t in loaded.trials if "reeval_score" in t.user_attrs}
    assert reevaluated == {t.id for t in res.trials if math.isfinite(t.reeval_score)} and len(reevaluated) == 8
    assert loaded.metric_names == ["final_score"]
    # the distributions come from the search space
    d = loaded.trials[0].distributions
    assert d["learning_rate"] == optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True)
    assert d["gamma"] == optuna.distributions.CategoricalDistribution([0.9, 0.99, 0.999])
    # the study's configuration and provenance
    attrs = loaded.user_attrs
    assert attrs["scheduler"] == {"name": "hypertrick", "r": 0.3}
    assert attrs["agent"]["name"] == "ppo" and attrs["budget"] == 6 * 4 * 256 * 4
    assert attrs["space"]["learning_rate"]["type"] == "Float"
    assert attrs["hyperjax_version"] == hj.__version__ and attrs["status"] == "finished"
    assert attrs["summary"]["best"] == res.best.id
    # times: the first trial started `start_time` seconds after the store was created
    created = datetime.datetime.fromisoformat(attrs["created"]).astimezone().replace(tzinfo=None)
    first = loaded.trials[0]
    offset = (first.datetime_start - created).total_seconds()
    assert offset == pytest.approx(res.trials[0].start_time, abs=1e-3)


def test_visualization_runs_on_loaded_study(hypertrick_store, tmp_path):
    loaded, res = _export_and_load(hypertrick_store, tmp_path)
    done = [t for t in res.trials if t.status == "completed"]
    hist = optuna.visualization.plot_optimization_history(loaded)
    objective = next(tr for tr in hist.data if tr.name == "Objective Value")
    assert sorted(objective.y) == pytest.approx(sorted(t.final_score for t in done))
    best = next(tr for tr in hist.data if tr.name == "Best Value")
    assert max(best.y) == pytest.approx(max(t.final_score for t in done))
    inter = optuna.visualization.plot_intermediate_values(loaded)
    assert {tr.name for tr in inter.data} == {f"Trial{t.id}" for t in res.trials if t.curve}
    imp = optuna.visualization.plot_param_importances(loaded)
    assert set(imp.data[0].y) == {"learning_rate", "gamma"}
    assert sum(imp.data[0].x) == pytest.approx(1.0, abs=0.01)


def test_pbt_parent_links(pbt_store, tmp_path):
    loaded, res = _export_and_load(pbt_store, tmp_path)
    _check_same(loaded, res)
    children = [t for t in loaded.trials if t.user_attrs["origin"] == "pbt"]
    assert children, "the PBT study made no exploit/explore children"
    for c in children:
        parent = loaded.trials[c.user_attrs["parent"]]
        assert c.user_attrs["lineage"][-2:] == [parent.number, c.number]
        # a child's curve goes on from where it forked off its parent
        assert min(c.intermediate_values) > min(parent.intermediate_values)
    assert loaded.best_value == pytest.approx(max(t.final_score for t in res.trials if t.scored))
    optuna.visualization.plot_intermediate_values(loaded)


def _edited_copy(store, tmp_path):
    """A copy of a finished study's store made to look like a running one with every status,
    a NaN score, a completed trial with a NaN evaluation, a tuple-valued choice and an Int."""
    dst = tmp_path / "edited"
    dst.mkdir()
    src = sqlite3.connect(f"file:{store}/study.sqlite?mode=ro", uri=True)
    out = sqlite3.connect(dst / "study.sqlite")
    src.backup(out)
    src.close()
    config = json.loads(out.execute("SELECT value FROM study WHERE key='config'").fetchone()[0])
    config["space"]["hidden"] = {"type": "Choice", "choices": [[16], [32, 32]], "ordered": False}
    config["space"]["num_steps"] = {"type": "Int", "low": 8, "high": 32, "log": False, "q": 8}
    out.execute("UPDATE study SET value=? WHERE key='config'", (json.dumps(config),))
    out.execute("UPDATE study SET value='\"running\"' WHERE key='status'")
    for (tid, cfg) in out.execute("SELECT id, config FROM trials").fetchall():
        cfg = json.loads(cfg)
        cfg.update(hidden=[32, 32] if tid % 2 else [16], num_steps=16 if tid % 3 else 24)
        out.execute("UPDATE trials SET config=? WHERE id=?", (json.dumps(cfg), tid))
    edits = {1: "running", 2: "paused", 3: "stopped", 4: "failed"}
    for tid, status in edits.items():
        out.execute("UPDATE trials SET status=?, end_reason=?, final_score=NULL WHERE id=?",
                    (status, "non-finite values" if status == "failed" else "", tid))
    out.execute("UPDATE trials SET final_score=NULL WHERE id=5")  # completed, NaN evaluation
    out.execute("UPDATE observations SET score=NULL WHERE trial=4 AND phase=1")  # a NaN score
    last = out.execute("SELECT MAX(id) FROM trials").fetchone()[0]
    out.execute("UPDATE trials SET status='queued' WHERE id=?", (last,))
    out.execute("DELETE FROM observations WHERE trial=?", (last,))
    out.execute("DELETE FROM segments WHERE trial=?", (last,))
    out.commit()
    out.close()
    return str(dst), last


def test_every_status_nan_scores_and_odd_choices(hypertrick_store, tmp_path):
    store, queued = _edited_copy(hypertrick_store, tmp_path)
    loaded, res = _export_and_load(store, tmp_path)
    _check_same(loaded, res)
    t = loaded.trials
    assert [t[i].state for i in (1, 2, 3, 4, 5, queued)] == [
        State.RUNNING, State.RUNNING, State.FAIL, State.FAIL, State.FAIL, State.WAITING]
    assert "budget or time" in t[3].user_attrs["fail_reason"]
    assert t[4].user_attrs["fail_reason"] == "non-finite values"
    assert t[5].user_attrs["fail_reason"] == "the final evaluation score is NaN"
    assert t[4].user_attrs["nan_score_steps"] == [512] and 512 not in t[4].intermediate_values
    assert t[1].user_attrs["final_scores"] == [pytest.approx(res.trials[1].final_scores[0])]
    # tuples are not categorical values Optuna can hold: their JSON text is
    assert t[0].params["hidden"] == "[16]" and t[1].params["hidden"] == "[32, 32]"
    assert t[0].distributions["hidden"] == optuna.distributions.CategoricalDistribution(["[16]", "[32, 32]"])
    assert t[0].distributions["num_steps"] == optuna.distributions.IntDistribution(8, 32, step=8)
    assert {tr.params["num_steps"] for tr in t} == {16, 24}
    assert loaded.user_attrs["status"] == "running"


def test_pure_helpers_map_distributions():
    d = hjo.distribution(optuna, hj.Int(low=1, high=10, q=4))  # 10 - 1 is no multiple of 4: step 1
    assert d == optuna.distributions.IntDistribution(1, 10, step=1)
    d = hjo.distribution(optuna, hj.Int(low=2, high=64, log=True, q=2))  # Optuna: no step with log
    assert d == optuna.distributions.IntDistribution(2, 64, log=True)
    d = hjo.distribution(optuna, hj.Choice((True, False, "x", None)))
    assert d.choices == (True, False, "x", None)
    space = hj.SearchSpace({"lr": hj.Float(0.1, 1.0)})
    trial = hj.study.Trial(id=7, config={"lr": 1.0000001}, u=[0.0], bucket=0, seeds=(0,))
    params, dists = hjo.trial_params(optuna, trial, space, {"lr": hjo.distribution(optuna, space.dims["lr"])})
    assert params == {"lr": 1.0000001} and dists["lr"].high == 1.0000001  # widened, not refused
    bad = hj.study.Trial(id=7, config={"g": 0.5}, u=[0.0], bucket=0, seeds=(0,))
    gspace = hj.SearchSpace({"g": hj.Choice((0.9, 0.99))})
    with pytest.raises(ValueError, match=r"trial 7 has g=0.5, not among the choices"):
        hjo.trial_params(optuna, bad, gspace, {"g": hjo.distribution(optuna, gspace.dims["g"])})


def test_existing_name_and_overwrite(hypertrick_store, pbt_store, tmp_path):
    url = _url(tmp_path)
    to_optuna(hypertrick_store, url, "x")
    with pytest.raises(ValueError, match=r"already holds a study named study_name='x'.*overwrite=True"):
        to_optuna(pbt_store, url, "x")
    assert len(optuna.load_study(study_name="x", storage=url).trials) == len(hj.load_study(hypertrick_store, params=False).trials)
    study = to_optuna(pbt_store, url, "x", overwrite=True)
    n_pbt = len(hj.load_study(pbt_store, params=False).trials)
    assert len(study.trials) == n_pbt
    assert len(optuna.load_study(study_name="x", storage=url).trials) == n_pbt
    assert optuna.get_all_study_names(url) == ["x"]
    # a storage object works too, and the default name is the store directory's name
    storage = optuna.storages.RDBStorage(url)
    study = to_optuna(hypertrick_store, storage)
    assert study.study_name == "store"


def test_bad_arguments(hypertrick_store, tmp_path):
    url = _url(tmp_path)
    with pytest.raises(ValueError, match=r"store_dir=.*nowhere.*holds no hyperjax study"):
        to_optuna(str(tmp_path / "nowhere"), url)
    with pytest.raises(ValueError, match=r"storage=42 must be a database URL"):
        to_optuna(hypertrick_store, 42)
    with pytest.raises(ValueError, match=r"storage='not a url' is not a database URL"):
        to_optuna(hypertrick_store, "not a url")
    with pytest.raises(ValueError, match=r"study_name=''"):
        to_optuna(hypertrick_store, url, "")
    with pytest.raises(ValueError, match=r"overwrite='yes'"):
        to_optuna(hypertrick_store, url, "y", overwrite="yes")
    assert optuna.get_all_study_names(url) == []  # nothing half-written


def test_failed_write_leaves_no_study(hypertrick_store, tmp_path, monkeypatch):
    url = _url(tmp_path)

    def broken(self, trials):
        raise RuntimeError("disk full")

    monkeypatch.setattr(optuna.Study, "add_trials", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        to_optuna(hypertrick_store, url, "z")
    assert optuna.get_all_study_names(url) == []


def test_missing_optuna_is_a_clear_import_error(hypertrick_store, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)
    with pytest.raises(ImportError, match=r"hyperjax\[optuna\]"):
        to_optuna(hypertrick_store, _url(tmp_path))


def test_store_is_left_untouched(hypertrick_store, tmp_path):
    before = open(f"{hypertrick_store}/study.sqlite", "rb").read()
    to_optuna(hypertrick_store, _url(tmp_path))
    assert open(f"{hypertrick_store}/study.sqlite", "rb").read() == before
