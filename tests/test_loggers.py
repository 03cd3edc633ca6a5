"""The W&B and TensorBoard callbacks: what they wrote, read back and compared with the store.

One small study carries both callbacks (and a W&B callback that fails, to be disabled); W&B
runs offline (no network: ``mode="offline"``, ``WANDB_MODE=offline``, no login, no code or git
capture, no error reporting) and its run file is read back record by record; TensorBoard's
event files are read with TensorBoard's own ``EventAccumulator``.
"""

import glob
import importlib.util
import json
import math
import os
import struct
import types
import warnings

import numpy as np
import pytest

import hyperjax as hj
from hyperjax.callbacks import tensorboard as tbmod
from hyperjax.callbacks import wandb as wbmod
from hyperjax.config import tune_arguments
from hyperjax.store import connect, read_meta
from hyperjax.study.records import Trial

from .conftest import SMALL_STUDY

OFFLINE = {"WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_DISABLE_CODE": "true", "WANDB_DISABLE_GIT": "true",
           "WANDB_ERROR_REPORTING": "false", "WANDB_CONSOLE": "off"}


# -- reading what was written -----------------------------------------------------------------------
def wandb_records(path: str):
    """The records of a ``.wandb`` run file: a 7-byte header, then LevelDB-log blocks of 32 KiB
    whose chunks (7-byte header: crc, length, type FULL/FIRST/MIDDLE/LAST) carry protobuf
    ``Record``s (wandb no longer ships a Python reader)."""
    from wandb.proto import wandb_internal_pb2 as pb

    with open(path, "rb") as f:
        data = f.read()
    assert data[:4] == b":W&B"
    block, pos, chunks = 32768, 7, []
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:  # a block's tail too short for a header is padding
            pos += left
            continue
        _, n, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0 and n == 0:
            pos += left
            continue
        chunks.append(data[pos + 7:pos + 7 + n])
        pos += 7 + n
        if kind in (1, 4):  # FULL or LAST: a whole record
            r = pb.Record()
            r.ParseFromString(b"".join(chunks))
            chunks = []
            yield r


def _key(item) -> str:
    return "/".join(item.nested_key) if item.nested_key else item.key


def wandb_run(run_dir: str) -> dict:
    """``{"id", "config", "summary", "history", "files"}`` of an offline run directory."""
    (path,) = glob.glob(os.path.join(run_dir, "run-*.wandb"))
    out = {"config": {}, "summary": {}, "history": [], "files": os.path.join(run_dir, "files")}
    for r in wandb_records(path):
        kind = r.WhichOneof("record_type")
        if kind == "run":
            out["id"] = r.run.run_id
            out["config"].update({_key(i): json.loads(i.value_json) for i in r.run.config.update})
        elif kind == "config":
            out["config"].update({_key(i): json.loads(i.value_json) for i in r.config.update})
        elif kind == "summary":
            out["summary"].update({_key(i): json.loads(i.value_json) for i in r.summary.update})
        elif kind == "history":
            out["history"].append({_key(i): json.loads(i.value_json) for i in r.history.item})
    return out


def tb_accumulator(path: str):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(path, size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return acc


def tb_scalars(acc, tag: str) -> list[tuple[int, float]]:
    return [(e.step, e.value) for e in acc.Scalars(tag)]


def hparams_content(acc) -> dict[str, bytes]:
    """The hparams plugin's summaries of a run, by tag (``{}`` if it has none)."""
    try:
        return acc.PluginTagToContent("hparams")
    except KeyError:
        return {}


def store_records(store: str) -> dict:
    conn = connect(store, readonly=True)
    try:
        ticks = [tuple(r) for r in conn.execute("SELECT tick, env_steps, best_score FROM ticks ORDER BY tick")]
        obs, ent = {}, {}
        for tid, steps, score, entropy in conn.execute(
                "SELECT trial, env_steps, score, entropy FROM observations ORDER BY trial, phase"):
            if score is not None:
                obs.setdefault(tid, []).append((steps, score))
            if entropy is not None:
                ent.setdefault(tid, []).append((steps, entropy))
        return {"meta": read_meta(conn), "ticks": ticks, "observations": obs, "entropies": ent}
    finally:
        conn.close()


# -- one study with both callbacks --------------------------------------------------------------------
@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    root = tmp_path_factory.mktemp("loggers")
    agent, space, kwargs = tune_arguments(SMALL_STUDY)
    with pytest.MonkeyPatch.context() as mp:
        for k, v in OFFLINE.items():
            mp.setenv(k, v)
        for k in ("WANDB_DATA_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR"):  # nothing under the home directory
            mp.setenv(k, str(root / k.lower()))
        mp.delenv("WANDB_API_KEY", raising=False)
        wb = hj.callbacks.WandB(project="hyperjax-tests", mode="offline", dir=str(root / "wb"), tags=["test"])
        tb = hj.callbacks.TensorBoard(root / "tb")
        broken = hj.callbacks.WandB(mode="offline", dir=str(root / "broken"), id="not/a/run/id")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = hj.tune(agent, space, store=str(root / "store"), callbacks=[wb, broken, tb], **kwargs)
    (run_dir,) = glob.glob(str(root / "wb" / "wandb" / "offline-run-*"))
    return types.SimpleNamespace(store=str(root / "store"), result=result, wandb=wandb_run(run_dir),
                                 tb=str(root / "tb"), warnings=[str(w.message) for w in caught],
                                 records=store_records(str(root / "store")))


def test_a_failing_callback_is_disabled_with_a_warning_and_the_study_completes(logged):
    msgs = [m for m in logged.warnings if "Run ID cannot contain" in m]
    assert len(msgs) == 1 and "it is disabled" in msgs[0] and "hyperjax-wandb failed" in msgs[0]
    study = hj.load_study(logged.store, params=False)
    assert len(study.trials) == len(logged.result.trials) > 0
    assert all(t.status in ("completed", "evicted", "failed", "stopped") for t in study.trials)
    assert logged.records["meta"]["status"] == "finished"


def test_wandb_config_and_summary(logged):
    w, meta = logged.wandb, logged.records["meta"]
    assert w["id"] == wbmod.run_id(logged.store, meta["created"])  # hj.resume(store) continues this run
    assert {k: v for k, v in w["config"].items() if not k.startswith("_")} == meta["config"]
    best = logged.result.best
    assert w["summary"]["best/score"] == pytest.approx(best.final_score)
    assert w["summary"]["best/trial"] == best.id
    assert w["summary"]["best/config"] == pytest.approx(best.config)


def test_wandb_history_matches_the_store(logged):
    rows = logged.wandb["history"]
    study = [(r["study/tick"], r["env_steps"]) for r in rows if "study/tick" in r]
    assert study == [(t, steps) for t, steps, _ in logged.records["ticks"]]  # every tick once, in order
    best = [(r["env_steps"], r["study/best_score"]) for r in rows if "study/best_score" in r]
    assert best == [(steps, pytest.approx(b)) for _, steps, b in logged.records["ticks"] if b is not None]
    for name, key in (("score", "observations"), ("entropy", "entropies")):
        curves: dict[int, list] = {}
        for r in rows:
            for k, v in r.items():
                if k.startswith("trial/") and k.endswith(f"/{name}"):
                    curves.setdefault(int(k.split("/")[1]), []).append((r[wbmod.TRIAL_STEP], v))
        obs = logged.records[key]
        assert obs and set(curves) == set(obs)  # every trial with an observation has its series
        for tid, points in obs.items():
            assert curves[tid] == [(s, pytest.approx(v)) for s, v in points], (name, tid)


def test_wandb_trial_table_and_figures(logged):
    w = logged.wandb
    (row,) = [r for r in w["history"] if r.get("trials/_type") == "table-file"]
    with open(os.path.join(w["files"], row["trials/path"])) as f:
        table = json.load(f)
    trials = logged.result.trials
    assert len(table["data"]) == len(trials)
    cols = table["columns"]
    for t, r in zip(trials, table["data"]):
        cell = dict(zip(cols, r))
        assert (cell["trial"], cell["status"]) == (t.id, t.status)
        assert cell["config/learning_rate"] == pytest.approx(t.config["learning_rate"])
        if math.isfinite(t.final_score):
            assert cell["final_score"] == pytest.approx(t.final_score)
    assert any(r.get("trials/curves_table/_type") == "table-file" for r in w["history"])
    if importlib.util.find_spec("hyperjax.reports") is not None:
        figures = {k.split("/")[1] for r in w["history"] for k in r if k.startswith("report/") and k.endswith("/_type")}
        assert figures, "the report's figures were not logged"


def test_tensorboard_study_scalars_at_env_steps(logged):
    acc = tb_accumulator(os.path.join(logged.tb, "study"))
    ticks = logged.records["ticks"]
    assert tb_scalars(acc, "study/tick") == [(steps, t) for t, steps, _ in ticks]
    assert tb_scalars(acc, "study/best_score") == [(steps, pytest.approx(b)) for _, steps, b in ticks if b is not None]
    text = acc.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "phase_steps: 256" in text


def test_tensorboard_trial_curves_equal_the_store(logged):
    obs = logged.records["observations"]
    runs = sorted(os.listdir(os.path.join(logged.tb, "trials")))
    assert runs == [f"{tid:04d}" for tid in sorted(obs)]
    for tid, points in obs.items():
        acc = tb_accumulator(os.path.join(logged.tb, tbmod.trial_run(tid)))
        assert tb_scalars(acc, tbmod.SCORE) == [(s, pytest.approx(v, rel=1e-6)) for s, v in points], tid
        want = logged.records["entropies"][tid]
        assert tb_scalars(acc, tbmod.ENTROPY) == [(s, pytest.approx(v, rel=1e-6)) for s, v in want], tid


def test_tensorboard_hparams_rows_of_completed_trials(logged):
    from tensorboard.plugins.hparams import metadata

    study = logged.result
    names = list(SMALL_STUDY["space"])
    completed = [t for t in study.trials if t.status == "completed"]
    assert completed
    for t in study.trials:
        if not os.path.isdir(os.path.join(logged.tb, tbmod.trial_run(t.id))):
            continue
        acc = tb_accumulator(os.path.join(logged.tb, tbmod.trial_run(t.id)))
        content = hparams_content(acc)
        if t.status != "completed":
            assert not content, t.id
            continue
        start = metadata.parse_session_start_info_plugin_data(content[metadata.SESSION_START_INFO_TAG])
        assert {n: start.hparams[n].number_value for n in names} == pytest.approx({n: t.config[n] for n in names})
        assert tb_scalars(acc, tbmod.FINAL_SCORE) == [(t.curve_steps[-1], pytest.approx(t.final_score, rel=1e-6))]
    exp = hparams_content(tb_accumulator(os.path.join(logged.tb, "study")))[metadata.EXPERIMENT_TAG]
    experiment = metadata.parse_experiment_plugin_data(exp)
    assert [h.name for h in experiment.hparam_infos] == names
    assert {m.name.tag for m in experiment.metric_infos} == {tbmod.FINAL_SCORE, tbmod.SCORE}


# -- resuming: a synthetic study driven through two "processes" ---------------------------------------
class FakeStudy:
    """What the callbacks read of a study, for ticks of two trials that score ``tick * (id + 1)``
    (trial 1 completes at tick 6); ``at(tick)`` is the state after that tick, as a resumed
    study rebuilds it."""

    space = types.SimpleNamespace(names=("learning_rate",))
    store = None
    config = {"phase_steps": 100}

    def __init__(self, tick: int):
        self.trials = [Trial(id=i, config={"learning_rate": 0.1 * (i + 1)}, u=np.zeros(1), bucket=0, seeds=(0,))
                       for i in range(2)]
        self.tick = 0
        self.best = None
        for _ in range(tick):
            self.step()

    def step(self) -> dict:
        self.tick += 1
        changes = {"observations": [], "completed": {}, "trials": set(), "final": False}
        for t in self.trials:
            if t.status in ("queued", "running"):
                t.status = "running"
                t.curve.append(float(self.tick * (t.id + 1)))
                t.curve_steps.append(100 * self.tick)
                changes["observations"].append((t.id, len(t.curve) - 1))
                changes["trials"].add(t.id)
        if self.tick == 6:
            t = self.trials[1]
            t.status, t.final_score = "completed", 99.0
            changes["completed"][1] = None
            self.best = t
        return changes

    def progress(self) -> dict:
        return {"tick": self.tick, "env_steps": 200 * self.tick, "trials": 2}


def test_tensorboard_resume_writes_no_step_twice(tmp_path):
    first = hj.callbacks.TensorBoard(tmp_path)
    study = FakeStudy(0)
    for _ in range(5):  # killed after tick 5; its last snapshot was tick 3
        first(study, study.step())
    first.finish()
    second = hj.callbacks.TensorBoard(tmp_path)
    study = FakeStudy(3)
    for _ in range(4):  # ticks 4..7 again
        second(study, study.step())
    second(study, {"observations": [], "completed": {}, "trials": {0, 1}, "final": True})
    acc = tb_accumulator(str(tmp_path / "study"))
    assert tb_scalars(acc, "study/tick") == [(200 * k, k) for k in range(1, 8)]
    assert tb_scalars(tb_accumulator(str(tmp_path / tbmod.trial_run(0))), tbmod.SCORE) == [
        (100 * k, k) for k in range(1, 8)]
    assert tb_scalars(tb_accumulator(str(tmp_path / tbmod.trial_run(1))), tbmod.SCORE) == [
        (100 * k, 2 * k) for k in range(1, 7)]
    assert len(acc.Tensors("config/text_summary")) == 1  # written by the new study only


def test_run_id_is_the_stores():
    a = wbmod.run_id("/x/store", "2024-01-01T00:00:00+00:00")
    assert a == wbmod.run_id("/x/store", "2024-01-01T00:00:00+00:00")
    assert a != wbmod.run_id("/x/store", "2024-01-02T00:00:00+00:00") and a != wbmod.run_id("/y", "2024-01-01")
    assert a.isalnum()


# -- mode and arguments -------------------------------------------------------------------------------
def test_mode_is_offline_unless_wandb_is_configured(tmp_path):
    none = {"NETRC": str(tmp_path / "absent")}
    assert wbmod.resolve_mode(None, none) == "offline"
    assert wbmod.resolve_mode("disabled", {"WANDB_API_KEY": "k"}) == "disabled"
    assert wbmod.resolve_mode(None, {**none, "WANDB_MODE": "online"}) is None  # W&B reads it
    assert wbmod.resolve_mode(None, {**none, "WANDB_API_KEY": "k" * 40}) == "online"
    netrc = tmp_path / "netrc"
    netrc.write_text("machine api.wandb.ai\n  login user\n  password " + "k" * 40 + "\n")
    netrc.chmod(0o600)
    assert wbmod.resolve_mode(None, {"NETRC": str(netrc)}) == "online"
    assert wbmod.resolve_mode(None, {"NETRC": str(netrc), "WANDB_BASE_URL": "https://wandb.example.com"}) == "offline"


@pytest.mark.parametrize("kwargs, match", [
    ({"mode": "cloud"}, "mode='cloud'"),
    ({"tags": "ppo"}, "tags='ppo'"),
    ({"project": ""}, "project=''"),
    ({"log_curves": 1}, "log_curves=1"),
    ({"projct": "x"}, "projct"),
])
def test_wandb_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        hj.callbacks.WandB(**kwargs)


def test_tensorboard_bad_arguments(tmp_path):
    (tmp_path / "file").write_text("")
    for kwargs, match in [({"logdir": ""}, "logdir=''"), ({"logdir": str(tmp_path / "file")}, "not a directory"),
                          ({"logdir": str(tmp_path), "log_hparams": "yes"}, "log_hparams='yes'")]:
        with pytest.raises(ValueError, match=match):
            hj.callbacks.TensorBoard(**kwargs)



# -- optional dependencies stay unimported ------------------------------------------------------------
LOGGERS = ("wandb", "tensorboardX")


class _ImportWatch:
    """A ``sys.meta_path`` finder that records every attempt to import a module of ``packages``
    and refuses it (ModuleNotFoundError), installed or not."""

    def __init__(self, packages):
        self.packages, self.asked = tuple(packages), []

    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in self.packages:
            self.asked.append(name)
            raise ModuleNotFoundError(f"{name} is hidden by the test")


def test_import_hyperjax_imports_no_logger_and_no_plotly():
    """``import hyperjax`` (and reaching ``hj.callbacks``) imports none of wandb, tensorboardX
    and plotly (reports and W&B figures import plotly on first use): checked in a fresh
    interpreter by a finder on ``sys.meta_path`` that records every attempt to import them,
    installed or not, and by ``sys.modules``; the finder is shown to see an import."""
    import subprocess
    import sys

    code = """if True:
        import importlib.abc, json, sys

        class Watch(importlib.abc.MetaPathFinder):  # _ImportWatch, defined before anything is imported
            asked = []

            def find_spec(self, name, path, target=None):
                if name.split(".")[0] in ("wandb", "tensorboardX", "plotly"):
                    self.asked.append(name)
                    raise ModuleNotFoundError(name + " is hidden by the test")

        sys.meta_path.insert(0, Watch())
        import hyperjax as hj
        hj.callbacks.WandB, hj.callbacks.TensorBoard, hj.callbacks.Console
        seen = dict(asked=sorted(set(Watch.asked)), modules=sorted(m for m in sys.modules
                    if m.split(".")[0] in ("wandb", "tensorboardX", "plotly")))
        try:
            import plotly  # the control: the watch sees an import
        except ModuleNotFoundError:
            pass
        seen["control"] = Watch.asked
        print("SEEN " + json.dumps(seen))
    """
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    (line,) = [x for x in out.stdout.splitlines() if x.startswith("SEEN ")]
    seen = json.loads(line[len("SEEN "):])
    assert seen["asked"] == [] and seen["modules"] == [], seen
    assert seen["control"] == ["plotly"], seen


def test_a_study_without_callbacks_imports_no_logger(tmp_path):
    """A study with a store and no callbacks, read back with ``load_study``, never imports
    wandb or tensorboardX: both are hidden from this process while it runs (taken out of
    ``sys.modules``, put back after) behind a finder that records and refuses every import of
    them (a lazy ``import wandb`` inside hyperjax would be seen, cached or not). The finder is
    shown to work: a TensorBoard event file made afterwards is seen asking for tensorboardX.
    The study has the shapes of the ``logged`` study, so its programs are shared."""
    import sys

    agent, space, kwargs = tune_arguments(SMALL_STUDY)
    kwargs.update(budget=6 * 256, trial_steps=256, scheduler="none")
    hidden = {m: sys.modules.pop(m) for m in list(sys.modules) if m.split(".")[0] in LOGGERS}
    watch = _ImportWatch(LOGGERS)
    sys.meta_path.insert(0, watch)
    try:
        res = hj.tune(agent, space, store=str(tmp_path / "store"), **kwargs)
        back = hj.load_study(str(tmp_path / "store"))
        during = list(watch.asked)
        with pytest.raises(ModuleNotFoundError, match="tensorboardX.* is hidden by the test"):
            tbmod.EventFile(str(tmp_path / "tb"), 0)
    finally:
        sys.meta_path.remove(watch)
        for m in [m for m in sys.modules if m.split(".")[0] in LOGGERS]:
            del sys.modules[m]
        sys.modules.update(hidden)
    assert len(res.trials) == 6 and back.best.id == res.best.id
    assert during == [], during
    assert watch.asked and watch.asked[0].startswith("tensorboardX"), watch.asked
