"""Where an update's time goes: the rollout (with its advantages) against the learning step.

    python -m benchmarks.phases --population 64
    python -m benchmarks.phases --population 64 --env Breakout-MinAtar

An update of a member is :meth:`ActorCriticAgent.collect` (``num_steps`` env steps in
``num_envs`` environments, actor and critic evaluations, GAE) followed by
:meth:`ActorCriticAgent.improve` (PPO's epochs of minibatch gradient steps, the non-finite
guard). This script times each half as its own compiled program on every device (``collect``
vmapped over the device's members, ``improve`` in chunks of ``population.member_chunk``), and
the population's whole advance (``Runner.advance``), all after ``block_until_ready``. The same
settings as ``throughput.py`` (the rejax peer's).

Prints one JSON line: {"population", "env", "devices", "chunk", "collect_ms", "improve_ms",
"update_ms" (one update of every member, from ``Runner.advance`` over ``--updates`` updates),
"collect_share" (collect_ms / (collect_ms + improve_ms)), "steps_per_second" (from
update_ms)}; each time the median of ``--repeats`` runs, with ``*_min``/``*_max``.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def _timed(fn, repeats: int) -> dict:
    """Milliseconds of ``fn()`` (which blocks until its results are ready): median, min, max."""
    fn()  # compiles
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(1e3 * (time.perf_counter() - t0))
    return {"median": round(float(np.median(times)), 2), "min": round(min(times), 2), "max": round(max(times), 2)}


def measure(population: int, env: str, updates: int, repeats: int) -> dict:
    import jax
    from jax.sharding import PartitionSpec as P

    from benchmarks.throughput import peer_setting
    from hyperjax.population import AXIS, Runner, member_chunk, population_mesh
    from hyperjax.rng import as_key

    agent, hp = peer_setting(population, env)
    runner = Runner(agent, population_mesh())
    keys = jax.random.split(as_key(0), population)
    state = runner.init(keys, hp)
    hp_d = runner.place(hp)
    local = population // runner.mesh.devices.size
    chunk = member_chunk(agent, local)

    def sharded(body):
        return jax.jit(jax.shard_map(body, mesh=runner.mesh, in_specs=P(AXIS), out_specs=P(AXIS), check_vma=False))

    collect = sharded(jax.vmap(agent.collect))

    def improve_body(s, new, batch, episodes, h):
        return jax.lax.map(lambda a: agent.improve(*a), (s, new, batch, episodes, h), batch_size=chunk)

    improve = sharded(improve_body)
    gathered = collect(state, hp_d)
    block = jax.block_until_ready
    collect_ms = _timed(lambda: block(collect(state, hp_d)), repeats)
    improve_ms = _timed(lambda: block(improve(state, *gathered, hp_d)), repeats)
    advance_ms = _timed(lambda: block(runner.advance(state, hp, updates)), repeats)
    update_ms = {k: round(v / updates, 2) for k, v in advance_ms.items()}
    both = collect_ms["median"] + improve_ms["median"]
    return {
        "population": population, "env": env, "devices": runner.mesh.devices.size, "chunk": chunk,
        "collect_ms": collect_ms["median"], "collect_ms_min": collect_ms["min"], "collect_ms_max": collect_ms["max"],
        "improve_ms": improve_ms["median"], "improve_ms_min": improve_ms["min"], "improve_ms_max": improve_ms["max"],
        "update_ms": update_ms["median"], "update_ms_min": update_ms["min"], "update_ms_max": update_ms["max"],
        "collect_share": round(collect_ms["median"] / both, 3),
        "steps_per_second": round(population * agent.steps_per_update / (update_ms["median"] / 1e3), 1),
    }


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--population", type=int, nargs="+", default=[64])
    p.add_argument("--env", default="CartPole-v1")
    p.add_argument("--updates", type=int, default=8, help="updates per timed advance")
    p.add_argument("--repeats", type=int, default=5)
    a = p.parse_args(argv)
    for population in a.population:
        print(json.dumps(measure(population, a.env, a.updates, a.repeats)), flush=True)


if __name__ == "__main__":
    main()
