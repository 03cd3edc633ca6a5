"""One study in 2 processes x 1 CPU device (JAX multi-controller, gloo over 127.0.0.1) against
the same study in 1 process x 2 devices, alternately: what the per-tick broadcast of decisions
and gather of metrics cost.

    python benchmarks/multiprocess.py --json [--slots 64] [--phases 8] [--repeats 2]

A HyperTrick (r = 0.3) study of PPO on CartPole-v1 (16 envs x 128 steps, 64x64), phases of
16,384 env steps, 4 phases per trial, ``--slots`` slots, a budget of ``slots x phases`` phases
(every slot busy about twice a trial's length).
Per run one JSON line (process 0's numbers): wall seconds, training env steps/s (env steps over
the time in the training step, which includes the metrics gather in the multi-process case),
tuner seconds per tick (decisions, their broadcast, recording), ticks, the best score (both
layouts must agree).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys

import numpy as np


def one(slots: int, phases: int, address: str | None, process_id: int) -> dict:
    import hyperjax as hj

    if address:
        hj.distributed.initialize(address, 2, process_id)
    import jax

    from hyperjax.space import Float, SearchSpace

    space = SearchSpace({"learning_rate": Float(1e-4, 1e-2, log=True), "gamma": Float(0.9, 0.999),
                         "ent_coef": Float(1e-4, 1e-1, log=True)})
    phase = 16_384
    res = hj.tune(hj.PPO(env="CartPole-v1"), space, budget=slots * phases * phase, phase_steps=phase,
                  trial_steps=4 * phase, slots=slots, scheduler=hj.schedulers.HyperTrick(r=0.3), seed=0, reevaluate=0)
    t = res.timing
    return {"benchmark": "multiprocess", "layout": "2 processes x 1 device" if address else "1 process x 2 devices",
            "process": jax.process_index(), "devices": jax.device_count(), "slots": slots, "ticks": res.ticks,
            "wall_seconds": round(res.seconds, 2), "train_env_steps_per_second": round(res.env_steps / t["train"], 1),
            "tuner_ms_per_tick": round(1e3 * t["tuner"] / max(res.ticks, 1), 2), "trials": len(res.trials),
            "best_score": res.best_score}


def run(side: str, slots: int, phases: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS",)}
    base = [sys.executable, __file__, "--one", "--json", "--slots", str(slots), "--phases", str(phases)]
    if side == "single":
        out = subprocess.run(base, env=dict(env, HYPERJAX_HOST_DEVICES="2"), capture_output=True, text=True, check=True)
        return json.loads(out.stdout.strip().splitlines()[-1])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{s.getsockname()[1]}"
    procs = [subprocess.Popen(base + ["--address", address, "--process-id", str(i)],
                              env=dict(env, HYPERJAX_HOST_DEVICES="1"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for i in range(2)]
    outs = [p.communicate() for p in procs]
    if any(p.returncode for p in procs):
        raise RuntimeError(outs[0][1][-2000:] + outs[1][1][-2000:])
    return json.loads(outs[0][0].strip().splitlines()[-1])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--slots", type=int, default=64)
    p.add_argument("--phases", type=int, default=8, help="budget: slots x phases phases")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--json", action="store_true")
    p.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--address", default=None, help=argparse.SUPPRESS)
    p.add_argument("--process-id", type=int, default=0, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    emit = (lambda d: print(json.dumps(d), flush=True)) if a.json else (lambda d: print(d, flush=True))
    if a.one:
        emit(one(a.slots, a.phases, a.address, a.process_id))
        return
    rows = {"single": [], "multi": []}
    for _ in range(a.repeats):
        for side in ("single", "multi"):
            rows[side].append(run(side, a.slots, a.phases))
            emit(rows[side][-1])
    med = lambda side, k: float(np.median([r[k] for r in rows[side]]))  # noqa: E731
    emit({"benchmark": "multiprocess_summary", "repeats": a.repeats, "slots": a.slots,
          **{f"{k}_{side}": med(side, k) for side in rows for k in ("wall_seconds", "train_env_steps_per_second",
                                                                    "tuner_ms_per_tick")},
          "minmax_steps_per_second": {s: [min(r["train_env_steps_per_second"] for r in rs),
                                          max(r["train_env_steps_per_second"] for r in rs)] for s, rs in rows.items()},
          "same_best": len({r["best_score"] for rs in rows.values() for r in rs}) == 1})


if __name__ == "__main__":
    main()
