"""Throughput of a PPO population on CartPole-v1, optionally side by side with rejax.

    python benchmarks/throughput.py --population 64 --timesteps 262144 --json [--vs-rejax]

Settings are exactly those of the rejax peer (../shared/peers/rejax_ppo.py): 16 envs x 128
steps, 4 epochs x 4 minibatches, separate 64x64 tanh actor and critic, learning rate spread
log-uniformly over [1e-4, 10^-2.5] and clip epsilon linearly over [0.1, 0.3] across the
population, one greedy evaluation of 128 episodes at the end (rejax's default). The program is
run twice; the second run is timed and ``compile_seconds`` is first minus second.

Prints one JSON line: {"population","timesteps","seconds","compile_seconds","steps_per_second",
"peak_rss_mb","devices"} and, with --vs-rejax, "rejax_steps_per_second" and "ratio".
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

PEER = Path(__file__).resolve().parents[2] / "shared" / "peers" / "rejax_ppo.sh"


def run_hyperjax(population: int, timesteps: int, env: str) -> dict:
    import jax

    import hyperjax as hj

    agent = hj.PPO(env=env, num_envs=16, num_steps=128, num_epochs=4, num_minibatches=4,
                   hidden=(64, 64), activation="tanh")
    hp = agent.hparams(learning_rate=np.logspace(-4, -2.5, population),
                       clip_eps=np.linspace(0.1, 0.3, population))
    t0 = time.perf_counter()
    hj.train(agent, hp, total_timesteps=timesteps, seed=0, eval_episodes=128)
    t1 = time.perf_counter()
    res = hj.train(agent, hp, total_timesteps=timesteps, seed=0, eval_episodes=128)
    t2 = time.perf_counter()
    seconds = t2 - t1
    return {
        "population": population,
        "timesteps": timesteps,
        "seconds": round(seconds, 3),
        "compile_seconds": round((t1 - t0) - seconds, 3),
        "steps_per_second": round(population * timesteps / seconds, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "devices": jax.device_count(),
        "platform": jax.devices()[0].platform,
        "final_eval_return_mean": round(float(np.nanmean(res.eval_returns)), 2),
    }


def run_rejax(population: int, timesteps: int, env: str, peer: Path) -> dict:
    out = subprocess.run(
        ["bash", str(peer), "--population", str(population), "--timesteps", str(timesteps), "--env", env],
        capture_output=True, text=True, check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--population", type=int, default=64)
    p.add_argument("--timesteps", type=int, default=262144)
    p.add_argument("--env", default="CartPole-v1")
    p.add_argument("--json", action="store_true", help="print only the JSON line")
    p.add_argument("--vs-rejax", action="store_true", help="also run the rejax peer (own venv)")
    p.add_argument("--peer", type=Path, default=Path(os.environ.get("REJAX_PEER", PEER)))
    a = p.parse_args(argv)

    row = run_hyperjax(a.population, a.timesteps, a.env)
    if a.vs_rejax:
        peer = run_rejax(a.population, a.timesteps, a.env, a.peer)
        row["rejax_steps_per_second"] = round(peer["steps_per_second"], 1)
        row["rejax_compile_seconds"] = peer.get("compile_seconds")
        row["rejax_final_return_mean"] = peer.get("final_return_mean")
        row["ratio"] = round(row["steps_per_second"] / peer["steps_per_second"], 3)
    if not a.json:
        print(f"hyperjax PPO x{a.population} on {a.env}: {row['steps_per_second']:,.0f} env steps/s", file=sys.stderr)
    print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
