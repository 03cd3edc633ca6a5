"""One study over two processes (JAX's multi-controller runtime on 127.0.0.1, gloo collectives
on CPU, one CPU device each) against the same study in one process with two devices: the same
shards on the same devices, so the trial tables must be identical, bit for bit."""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

import hyperjax as hj

SCRIPT = os.path.join(os.path.dirname(__file__), "multiprocess_study.py")


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "HYPERJAX_HOST_DEVICES")}
    # 8 phases per trial (HyperTrick: ~35 ticks): long enough that the kill below lands mid-study
    # even when a loaded machine writes the first complete checkpoint late
    env["STUDY_PHASES"] = "8"
    env.update(extra)
    return env


def _results(out: str) -> dict:
    return {d["scheduler"]: d for d in (json.loads(line) for line in out.splitlines() if line.startswith("{"))}


def _launch(env: dict, args=None) -> list[subprocess.Popen]:
    """Two processes of one job on a free 127.0.0.1 port: the study script, or ``args`` (a
    command line that takes the process options)."""
    address = f"127.0.0.1:{_port()}"
    def cmd(i):
        if args is None:
            return [sys.executable, SCRIPT, address, "2", str(i)]
        return [*args, "--coordinator", address, "--num-processes", "2", "--process-id", str(i)]
    return [subprocess.Popen(cmd(i), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for i in range(2)]


def _table(res) -> list[dict]:
    df = res.dataframe().drop(columns=["start_time", "end_time", "compute_seconds"], errors="ignore")
    return json.loads(json.dumps(df.to_dict(orient="records"), default=float))


@pytest.fixture(scope="module")
def reference():
    """The studies in one process with two devices, without a store."""
    single = subprocess.run([sys.executable, SCRIPT, "single", "2"], env=_env(STUDY_SCHEDULER="hypertrick,pbt"),
                            capture_output=True, text=True, timeout=400)
    assert single.returncode == 0, single.stderr[-3000:]
    return _results(single.stdout)


def test_two_processes_equal_one_process_with_two_devices(tmp_path, reference):
    """HyperTrick, and PBT (whose exploit copies members across processes), with a store: each
    process writes its own checkpoint shards, process 0 the records."""
    procs = _launch(_env(STUDY_SCHEDULER="hypertrick,pbt", STUDY_STORE=str(tmp_path)))
    outs = [p.communicate(timeout=400) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    a, b, c = _results(outs[0][0]), _results(outs[1][0]), reference
    assert set(a) == set(b) == set(c) == {"hypertrick", "pbt"}
    for s in c:
        assert a[s]["devices"] == b[s]["devices"] == c[s]["devices"] == 2
        assert a[s]["trials"] == c[s]["trials"] and b[s]["trials"] == c[s]["trials"], s  # every field of every trial
        assert a[s]["best"] == c[s]["best"] and a[s]["best_score"] == c[s]["best_score"], s
        stored = hj.load_study(str(tmp_path / s))
        assert _table(stored) == c[s]["trials"] and stored.best.id == c[s]["best"], s
        ticks = os.listdir(tmp_path / s / "checkpoints")
        assert ticks and all(os.path.isdir(tmp_path / s / "checkpoints" / t / f"ocdbt.process_{i}")
                             for t in ticks for i in (0, 1)), ticks  # each process wrote its shards
    assert any(t["origin"] == "pbt" for t in c["pbt"]["trials"])  # members were copied across processes
    assert "tick" in outs[0][0] and "tick" not in outs[1][0]  # process 0 alone reports


def test_a_dead_process_stops_the_other_and_the_study_resumes(tmp_path, reference):
    """SIGKILL one process once a resume point exists: the other exits with an error within the
    heartbeat bound (10 s in the script), not a hang; ``hyperjax resume`` with two processes
    continues from the last complete snapshot and ends with the uninterrupted study's trials, and
    so does one process with two devices."""
    env = _env(STUDY_STORE=str(tmp_path), STUDY_SNAPSHOT_SECONDS="0")
    store = tmp_path / "hypertrick"
    procs = _launch(env)
    try:
        for line in procs[0].stdout:  # process 0 reports every tick
            complete = [n for n in os.listdir(store / "checkpoints") if re.fullmatch(r"tick_\d{8}", n)]
            if line.startswith("tick") and complete:
                break
        else:
            pytest.fail("the study ended before a resume point was written: " + procs[0].stderr.read()[-3000:])
        killed_at = int(line.split()[1])
        assert procs[1].poll() is None, "process 1 ended before the kill"
        procs[1].send_signal(signal.SIGKILL)
        t0 = time.monotonic()
        procs[0].wait(timeout=60)
        waited = time.monotonic() - t0
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert procs[0].returncode != 0
    assert waited < 30, waited
    err = procs[0].stderr.read()
    assert "a process it trains with failed or was killed" in err and "hj.resume(" in err, err[-3000:]
    assert hj.load_study(str(store)).ticks == killed_at  # what was recorded is there
    from hyperjax.store import StudyStore

    w = StudyStore(str(store))
    points = w.resume_points()
    w.close()
    assert points and points[0] < killed_at  # the resume starts from a snapshot, not afresh
    shutil.copytree(store, tmp_path / "copy")  # resumed below by one process with both devices

    procs = _launch(_env(HYPERJAX_HOST_DEVICES="1"), [sys.executable, "-m", "hyperjax", "resume", str(store), "--quiet"])
    outs = [p.communicate(timeout=400) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, "\n".join(f"--- process {i}:\n{e[-4000:]}" for i, (_, e) in enumerate(outs))
        assert "could not be read" not in err
    resumed = hj.load_study(str(store))
    assert _table(resumed) == reference["hypertrick"]["trials"]
    assert resumed.best.id == reference["hypertrick"]["best"]
    assert '"best_score"' in outs[0][0] and '"best_score"' not in outs[1][0]  # process 0 alone prints

    # another process count, the same devices in all: the checkpoint is re-sharded, the result exact
    one = subprocess.run([sys.executable, "-m", "hyperjax", "resume", str(tmp_path / "copy"), "--quiet"],
                         env=_env(HYPERJAX_HOST_DEVICES="2"), capture_output=True, text=True, timeout=400)
    assert one.returncode == 0, one.stderr[-3000:]
    assert _table(hj.load_study(str(tmp_path / "copy"))) == reference["hypertrick"]["trials"]


def test_initialize_checks_its_arguments_first():
    import jax

    jax.devices()  # this process's backend is up: joining a job now must be refused, not attempted
    with pytest.raises(ValueError, match="coordinator_address='localhost' must look like HOST:PORT"):
        hj.distributed.initialize("localhost", 2, 0)
    with pytest.raises(ValueError, match="process_id=2"):
        hj.distributed.initialize("127.0.0.1:1234", 2, 2)
    with pytest.raises(ValueError, match="num_processes=0"):
        hj.distributed.initialize("127.0.0.1:1234", 0, 0)
    with pytest.raises(ValueError, match="already initialised"):  # this process computed already
        hj.distributed.initialize("127.0.0.1:1234", 2, 0)


def test_single_process_helpers_are_the_identity():
    import jax
    import numpy as np

    assert hj.distributed.broadcast({"a": (1, 2)}) == {"a": (1, 2)} and hj.distributed.is_primary()
    x = jax.numpy.arange(4.0)
    assert np.array_equal(hj.distributed.fetch({"x": x})["x"], np.arange(4.0))
