"""The quick-start job: tune PPO on CartPole-v1 as one sharded population, print the best.

    python experiments/quickstart.py [--configs 16] [--seeds 2] [--timesteps 250000]

Draws ``--configs`` scrambled-Sobol configurations of the traced PPO hyperparameters, trains
each on ``--seeds`` seeds in one compiled program (the population split over every device, CPU
cores included), evaluates the greedy policies on held-apart episodes and prints a ranking and
the best configuration as JSON.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

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
    p.add_argument("--configs", type=int, default=16)
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--timesteps", type=int, default=250_000)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)

    agent = hj.PPO(env=a.env)
    SPACE.validate_for(agent)
    # Five progress reports, each one compiled chunk of equal size.
    chunk = max(1, a.timesteps // agent.steps_per_update // 5)
    a.timesteps = max(1, a.timesteps // (chunk * agent.steps_per_update)) * chunk * agent.steps_per_update
    configs = SPACE.decode(SPACE.sobol(a.configs, seed=a.seed))
    hp = agent.hparams(**configs)

    def progress(step, m):
        r = m["train/episode_return"]
        print(f"  {step:>9,d} steps/member  train return: best {np.nanmax(r):6.1f}  median {np.nanmedian(r):6.1f}", flush=True)

    import jax

    print(f"PPO on {a.env}: {a.configs} configs x {a.seeds} seeds, {a.timesteps:,} steps each, "
          f"on {jax.device_count()} device(s)", flush=True)
    t0 = time.perf_counter()
    res = hj.train(agent, hp, total_timesteps=a.timesteps, num_seeds=a.seeds, seed=a.seed,
                   eval_episodes=32, chunk_updates=chunk,
                   progress_fn=progress)
    wall = time.perf_counter() - t0
    score = res.score
    order = np.argsort(-score)
    print("\nrank  eval_return  " + "  ".join(f"{n:>13s}" for n in SPACE.names))
    for rank, i in enumerate(order[:5]):
        print(f"{rank + 1:>4d}  {score[i]:11.1f}  " + "  ".join(f"{configs[n][i]:13.4g}" for n in SPACE.names))
    best = int(order[0])
    print(json.dumps({
        "best_config": {n: float(configs[n][best]) for n in SPACE.names},
        "best_eval_return": float(score[best]),
        "failed": int(res.failed.sum()),
        "env_steps": int(a.configs * a.seeds * a.timesteps),
        "wall_seconds": round(wall, 1),
    }))


if __name__ == "__main__":
    main()
