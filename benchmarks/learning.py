"""Does the engine learn? One JSON line per (agent, env, seed) run.

    python benchmarks/learning.py [--runs ppo-cartpole a2c-cartpole ppo-pendulum brax] [--seeds 5]

Each run trains one configuration on ``--seeds`` seeds as one population and evaluates the
greedy/mean policy on 32 held-apart episodes per seed. Prints
``{"agent","env","seed","timesteps","eval_return","seconds"}`` per seed.
"""

from __future__ import annotations

import argparse
import json

import hyperjax as hj

RUNS = {
    # PureJaxRL/rejax CartPole settings.
    "ppo-cartpole": dict(
        agent=lambda: hj.PPO(env="CartPole-v1", num_envs=16, num_steps=128, num_epochs=4, num_minibatches=4),
        hparams=dict(learning_rate=2.5e-4, gamma=0.99, gae_lambda=0.95, clip_eps=0.2, ent_coef=0.01),
        timesteps=500_000,
    ),
    "a2c-cartpole": dict(
        agent=lambda: hj.A2C(env="CartPole-v1", num_envs=16, t_max=8, optimizer="adam"),
        hparams=dict(learning_rate=1e-3, gamma=0.99, gae_lambda=1.0, ent_coef=0.01),
        timesteps=500_000,
    ),
    "ppo-pendulum": dict(
        agent=lambda: hj.PPO(env="Pendulum-v1", num_envs=16, num_steps=256, num_epochs=10,
                             num_minibatches=32, normalize_obs=True),
        hparams=dict(learning_rate=1e-3, gamma=0.95, gae_lambda=0.95, clip_eps=0.2, ent_coef=0.0,
                     vf_coef=0.5, max_grad_norm=0.5),
        timesteps=1_000_000,
    ),
    "brax": dict(
        agent=lambda: hj.PPO(env="brax:inverted_pendulum", num_envs=32, num_steps=64, num_epochs=4,
                             num_minibatches=4, normalize_obs=True),
        hparams=dict(learning_rate=3e-4, gamma=0.99, ent_coef=0.0),
        timesteps=100_000,
    ),
}


def run(name: str, seeds: int, seed: int = 0, timesteps: int | None = None) -> list[dict]:
    spec = RUNS[name]
    agent = spec["agent"]()
    steps = timesteps or spec["timesteps"]
    res = hj.train(agent, agent.hparams(**spec["hparams"]), total_timesteps=steps,
                   num_seeds=seeds, seed=seed, eval_episodes=32)
    return [
        {"agent": agent.name, "env": agent.env, "seed": s, "timesteps": steps,
         "eval_return": round(float(res.eval_returns[0, s]), 2), "seconds": round(res.seconds, 1)}
        for s in range(seeds)
    ]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", nargs="+", default=list(RUNS), choices=list(RUNS))
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--timesteps", type=int, default=None, help="override every run's budget")
    a = p.parse_args(argv)
    for name in a.runs:
        for row in run(name, a.seeds, timesteps=a.timesteps):
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
