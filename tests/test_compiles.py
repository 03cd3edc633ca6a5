"""What compiles when. A study compiles during setup and its first tick, and nothing on its own
thread after that: not at the first completion (evaluate, take), the first resume of a paused
trial (put), PBT's first copy, a revision of HyperTrick's N, a tail run as a smaller population
(compaction), or after resuming from a store.
Counted from JAX's backend-compile events in a fresh process (a test process's warm caches
would hide compiles)."""

import json
import os
import subprocess
import sys

import jax
import numpy as np

from hyperjax.schedulers import hypertrick

SCRIPT = os.path.join(os.path.dirname(__file__), "compile_counts.py")


def test_nothing_compiles_on_the_study_thread_after_the_first_tick(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "HYPERJAX_HOST_DEVICES")}
    out = subprocess.run([sys.executable, SCRIPT, str(tmp_path)], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    cases = {d["case"]: d for d in map(json.loads, filter(lambda s: s.startswith("{"), out.stdout.splitlines()))}
    assert set(cases) == {"pbt", "hypertrick (compacted)", "successive_halving (killed)",
                          "successive_halving (resumed)"}
    for name in ("pbt", "hypertrick (compacted)", "successive_halving (resumed)"):
        assert cases[name]["late"] == [], (name, cases[name]["late"])
    # a study's tail ran as a smaller population, compiled beside the study, not on its thread
    assert cases["hypertrick (compacted)"]["compacted"] and cases["hypertrick (compacted)"]["late_other_threads"] > 0
    # each path was taken: PBT copies; completions (evaluate, take) and resumes of paused trials
    # (put) after the study was resumed from its store
    assert cases["pbt"]["copies"] > 0 and cases["hypertrick (compacted)"]["reevaluated"] >= 2
    assert cases["hypertrick (compacted)"]["reseeded"] == cases["hypertrick (compacted)"]["reevaluated"]
    assert cases["successive_halving (resumed)"]["resumes"] > 0 and cases["successive_halving (resumed)"]["completed"] > 0


def test_revising_hypertricks_n_does_not_compile():
    """N is a leaf of the record (``retarget``), so HyperTrick's rule follows a revised N with
    the same executable, and the revision changes the decisions."""
    sched = hypertrick(100, 0.25, 2, capacity=64)
    decide = jax.jit(sched.decide)
    compiles = []
    listener = lambda name, secs, **_: compiles.append(name) if name.endswith("backend_compile_duration") else None  # noqa: E731
    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        scores = np.linspace(10.0, 0.0, 8).astype(np.float32)  # each arrival worse than the ones before
        args = (np.zeros(8, np.int32), scores, np.ones(8, bool))
        _, keep_many = decide(sched.init(), *args)  # N = 100: the first 50 arrivals continue freely
        before = len(compiles)
        _, keep_few = decide(sched.retarget(sched.init(), 4), *args)  # N = 4: the first 2 only
        assert len(compiles) == before
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
    assert np.asarray(keep_many).all()
    assert np.asarray(keep_few)[:2].all() and not np.asarray(keep_few)[2:].all()
