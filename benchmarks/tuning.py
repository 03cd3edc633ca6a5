"""Real tuning studies under one wall-clock budget: hyperjax's schedulers side by side, and the
Optuna (TPE + Hyperband pruner) study driving rejax PPO one trial at a time.

    python benchmarks/tuning.py --env Acrobot-v1 --seconds 240 --json [--peer]
    python benchmarks/tuning.py --overhead --json [--slots 32 --budget 30000000 --repeats 3]
        # the tuner's and the store's own cost: the same study without and with a store, alternately

Every method tunes PPO (16 envs x 128 steps, 4 epochs x 4 minibatches, 64x64 tanh) over the
peer's space (learning_rate, gamma, gae_lambda, clip_eps, ent_coef, vf_coef, max_grad_norm) with
the peer's trial shape: 8 phases of 32,768 env steps. hyperjax runs ``--slots`` trials at once;
PBT runs every slot for as many phases as the time allows (estimated from the first study's
measured rate). Per method one JSON line: the best completed trial's final greedy evaluation
(``best_final_return``), that trial's trained policy re-evaluated on 64 held-apart episodes
(``reevaluated_return``), wall seconds (compiles included), seconds until the best was found,
env steps, trials, the tuner's share of the wall time and slot utilisation.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import numpy as np

import hyperjax as hj
from hyperjax.proposers import make_proposer
from hyperjax.space import Float, SearchSpace

PEER = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "peers", "optuna_rejax.sh")
PHASE, PHASES = 32_768, 8

# The Optuna peers' space (their module docstring), so both sides search the same thing.
SPACE = SearchSpace(
    {
        "learning_rate": Float(1e-5, 1e-2, log=True),
        "gamma": Float(0.9, 0.9999),
        "gae_lambda": Float(0.8, 1.0),
        "clip_eps": Float(0.1, 0.4),
        "ent_coef": Float(1e-4, 1e-1, log=True),
        "vf_coef": Float(0.25, 1.0),
        "max_grad_norm": Float(0.3, 5.0, log=True),
    }
)


def run_method(env: str, method: str, seconds: float, slots: int, seed: int, pbt_phases: int | None = None,
               rate: float | None = None) -> dict:
    agent = hj.PPO(env=env)
    kw = dict(budget=10**12, phase_steps=PHASE, trial_steps=PHASES * PHASE, slots=slots, seed=seed,
              max_seconds=seconds, eval_episodes=16, reevaluate=0)  # the final choice as when measured
    scheduler = {"hypertrick": hj.schedulers.HyperTrick(r=0.3)}.get(method, method)
    if method in ("successive_halving", "hyperband"):
        # synchronous brackets are planned from an env-step budget: what the measured training
        # rate affords in ~65% of the time (the rest: compiling, idle slots while rungs wait, evaluation)
        kw["budget"] = int(0.65 * seconds * (rate or 1.5e5))
    if method == "pbt":
        kw["trial_steps"] = max(PHASES, pbt_phases or PHASES) * PHASE
        kw["budget"] = slots * kw["trial_steps"]
        scheduler = hj.schedulers.PBT(interval=2, quantile=0.25)
    if method == "hypertrick+bnn":
        scheduler = hj.schedulers.HyperTrick(r=0.3)
        kw["proposer"] = make_proposer("bnn", SPACE, seed, target_budget=float(PHASES * PHASE))
    if method == "extrapolate":
        scheduler = hj.schedulers.Extrapolate(threshold=0.05)
    res = hj.tune(agent, SPACE, scheduler=scheduler, **kw)
    summary = res.summary()
    out = {
        "env": env,
        "method": f"hyperjax/{method}",
        "best_final_return": None if res.best is None else round(res.best_score, 2),
        "reevaluated_return": None if res.best is None else round(res.evaluate_best(episodes=64, seed=10**6 + seed), 2),
        "wall_seconds": round(res.seconds, 1),
        "found_best_at": None if res.best is None else round(res.found_best_at, 1),
        "env_steps": int(res.env_steps),
        "trials": summary["trials"],
        "completed": summary["completed"],
        "tuner_fraction": summary["tuner_fraction"],
        "compile_seconds": round(res.timing["compile"], 1),
        "slot_utilization": summary["slot_utilization"],
        "steps_per_second_training": round(res.env_steps / max(res.timing["train"], 1e-9)),
        # the BNN fits on a worker beside training; the tuner's time includes what its asks
        # waited for a fit (surrogate_wait_seconds), and every other proposer call
        **({"surrogate_fit_seconds": round(sum(kw["proposer"].fit_seconds), 2),
            "surrogate_fits": len(kw["proposer"].fit_seconds),
            "surrogate_wait_seconds": round(sum(getattr(kw["proposer"], "wait_seconds", [])), 2),
            "proposals": dict(getattr(kw["proposer"], "counts", {}))}
           if hasattr(kw.get("proposer"), "fit_seconds") else {}),
        "best_config": summary["best_config"] and {n: round(summary["best_config"][n], 6) for n in SPACE.names},
    }
    return out


def run_peer(env: str, seconds: float, seed: int) -> dict:
    cmd = [PEER, "--env", env, "--max-seconds", str(seconds), "--seed", str(seed), "--target", "1e9"]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")][-1]
    d = json.loads(line)
    return {
        "env": env,
        "method": "optuna+rejax (peer)",
        "best_final_return": d.get("best_final_return"),
        "best_eval_return_any_phase": d.get("best_eval_return"),
        "wall_seconds": d.get("wall_seconds"),
        "env_steps": d.get("env_steps"),
        "trials": d.get("trials"),
        "pruned": d.get("pruned"),
    }


def overhead(slots: int, seed: int, budget: int | None = None, store: str | None = None) -> dict:
    """A HyperTrick (r = 0.3) CartPole study with ``slots`` slots (the quick start's settings at
    32): the tuner's and, with ``store``, the store's share of the wall time."""
    import shutil
    import tempfile

    agent = hj.PPO(env="CartPole-v1")
    budget = budget or slots * PHASE * 16
    tmp = tempfile.mkdtemp(prefix="hyperjax-overhead-") if store == "tmp" else None
    try:
        res = hj.tune(agent, SPACE, budget=budget, phase_steps=PHASE, trial_steps=PHASES * PHASE, slots=slots,
                      scheduler=hj.schedulers.HyperTrick(r=0.3), seed=seed, eval_episodes=16, reevaluate=0,
                      store=os.path.join(tmp, "s") if tmp else store)
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    t = res.timing
    return {
        "benchmark": "tuner_overhead",
        "store": store is not None,
        "slots": slots,
        "budget": budget,
        "ticks": res.ticks,
        "trials": len(res.trials),
        "wall_seconds": round(res.seconds, 2),
        "env_steps_per_second": round(res.env_steps / res.seconds, 1),
        "timing": {k: round(v, 3) for k, v in t.items()},
        "tuner_fraction_of_wall": round(t["tuner"] / res.seconds, 4),
        "store_fraction_of_wall": round(t.get("store", 0.0) / res.seconds, 4),
        "tuner_fraction_excluding_compile": round(t["tuner"] / (res.seconds - t["compile"]), 4),
        "tuner_ms_per_tick": round(1e3 * t["tuner"] / max(res.ticks, 1), 2),
        "store_ms_per_tick": round(1e3 * t.get("store", 0.0) / max(res.ticks, 1), 2),
        "slot_utilization": res.slot_utilization,
        "best_final_return": res.best_score,
    }


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--env", nargs="+", default=["Acrobot-v1"])
    p.add_argument("--seconds", type=float, default=240)
    p.add_argument("--slots", type=int, default=32)
    p.add_argument("--methods", nargs="+", default=["none", "hypertrick", "asha", "successive_halving", "pbt"],
                   help="also: hyperband, hypertrick+bnn (BNN proposer), extrapolate (BNN learning-curve rule)")
    p.add_argument("--peer", action="store_true", help="also run the Optuna + rejax peer")
    p.add_argument("--overhead", action="store_true",
                   help="only measure the tuner's and the store's own cost (quick-start settings at --slots 32)")
    p.add_argument("--overhead-one", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--with-store", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--budget", type=int, default=None, help="--overhead: env steps (default: slots x 16 phases)")
    p.add_argument("--repeats", type=int, default=3, help="--overhead: runs with and without a store, alternately")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rate", type=float, default=None,
                   help="training env steps/s to plan SH/Hyperband/PBT with (default: measured by the first method)")
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    emit = (lambda d: print(json.dumps(d), flush=True)) if a.json else (lambda d: print(d, flush=True))
    if a.overhead:
        # without and with a store, alternately, --repeats times each (each in its own process:
        # the same compile work in both); medians of the wall time and of the shares
        rows = {False: [], True: []}
        for _ in range(a.repeats):
            for with_store in (False, True):
                cmd = [sys.executable, __file__, "--overhead-one", "--json", "--slots", str(a.slots), "--seed", str(a.seed)]
                cmd += ["--budget", str(a.budget)] if a.budget else []
                cmd += ["--with-store"] if with_store else []
                out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
                rows[with_store].append(json.loads(out))
                emit(rows[with_store][-1])
        med = lambda rs, f: float(np.median([f(r) for r in rs]))  # noqa: E731
        emit({"benchmark": "store_overhead_summary", "repeats": a.repeats, "slots": a.slots,
              "wall_median_without": med(rows[False], lambda r: r["wall_seconds"]),
              "wall_median_with": med(rows[True], lambda r: r["wall_seconds"]),
              "wall_minmax_without": [min(r["wall_seconds"] for r in rows[False]), max(r["wall_seconds"] for r in rows[False])],
              "wall_minmax_with": [min(r["wall_seconds"] for r in rows[True]), max(r["wall_seconds"] for r in rows[True])],
              "store_fraction_median": med(rows[True], lambda r: r["store_fraction_of_wall"]),
              "tuner_fraction_median": med(rows[False] + rows[True], lambda r: r["tuner_fraction_of_wall"])})
        return
    if a.overhead_one:
        emit(overhead(a.slots, a.seed, a.budget, "tmp" if a.with_store else None))
        return
    for env in a.env:
        rate = a.rate
        for method in a.methods:
            pbt_phases = None
            if method == "pbt" and rate:
                # as many phases as the measured training rate allows in ~85% of the time
                pbt_phases = int(0.85 * a.seconds * rate / (a.slots * PHASE))
            row = run_method(env, method, a.seconds, a.slots, a.seed, pbt_phases, rate)
            rate = rate or row["steps_per_second_training"]
            emit(row)
        if a.peer:
            emit(run_peer(env, a.seconds, a.seed))


if __name__ == "__main__":
    sys.exit(main())
