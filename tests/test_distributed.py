"""One study over two processes (JAX's multi-controller runtime on 127.0.0.1, gloo collectives
on CPU, one CPU device each) against the same study in one process with two devices: the same
shards on the same devices, so the trial tables must be identical, bit for bit."""

import json
import os
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
    env.update(extra)
    return env


def _results(out: str) -> dict:
    return {d["scheduler"]: d for d in (json.loads(line) for line in out.splitlines() if line.startswith("{"))}


def test_two_processes_equal_one_process_with_two_devices():
    """HyperTrick, and PBT (whose exploit copies members across processes)."""
    env = _env(STUDY_SCHEDULER="hypertrick,pbt")
    address = f"127.0.0.1:{_port()}"
    procs = [subprocess.Popen([sys.executable, SCRIPT, address, "2", str(i)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(2)]
    outs = [p.communicate(timeout=400) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    single = subprocess.run([sys.executable, SCRIPT, "single", "2"], env=env, capture_output=True, text=True,
                            timeout=400)
    assert single.returncode == 0, single.stderr[-3000:]
    a, b, c = _results(outs[0][0]), _results(outs[1][0]), _results(single.stdout)
    assert set(a) == set(b) == set(c) == {"hypertrick", "pbt"}
    for s in c:
        assert a[s]["devices"] == b[s]["devices"] == c[s]["devices"] == 2
        assert a[s]["trials"] == c[s]["trials"] and b[s]["trials"] == c[s]["trials"], s  # every field of every trial
        assert a[s]["best"] == c[s]["best"] and a[s]["best_score"] == c[s]["best_score"], s
    assert any(t["origin"] == "pbt" for t in c["pbt"]["trials"])  # members were copied across processes
    assert "tick" in outs[0][0] and "tick" not in outs[1][0]  # process 0 alone reports


def test_a_dead_process_stops_the_other():
    """SIGKILL one process mid-study: the other exits with an error within the heartbeat bound
    (10 s in the script), not a hang."""
    env = _env(STUDY_PHASES="2000")
    address = f"127.0.0.1:{_port()}"
    procs = [subprocess.Popen([sys.executable, SCRIPT, address, "2", str(i)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(2)]
    try:
        for line in procs[0].stdout:  # process 0 reports every tick
            if line.startswith("tick 3"):
                break
        else:
            pytest.fail("the study did not start: " + procs[0].stderr.read()[-3000:])
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
    assert "a process it trains with failed or was killed" in err, err[-3000:]


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
