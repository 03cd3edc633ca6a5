"""What watching a study costs: the quick start without callbacks and with the three built-in
ones (Console as a live rich panel, TensorBoard, W&B offline), alternately, each run in its own
process (the same compile work on both sides).

    python benchmarks/callbacks.py --json [--budget 10000000] [--repeats 3]

Per run one JSON line: wall seconds, the study's own timing of every callback
(``timing["callback_<Class>"]``: time spent inside the callback on the study's thread) and its
share of the wall time. The summary line: medians (min/max) of the wall time without and with
the callbacks, and the median share of each callback. The wall-time difference also counts
what runs beside the study (W&B's service process, TensorBoard's writer thread) on the two
cores; it is noisy at the 1% level, the in-study timing is not.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def one(budget: int, with_callbacks: bool, seed: int) -> dict:
    import yaml

    import hyperjax as hj
    from hyperjax.config import tune_arguments

    with open(os.path.join(HERE, "..", "experiments", "configs", "quickstart.yaml")) as f:
        config = yaml.safe_load(f)
    config.update(budget=budget, seed=seed, reevaluate=0)  # the final choice as when the figures were measured
    agent, space, kw = tune_arguments(config)
    tmp = tempfile.mkdtemp(prefix="hyperjax-callbacks-")
    devnull = open(os.devnull, "w")
    try:
        callbacks = []
        if with_callbacks:
            os.environ.setdefault("WANDB_MODE", "offline")
            os.environ.setdefault("WANDB_SILENT", "true")
            callbacks = [hj.callbacks.Console(file=devnull, force_terminal=True),
                         hj.callbacks.TensorBoard(os.path.join(tmp, "tb")),
                         hj.callbacks.WandB(project="hyperjax-bench", dir=os.path.join(tmp, "wandb"), mode="offline")]
        res = hj.tune(agent, space, store=os.path.join(tmp, "store"), callbacks=callbacks, **kw)
    finally:
        devnull.close()
        shutil.rmtree(tmp, ignore_errors=True)
    t = res.timing
    return {
        "benchmark": "callbacks", "callbacks": with_callbacks, "budget": budget, "ticks": res.ticks,
        "trials": len(res.trials), "wall_seconds": round(res.seconds, 2),
        "callbacks_seconds": round(t.get("callbacks", 0.0), 3),
        "callbacks_fraction_of_wall": round(t.get("callbacks", 0.0) / res.seconds, 5),
        "per_callback_seconds": {k[len("callback_"):]: round(v, 3) for k, v in t.items() if k.startswith("callback_")},
        "best_final_return": res.best_score,
    }


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--budget", type=int, default=30_000_000, help="env steps (the quick start's: 30M)")
    p.add_argument("--repeats", type=int, default=3, help="runs without and with callbacks, alternately")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true")
    p.add_argument("--one", choices=["without", "with"], help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    emit = (lambda d: print(json.dumps(d), flush=True)) if a.json else (lambda d: print(d, flush=True))
    if a.one:
        emit(one(a.budget, a.one == "with", a.seed))
        return
    rows = {"without": [], "with": []}
    for _ in range(a.repeats):
        for side in ("without", "with"):
            cmd = [sys.executable, __file__, "--one", side, "--json", "--budget", str(a.budget), "--seed", str(a.seed)]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
            rows[side].append(json.loads(out))
            emit(rows[side][-1])
    wall = {s: [r["wall_seconds"] for r in rs] for s, rs in rows.items()}
    names = sorted({k for r in rows["with"] for k in r["per_callback_seconds"]})
    emit({
        "benchmark": "callbacks_summary", "repeats": a.repeats, "budget": a.budget,
        "wall_median_without": float(np.median(wall["without"])), "wall_minmax_without": [min(wall["without"]), max(wall["without"])],
        "wall_median_with": float(np.median(wall["with"])), "wall_minmax_with": [min(wall["with"]), max(wall["with"])],
        "wall_ratio_of_medians": round(float(np.median(wall["with"]) / np.median(wall["without"])), 4),
        "callbacks_fraction_median": float(np.median([r["callbacks_fraction_of_wall"] for r in rows["with"]])),
        "per_callback_fraction_median": {
            n: round(float(np.median([r["per_callback_seconds"].get(n, 0.0) / r["wall_seconds"] for r in rows["with"]])), 5)
            for n in names},
    })


if __name__ == "__main__":
    main()
