"""Transfer between environments, measured: studies on a target environment with and without
``tune(transfer_from=...)`` a finished study on a source environment, at equal budgets.

    python benchmarks/transfer.py [--pairs SRC:DST ...] [--seeds 3] [--budget 2000000] [--json]

Per pair: one source study (seed 0), ``hj.transfer.similarity`` between the two environments
(8 probe configurations, measured before the target studies), then ``--seeds`` target studies
without and with transfer, alternately. Per target study: the best final score (greedy
evaluation of the best trial) and the anytime curve (env steps, incumbent's score) from which
"env steps to target" is read, the target being the median best score of the studies without
transfer. Env steps, not seconds, so that the figures do not depend on the machine's load.

Protocol: PPO with the peers' settings over the quick start's seven-parameter space, BNN
proposer (Thompson batches), HyperTrick r = 0.3, 8 slots, trials of 4 phases of 8,192 env
steps (short trials: CartPole is not solved within one, so the configuration matters), 1M env
steps per study. Default pairs: CartPole-v1 -> Acrobot-v1 and Acrobot-v1 -> CartPole-v1 (two
discrete-action control tasks), and Pendulum-v1 -> Acrobot-v1 as the dissimilar control
(continuous actions, rewards of another scale and sign).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PAIRS = ["CartPole-v1:Acrobot-v1", "Acrobot-v1:CartPole-v1", "Pendulum-v1:Acrobot-v1"]
PHASE, PHASES, SLOTS = 8_192, 4, 8


def _study(env: str, seed: int, budget: int, transfer_from=None):
    import hyperjax as hj
    from hyperjax.proposers import make_proposer

    sys.path.insert(0, os.path.join(HERE, ".."))
    from experiments.quickstart import SPACE

    curve = []

    def anytime(study, changes):
        if study.best is not None:
            curve.append((int(study.used), float(study.best.final_score)))

    prop = make_proposer("bnn", SPACE, seed, target_budget=float(PHASES * PHASE))
    t0 = time.perf_counter()
    res = hj.tune(hj.PPO(env=env), SPACE, budget=budget, phase_steps=PHASE, trial_steps=PHASES * PHASE, slots=SLOTS,
                  scheduler=hj.schedulers.HyperTrick(r=0.3), proposer=prop, seed=seed, eval_episodes=16,
                  callbacks=[anytime], transfer_from=transfer_from, reevaluate=0)
    return res, curve, time.perf_counter() - t0


def _steps_to(curve, target):
    return next((used for used, best in curve if best >= target), None)


def run_pair(src: str, dst: str, seeds: int, budget: int) -> dict:
    import numpy as np

    import hyperjax as hj
    from experiments.quickstart import SPACE

    source, _, src_s = _study(src, 0, budget)
    sim = hj.transfer.similarity(hj.PPO(env=src), src, dst, SPACE, probes=8, total_timesteps=PHASES * PHASE,
                                 seeds=2, seed=0)
    rows = {"without": [], "with": []}
    for seed in range(1, seeds + 1):
        for mode in ("without", "with"):  # alternately
            res, curve, secs = _study(dst, seed, budget, transfer_from=source if mode == "with" else None)
            rows[mode].append({"seed": seed, "best": res.best_score, "curve": curve, "seconds": round(secs, 1),
                               "trials": len(res.trials), "env_steps": int(res.env_steps)})
    target = float(np.median([r["best"] for r in rows["without"]]))
    out = {"source": src, "target": dst, "source_best": round(source.best_score, 2), "source_seconds": round(src_s, 1),
           "spearman": round(sim["spearman"], 3), "likely_to_help": bool(sim["likely_to_help"]),
           "target_score": round(target, 2), "budget": budget}
    for mode, rs in rows.items():
        reach = [_steps_to(r["curve"], target) for r in rs]
        out[mode] = {"best": [round(r["best"], 2) for r in rs], "best_median": round(float(np.median([r["best"] for r in rs])), 2),
                     "steps_to_target": reach, "seconds": [r["seconds"] for r in rs]}
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pairs", nargs="+", default=PAIRS, help="SOURCE:TARGET environment ids")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--budget", type=int, default=1_000_000, help="env steps per study")
    a = p.parse_args(argv)
    sys.path.insert(0, os.path.join(HERE, ".."))
    for pair in a.pairs:
        src, _, dst = pair.partition(":")
        if not dst:
            p.error(f"--pairs: {pair!r} must be SOURCE:TARGET")
        print(json.dumps(run_pair(src, dst, a.seeds, a.budget)), flush=True)


if __name__ == "__main__":
    main()
