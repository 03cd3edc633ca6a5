"""The quick-start job: a HyperTrick study of PPO on CartPole-v1, printing the best configuration.

    python experiments/quickstart.py [--budget 30000000] [--slots 32] [--scheduler hypertrick] [--store runs/quickstart]

Trials (Sobol-proposed configurations of the traced PPO hyperparameters) flow through
``--slots`` population slots, trained together as one sharded program; at every phase boundary
HyperTrick evicts weak trials and the freed slots are refilled at once. Completed trials are
evaluated greedily on held-apart episodes; when the study ends, the eight leaders'
configurations are retrained from scratch on two fresh seeds each and the best is the one whose
retrained runs score highest (``tune``'s default; ``--reevaluate 0`` for the highest first
evaluation). Shows live progress (a panel in a terminal, a line per tick in a log), then the top
five configurations and a JSON summary. Everything is recorded in the study's store
(``--store``, default ``runs/quickstart``) as it runs: a study killed at any moment continues
where it stopped when the same command runs again (or ``hj.resume(store)``), and
``hj.load_study(store)`` reads it back.
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


def _auto_int(text: str) -> int | str:
    return text if text == "auto" else int(text)


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
    p.add_argument("--reevaluate", type=_auto_int, default="auto",
                   help="leaders re-evaluated on fresh episodes at the end (default: tune's, 8)")
    p.add_argument("--reevaluate-seeds", type=_auto_int, default="auto",
                   help="fresh seeds each leader's configuration is retrained on (default: tune's, 2)")
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
                  reevaluate=a.reevaluate, reevaluate_seeds=a.reevaluate_seeds, callbacks=[hj.callbacks.Console()], store=store)
    df = res.dataframe()
    # the study's ranking: the leaders it retrained (or re-evaluated) first, the best on top
    done = df.set_index("trial", drop=False).loc[[t.id for t in res.ranking()]]
    extra = [(name, col) for name, col in (("reevaluated", "reeval_score"), ("retrained", "reseed_score"))
             if done[col].notna().any()]
    print("\nrank  trial  eval_return  " + "".join(f"{name:>11s}  " for name, _ in extra)
          + "  ".join(f"{n:>13s}" for n in SPACE.names))
    for rank, (_, row) in enumerate(done.head(5).iterrows()):
        cells = "".join(f"{row[col]:11.1f}  " if row[col] == row[col] else f"{'-':>11s}  " for _, col in extra)
        print(f"{rank + 1:>4d}  {row.trial:>5d}  {row.final_score:11.1f}  {cells}"
              + "  ".join(f"{row['config/' + n]:13.4g}" for n in SPACE.names))
    summary = res.summary()
    summary["best_config"] = {n: summary["best_config"][n] for n in SPACE.names} if res.best else None
    summary["timing"] = {k: round(v, 2) for k, v in res.timing.items()}
    print(json.dumps(summary))
    if store:
        print(f"\nstore: {store}  (hj.load_study({store!r}) reads it; hj.resume({store!r}) continues it if killed)")


if __name__ == "__main__":
    main()
