"""Time to the first tick: how long a new process takes until a study trains, without JAX's
persistent compilation cache, with an empty one (cold) and with the one the cold run filled
(warm).

    python benchmarks/first_tick.py [--studies quickstart a2c-minatar] [--repeats 2] [--json]

Each run is a fresh process (imports included) that starts the study and exits at the end of
its second tick. ``to_training_s`` is the time until the first tick ends less the second tick's
length (a tick of training with nothing left to compile): imports, building, compiling. Studies: ``quickstart`` (the quick start: PPO on CartPole-v1, 32 slots, the
seven-parameter space) and ``a2c-minatar`` (the README's API example: A2C on Breakout-MinAtar
with four ``t_max`` buckets, 32 slots x 2 seeds). Per study and mode: medians (min/max) of the
seconds to the first tick, of the study's setup (building and compiling before the first tick)
and of XLA's compile time until the second tick ends (every thread; programs loaded from the cache compile
nothing).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

CHILD = r"""
import json, os, sys, time
t_start = time.perf_counter()
import jax
compiled = []  # XLA compile seconds, every thread (a cache hit compiles nothing)
jax.monitoring.register_event_duration_secs_listener(
    lambda e, d, **k: compiled.append(d) if e == "/jax/core/compile/backend_compile_duration" else None)
import hyperjax as hj
from hyperjax.space import Choice, Float, SearchSpace
t_import = time.perf_counter() - t_start
study = sys.argv[1]
if study == "quickstart":
    sys.path.insert(0, os.path.join(os.getcwd(), "experiments"))
    from quickstart import SPACE
    agent, space = hj.PPO(env="CartPole-v1"), SPACE
    kw = dict(budget=30_000_000, phase_steps=32_768, trial_steps=8 * 32_768, slots=32,
              scheduler=hj.schedulers.HyperTrick(r=0.3))
else:
    agent = hj.A2C(env="Breakout-MinAtar")
    space = SearchSpace({
        "learning_rate": Float(1e-5, 1e-2, log=True),
        "t_max": Choice((4, 8, 16, 32), ordered=True),
        "gamma": Choice((0.9, 0.95, 0.99, 0.995, 0.999, 0.9995, 0.9999), ordered=True),
    })
    kw = dict(budget=50_000_000, phase_steps=100_000, trial_steps=1_000_000, slots=32, seeds=2,
              scheduler=hj.schedulers.HyperTrick(r=0.2))

ends = []

def first(study_, changes):
    ends.append(time.perf_counter() - t_start)
    if len(ends) == 1:
        return
    # the second tick trains like the first with everything compiled: the first tick's own
    # training takes about as long, and the rest of the time to its end was waiting
    out = {"study": study, "import_s": t_import, "first_tick_s": ends[0], "second_tick_s": ends[1] - ends[0],
           "to_training_s": ends[0] - (ends[1] - ends[0]), "setup_s": study_.setup_seconds,
           "compile_s": sum(compiled), "cache": hj.compile_cache.directory()}
    print("RESULT " + json.dumps(out), flush=True)
    os._exit(0)

hj.tune(agent, space, seed=0, callbacks=[first], **kw)
"""


def run(study: str, cache: str) -> dict:
    env = dict(os.environ, HYPERJAX_COMPILE_CACHE=cache)
    out = subprocess.run([sys.executable, "-c", CHILD, study], env=env, capture_output=True, text=True,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    for line in out.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    raise RuntimeError(f"{study} ({cache}) printed no result:\n{out.stdout[-2000:]}\n{out.stderr[-4000:]}")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--studies", nargs="+", default=["quickstart", "a2c-minatar"], choices=["quickstart", "a2c-minatar"])
    p.add_argument("--repeats", type=int, default=2, help="runs per mode (cold runs each start from an empty cache)")
    p.add_argument("--json", action="store_true", help="print only the JSON lines")
    a = p.parse_args(argv)
    for study in a.studies:
        rows = {"off": [], "cold": [], "warm": []}
        for _ in range(a.repeats):  # alternating modes; each cold run empties its own cache
            rows["off"].append(run(study, "0"))
            with tempfile.TemporaryDirectory() as d:
                rows["cold"].append(run(study, d))
                rows["warm"].append(run(study, d))
        for mode, rs in rows.items():
            line = {"study": study, "mode": mode, "repeats": len(rs)}
            for k in ("to_training_s", "first_tick_s", "second_tick_s", "setup_s", "compile_s", "import_s"):
                vals = [r[k] for r in rs]
                line[k] = round(statistics.median(vals), 2)
                line[k + "_min"], line[k + "_max"] = round(min(vals), 2), round(max(vals), 2)
            print(json.dumps(line), flush=True)
            if not a.json:
                print(f"  {study:12s} {mode:5s} until training {line['to_training_s']:6.1f} s, first tick ends at "
                      f"{line['first_tick_s']:.1f} s (setup {line['setup_s']:.1f} s, compile {line['compile_s']:.1f} s)",
                      file=sys.stderr)


if __name__ == "__main__":
    main()
