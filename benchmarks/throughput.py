"""Throughput of a PPO population on CartPole-v1, optionally side by side with rejax.

    python benchmarks/throughput.py --population 1 16 64 --vs-rejax --json
    python benchmarks/throughput.py --population 64 --env Breakout-MinAtar --vs-rejax --json
    python benchmarks/throughput.py --population 256 1024 --repeats 1 --json   # memory

Settings are exactly those of the rejax peer (../shared/peers/rejax_ppo.py): 16 envs x 128
steps, 4 epochs x 4 minibatches, separate 64x64 tanh actor and critic, learning rate spread
log-uniformly over [1e-4, 10^-2.5] and clip epsilon linearly over [0.1, 0.3] across the
population, one greedy evaluation of 128 episodes at the end (rejax's default). The program is
run twice; the second run is timed and ``compile_seconds`` is first minus second. When that
timed run is shorter than ``--min-seconds`` (default 20), the env steps per member are scaled up
so that it is not (both sides train the same number), and the program is compiled again.

``ceiling_fraction``: the model FLOPs of an env step (:func:`flops_per_env_step`: the rollout's
actor and two critic evaluations, and per epoch each network's forward, kernel gradients and
input gradients; 2 FLOPs per multiply-add; activations, the optimizer and the environment not
counted) times the env steps per second, over the FLOP rate XLA reaches on this machine in a
large float32 matrix product on every device at once (:func:`gemm_flops`: 1024^3 per device).

Prints one JSON line per population: {"population","timesteps","seconds","compile_seconds",
"steps_per_second","peak_rss_mb","devices","flops_per_env_step","ceiling_fraction"} and, with --vs-rejax, "rejax_steps_per_second" and
"ratio". With ``--repeats N`` (default 3) the two sides alternate N times (hyperjax timed run i,
then rejax run i, ...), so that a noisy stretch of a shared machine hits both; the row then
holds the medians, ``*_min``/``*_max`` and ``ratio`` = ratio of the medians.
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


def peer_setting(population: int, env: str):
    """The rejax peer's agent and ``population`` hyperparameters (learning rate and clip epsilon
    spread over the population; the module docstring gives the settings)."""
    import hyperjax as hj

    agent = hj.PPO(env=env, num_envs=16, num_steps=128, num_epochs=4, num_minibatches=4,
                   hidden=(64, 64), activation="tanh")
    hp = agent.hparams(learning_rate=np.logspace(-4, -2.5, population),
                       clip_eps=np.linspace(0.1, 0.3, population))
    return agent, hp


def run_hyperjax(population: int, timesteps: int, env: str, min_seconds: float = 0.0) -> dict:
    import jax

    import hyperjax as hj

    agent, hp = peer_setting(population, env)
    while True:
        t0 = time.perf_counter()
        hj.train(agent, hp, total_timesteps=timesteps, seed=0, eval_episodes=128)
        t1 = time.perf_counter()
        res = hj.train(agent, hp, total_timesteps=timesteps, seed=0, eval_episodes=128)  # returns host arrays
        t2 = time.perf_counter()
        seconds = t2 - t1
        if seconds >= min_seconds:
            break
        # longer runs, in whole updates; a different number of updates is another program
        per = agent.steps_per_update
        timesteps = per * -(-int(timesteps * 1.1 * min_seconds / seconds) // per)
    flops = flops_per_env_step(agent)
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
        "flops_per_env_step": flops,
    }


def run_hyperjax_timed(population: int, timesteps: int, env: str) -> float:
    """Env steps/s of one more run of the (already compiled) program."""
    import hyperjax as hj

    agent, hp = peer_setting(population, env)
    t0 = time.perf_counter()
    hj.train(agent, hp, total_timesteps=timesteps, seed=0, eval_episodes=128)
    return population * timesteps / (time.perf_counter() - t0)


def run_rejax(population: int, timesteps: int, env: str, peer: Path) -> dict:
    out = subprocess.run(
        ["bash", str(peer), "--population", str(population), "--timesteps", str(timesteps), "--env", env],
        capture_output=True, text=True, check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def flops_per_env_step(agent) -> float:
    """Model FLOPs one env step costs a PPO member (see the module docstring)."""
    env = agent.env_obj
    sizes = (env.obs_dim,) + tuple(agent.hidden)

    def macs(out: int) -> tuple[int, int]:  # (forward, input-gradient) multiply-adds per sample
        dims = sizes + (out,)
        fwd = sum(a * b for a, b in zip(dims[:-1], dims[1:]))
        return fwd, fwd - dims[0] * dims[1]  # no gradient flows into the observation

    actor, critic = macs(env.num_actions), macs(1)
    rollout = actor[0] + 2 * critic[0]  # the action, V(obs) and V(state reached)
    epoch = sum(f + f + g for f, g in (actor, critic))  # forward, kernel grads, input grads
    return 2.0 * (rollout + agent.num_epochs * epoch)


def gemm_flops(n: int = 1024, repeats: int = 10) -> float:
    """FLOP/s of ``n x n x n`` float32 matrix products, one per device, all devices at once."""
    import jax
    import jax.numpy as jnp
    from jax.sharding import NamedSharding, PartitionSpec

    from hyperjax.population import population_mesh

    mesh = population_mesh()
    d = mesh.devices.size
    x = jax.device_put(jnp.ones((d, n, n), jnp.float32) / n, NamedSharding(mesh, PartitionSpec("pop")))
    f = jax.jit(jax.vmap(lambda a: a @ a))
    f(x).block_until_ready()
    t0 = time.perf_counter()
    for _ in range(repeats):
        y = f(x)
    y.block_until_ready()
    return repeats * d * 2.0 * n**3 / (time.perf_counter() - t0)


def _spread(values: list[float]) -> dict:
    return {"median": round(float(np.median(values)), 1), "min": round(min(values), 1), "max": round(max(values), 1)}


def measure(population: int, timesteps: int, env: str, repeats: int, peer: Path | None,
            min_seconds: float = 0.0, ceiling: float | None = None) -> dict:
    """One population: hyperjax's compiled program timed ``repeats`` times, alternating with
    ``repeats`` runs of the rejax peer (when ``peer`` is given)."""
    row = run_hyperjax(population, timesteps, env, min_seconds)  # compiles, then one timed run
    timesteps = row["timesteps"]
    ours, theirs, peer_rows = [row["steps_per_second"]], [], []
    for i in range(repeats):
        if i > 0:
            ours.append(run_hyperjax_timed(population, timesteps, env))
        if peer is not None:
            peer_rows.append(run_rejax(population, timesteps, env, peer))
            theirs.append(float(peer_rows[-1]["steps_per_second"]))
    ours_s = _spread(ours)
    row.update(steps_per_second=ours_s["median"], seconds=round(population * timesteps / ours_s["median"], 3),
               repeats=repeats)
    if repeats > 1:
        row.update(steps_per_second_min=ours_s["min"], steps_per_second_max=ours_s["max"])
    if ceiling is not None:
        row["gemm_gflops"] = round(ceiling / 1e9, 1)
        row["ceiling_fraction"] = round(ours_s["median"] * row["flops_per_env_step"] / ceiling, 3)
    if theirs:
        theirs_s = _spread(theirs)
        row["rejax_steps_per_second"] = theirs_s["median"]
        if repeats > 1:
            row.update(rejax_steps_per_second_min=theirs_s["min"], rejax_steps_per_second_max=theirs_s["max"])
        row["rejax_compile_seconds"] = peer_rows[-1].get("compile_seconds")
        row["rejax_final_return_mean"] = peer_rows[-1].get("final_return_mean")
        row["ratio"] = round(ours_s["median"] / theirs_s["median"], 3)
    return row


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--population", type=int, nargs="+", default=[64])
    p.add_argument("--timesteps", type=int, default=131072, help="env steps per member (scaled up to --min-seconds)")
    p.add_argument("--min-seconds", type=float, default=20.0, help="shortest timed run; longer runs train more steps")
    p.add_argument("--env", default="CartPole-v1")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per side, alternating (medians reported)")
    p.add_argument("--no-ceiling", action="store_true", help="skip measuring the machine's matmul FLOP rate")
    p.add_argument("--json", action="store_true", help="print only the JSON lines")
    p.add_argument("--vs-rejax", action="store_true", help="also run the rejax peer (own venv)")
    p.add_argument("--peer", type=Path, default=Path(os.environ.get("REJAX_PEER", PEER)))
    a = p.parse_args(argv)
    if a.repeats < 1:
        p.error(f"--repeats={a.repeats} must be >= 1")

    ceiling = None if a.no_ceiling else gemm_flops()
    for population in a.population:
        row = measure(population, a.timesteps, a.env, a.repeats, a.peer if a.vs_rejax else None,
                      a.min_seconds, ceiling)
        if not a.json:
            print(f"hyperjax PPO x{population} on {a.env}: {row['steps_per_second']:,.0f} env steps/s", file=sys.stderr)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
