"""Idle slots with and without compaction: the quick start's study (PPO on CartPole-v1,
HyperTrick r = 0.3, 32 slots, 8 phases of 32,768 steps, 30M env steps), run with
``tune(compact=True)`` (the default) and ``compact=False``, alternately, each in a fresh
process without the persistent compilation cache (every run pays every compile, the smaller
programs' included) unless ``--cache`` is given.

    python benchmarks/compaction.py [--repeats 3] [--budget 30000000] [--scheduler hypertrick] [--json]

Per setting: medians (min/max) of the study's wall seconds and training seconds, slot
utilisation (``overall``: occupied slot-ticks / slot-ticks; ``compute``: occupied member-phases /
member-phases the device ran), env steps, trials and the best score; the ratio of the median
wall times.
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
import json, os, sys
sys.path.insert(0, os.path.join(os.getcwd(), "experiments"))
import hyperjax as hj
from quickstart import SPACE
compact, budget, scheduler = sys.argv[1] == "1", int(sys.argv[2]), sys.argv[3]
spec = hj.schedulers.HyperTrick(r=0.3) if scheduler == "hypertrick" else scheduler
res = hj.tune(hj.PPO(env="CartPole-v1"), SPACE, budget=budget, phase_steps=32_768, trial_steps=8 * 32_768,
              slots=32, scheduler=spec, seed=0, compact=compact, reevaluate=0)  # the choice as when measured
print(json.dumps({"seconds": res.seconds, "train": res.timing["train"], "compile": res.timing.get("compile", 0.0),
                  "overall": res.slot_utilization["overall"], "compute": res.slot_utilization["compute"],
                  "env_steps": res.env_steps, "trials": len(res.trials), "ticks": res.ticks,
                  "best": res.best_score}))
"""


def run(compact: bool, budget: int, scheduler: str, cache: bool) -> dict:
    env = dict(os.environ)
    if not cache:
        env["HYPERJAX_COMPILE_CACHE"] = "0"
    out = subprocess.run([sys.executable, "-c", CHILD, "1" if compact else "0", str(budget), scheduler],
                         capture_output=True, text=True, env=env, cwd=os.path.dirname(os.path.dirname(__file__)) or ".")
    if out.returncode:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def summary(rows: list[dict]) -> dict:
    out = {}
    for k in rows[0]:
        v = [r[k] for r in rows]
        out[k] = {"median": statistics.median(v), "min": min(v), "max": max(v)}
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--budget", type=int, default=30_000_000)
    p.add_argument("--scheduler", default="hypertrick")
    p.add_argument("--cache", action="store_true", help="a warm persistent compilation cache (run once first)")
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    if a.cache:
        os.environ.setdefault("HYPERJAX_COMPILE_CACHE", os.path.join(tempfile.gettempdir(), "hyperjax-bench-cache"))
        for compact in (True, False):  # fill it
            run(compact, a.budget, a.scheduler, True)
    rows: dict[bool, list] = {True: [], False: []}
    for i in range(a.repeats):
        for compact in ((True, False) if i % 2 == 0 else (False, True)):  # alternate which runs first
            r = run(compact, a.budget, a.scheduler, a.cache)
            rows[compact].append(r)
            if not a.json:
                print(f"compact={compact}: " + json.dumps(r), flush=True)
    result = {"scheduler": a.scheduler, "budget": a.budget, "repeats": a.repeats, "cache": a.cache,
              "compact": summary(rows[True]), "plain": summary(rows[False])}
    result["wall_ratio_plain_over_compact"] = result["plain"]["seconds"]["median"] / result["compact"]["seconds"]["median"]
    print(json.dumps(result))


if __name__ == "__main__":
    main()
