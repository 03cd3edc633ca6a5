"""The quick-start job: a HyperTrick study of PPO on CartPole-v1, printing the best configuration.

    python experiments/quickstart.py [--budget 30000000] [--slots 32] [--scheduler hypertrick] [--store runs/quickstart]

Trials (Sobol-proposed configurations of the traced PPO hyperparameters) flow through
``--slots`` population slots, trained together as one sharded program; at every phase boundary
HyperTrick evicts weak trials and the freed slots are refilled at once. Completed trials are
evaluated greedily on held-apart episodes (``--reevaluate 8``: at the end the eight leaders again
on 64 fresh episodes each, and the best chosen by that). Shows live progress (a panel in a terminal, a line
per tick in a log), then the top five configurations and a JSON summary. Everything is recorded in the study's store (``--store``, default
``runs/quickstart``) as it runs: a study killed at any moment continues where it stopped when the
same command runs again (or ``hj.resume(store)``), and ``hj.load_study(store)`` reads it back.
"""

from __future__ import annotations

import argparse
import json
import os

import jax

import hyperjax as hj
from hyperjax.space import Float, SearchSpace

SPACE = SearchSpace(
    {
        "learning_rate": Float(1e-4, 1e-2, log=True),
        "gamma": Float(0.9, 0.999),
        "gae_lambda": Float(0.8, 1.0),
        "clip_eps": Float(0.1, 0.4),
        "ent_coef": Float(1e-4, 1e-1, log=True),
        "vf_coef": Float(0.25, 1.0),
        "max_grad_norm": Float(0.3, 5.0, log=True),
    }
)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--env", default="CartPole-v1")
    p.add_argument("--budget", type=int, default=30_000_000, help="env steps for the whole study")
    p.add_argument("--phase-steps", type=int, default=32_768, help="env steps per trial between decisions")
    p.add_argument("--phases", type=int, default=8, help="phases of a trial that runs to the end")
    p.add_argument("--slots", type=int, default=32)
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--scheduler", default="hypertrick")
    p.add_argument("--r", type=float, default=0.3, help="HyperTrick's eviction rate per phase")
    p.add_argument("--max-seconds", type=float, default=None)
    p.add_argument("--store", default="runs/quickstart",
                   help="the study's store directory ('' for none); an existing one is resumed")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--reevaluate", type=int, default=0, help="leaders re-evaluated on fresh episodes at the end")
    a = p.parse_args(argv)

    agent = hj.PPO(env=a.env)
    scheduler = hj.schedulers.HyperTrick(r=a.r) if a.scheduler == "hypertrick" else a.scheduler
    store = a.store or None
    if store and hj.store.exists(os.path.abspath(store)):
        print(f"resuming the study in {store} (a finished one is shown as it ended; --store DIR for a new one)")
    print(f"PPO on {a.env}: {a.scheduler} study, {a.slots} slots x {a.seeds} seed(s), {a.budget:,} env steps, "
          f"phases of {a.phase_steps:,} steps, on {jax.device_count()} device(s)", flush=True)

    res = hj.tune(agent, SPACE, budget=a.budget, phase_steps=a.phase_steps, trial_steps=a.phases * a.phase_steps,
                  slots=a.slots, seeds=a.seeds, scheduler=scheduler, seed=a.seed, max_seconds=a.max_seconds,
                  reevaluate=a.reevaluate, callbacks=[hj.callbacks.Console()], store=store)
    df = res.dataframe()
    # the study's ranking: the leaders it re-evaluated (--reevaluate) first, the best on top
    done = df.set_index("trial", drop=False).loc[[t.id for t in res.ranking()]]
    reeval = bool(done.reeval_score.notna().any())
    print("\nrank  trial  eval_return  " + ("reevaluated  " if reeval else "") + "  ".join(f"{n:>13s}" for n in SPACE.names))
    for rank, (_, row) in enumerate(done.head(5).iterrows()):
        re = "" if not reeval else (f"{row.reeval_score:11.1f}  " if row.reeval_score == row.reeval_score else f"{'-':>11s}  ")
        print(f"{rank + 1:>4d}  {row.trial:>5d}  {row.final_score:11.1f}  {re}"
              + "  ".join(f"{row['config/' + n]:13.4g}" for n in SPACE.names))
    summary = res.summary()
    summary["best_config"] = {n: summary["best_config"][n] for n in SPACE.names} if res.best else None
    summary["timing"] = {k: round(v, 2) for k, v in res.timing.items()}
    print(json.dumps(summary))
    if store:
        print(f"\nstore: {store}  (hj.load_study({store!r}) reads it; hj.resume({store!r}) continues it if killed)")


if __name__ == "__main__":
    main()
