"""Backend compiles per tick of small studies, each case from empty compile caches; prints one
JSON line per case. Started by tests/test_compiles.py in a fresh process (a test process's warm
caches would hide compiles).

    python tests/compile_counts.py STORE_DIR
"""

import json
import math
import os
import sys
import threading

os.environ.setdefault("HYPERJAX_HOST_DEVICES", "2")

import jax  # noqa: E402

import hyperjax as hj  # noqa: E402
from conftest import SMALL_STUDY  # noqa: E402
from hyperjax.config import tune_arguments  # noqa: E402
from hyperjax.store import StudyStore, connect  # noqa: E402

# conftest's small study (the script runs from tests/, so conftest imports as a module)
STUDY = {k: v for k, v in SMALL_STUDY.items() if k != "scheduler"}

events: list[tuple[int, str]] = []  # (tick the compile happened in, thread)
tick = {"now": 0}


def on_event(name, seconds, **_):
    if name == "/jax/core/compile/backend_compile_duration":
        import traceback
        where = [f"{os.path.basename(f.filename)}:{f.lineno}:{f.name}" for f in traceback.extract_stack(limit=60)
                 if "hyperjax" in f.filename or "orbax" in f.filename][-4:]
        events.append((tick["now"], threading.current_thread().name, where))


jax.monitoring.register_event_duration_secs_listener(on_event)


class Crash(Exception):
    pass


crash = {"at": None}
_persist = StudyStore.persist


def persist(self, study, policy, changes, final=False):
    """The store's persist, then a crash after tick ``crash["at"]`` is committed."""
    _persist(self, study, policy, changes, final=final)
    if study.tick == crash["at"]:
        raise Crash()


StudyStore.persist = persist


def run(case: str, scheduler: dict, crash_at: int | None = None, store: str | None = None, **overrides) -> None:
    jax.clear_caches()
    events.clear()
    tick["now"] = 1  # setup and the first tick

    def callback(study, changes):
        if not changes.get("final"):
            tick["now"] = study.tick + 1  # what compiles from here on belongs to the next tick

    crash["at"] = crash_at

    agent, space, kwargs = tune_arguments({**STUDY, "scheduler": scheduler, **overrides})
    extra = {"store": store, "snapshot_seconds": 0} if store else {}
    try:
        res = hj.tune(agent, space, callbacks=[callback], **kwargs, **extra)
    except Crash:
        print(json.dumps({"case": case, "crashed_at": crash_at}), flush=True)
        return
    finally:
        tick["now"] = 0  # after the study
    resumes = 0
    if store:
        conn = connect(store, readonly=True)
        resumes = conn.execute("SELECT count(*) FROM decisions WHERE action = 'resume'").fetchone()[0]
        conn.close()
    print(json.dumps({
        "case": case, "ticks": res.ticks, "completed": sum(t.status == "completed" for t in res.trials),
        "copies": sum(t.origin == "pbt" for t in res.trials), "resumes": resumes,
        "reevaluated": sum(math.isfinite(t.reeval_score) for t in res.trials),
        "reseeded": sum(len(t.reseed_scores) > 0 for t in res.trials),
        "compacted": res.slot_utilization["compute"] > res.slot_utilization["overall"],
        # compiles on the study's thread after its first tick (setup and the first tick compile)
        "late": [e for e in events if e[0] > 1 and e[1] == "MainThread"],
        "late_other_threads": sum(1 for e in events if e[0] > 1 and e[1] != "MainThread"),
    }), flush=True)


store = os.path.join(sys.argv[1], "sh")
run("pbt", {"name": "pbt"})
# 8 slots on 2 devices: the tail runs as populations of 4 (compaction's programs, compiled on a
# worker thread)
# ... and its leaders re-evaluated at the end (nothing may compile for that on the study's thread)
run("hypertrick (compacted)", {"name": "hypertrick", "r": 0.3}, slots=8, budget=8 * 4 * 256 * 6, reevaluate=8,
    reevaluate_seeds=1)
run("successive_halving (killed)", {"name": "successive_halving"}, crash_at=6, store=store)
run("successive_halving (resumed)", {"name": "successive_halving"}, store=store)
