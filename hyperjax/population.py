"""Whole populations of members trained as one compiled program, sharded over devices.

A population is ``M`` members (``K`` configurations x ``S`` seeds, flattened), each with its own
PRNG key and hyperparameters. Every function here is ``jit(shard_map(vmap(per_member)))``: the
member axis is split over a 1-d device mesh named ``"pop"`` and each device vmaps its own slice,
so members never communicate and a device never waits for another. ``M`` that does not divide
the device count is padded with copies of the last member and the padding is dropped on return.

What is bit-identical (measured on XLA:CPU with jax 0.10 over 300 updates: every leaf of every
member's state, every curve point, every evaluation; ``tests/test_population.py`` checks
positions in each kind that has more than one member, and population sizes and device counts in
the kind a study on a multi-core host runs, a sharded mesh with several members per device): a
member's numbers depend only on its own key and hyperparameters and on which of four kinds of
program trains it: a 1-device mesh or a sharded one (2 or more devices), each with one member
per device or with several. Within one kind they depend neither on the member's position, nor
on what the other members hold, nor on the population size (a configuration trained alone
equals its members in a larger population; padding changes nothing; checked with the tests'
small networks: with the default 64x64 networks, 16 and 32 members on 2 devices differed after
one phase, as XLA picks other kernels for other batch sizes), nor on the number of
devices (2 and 4 devices agree). Across kinds XLA compiles different kernels (other summation
orders): a member's numbers differ from the first update by float32 rounding, still agree to
about 1e-5 after 10 updates (the same actions, so the same returns), and then diverge as RL
training amplifies the difference (measured once: about 1e-2 after 30 updates, O(1) after 50;
after hundreds of updates, different returns; the test checks the first 10 updates). Compare configurations within one population, or across runs
of one kind; never expect a run on 1 device to reproduce one on 2 devices, or a member alone on
its device to reproduce one that shares it. (Other backends may batch differently: these are
XLA:CPU's kinds.)

On XLA:CPU a device advances its members in chunks of :func:`member_chunk` when their
activations would outgrow the core's cache (never with the tests' small networks; 2 at a time
for the 64x64 CartPole PPO, 1 for MinAtar's 400 inputs): the chunk size is part of a program's
kind. Chunked members agree with members vmapped all at once to rounding, and within a chunked
program a member's numbers still do not depend on its position (``tests/test_population.py``).
"""

from __future__ import annotations

import functools
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from hyperjax.agents.base import ActorCriticAgent, MemberState, UpdateMetrics

AXIS = "pop"

# Bytes of one layer's activations (a gradient step's samples x the widest layer, float32) that
# XLA:CPU should hold for all the members it advances at once. It runs a device's members as one
# batch of ops, each streaming the whole batch: 32 CartPole members' 512 x 64 activations are
# 4 MiB, twice a core's L2 here, and 64 members ran slower per env step than 16. Advancing them
# in chunks that fit (a scan over chunks, vmap within) keeps each op's operands in cache.
CPU_CHUNK_BYTES = 1 << 18


def member_bytes(agent: ActorCriticAgent) -> int:
    """Bytes of one member's widest activations: a gradient step's samples
    (``agent.learn_batch``) x the widest layer (observation or hidden), float32."""
    return agent.learn_batch * max((agent.env_obj.obs_dim, *tuple(agent.hidden))) * 4


def member_chunk(agent: ActorCriticAgent, members: int) -> int:
    """How many of a device's ``members`` XLA:CPU advances at once: the largest divisor of
    ``members`` whose activations (:func:`member_bytes` each) fit :data:`CPU_CHUNK_BYTES`, or
    all of them if that divisor is under half the fitting count (e.g. a prime number of
    members). A divisor, so every member runs in a batch of one size (what a member's numbers
    depend on: see the module docstring)."""
    fits = max(1, CPU_CHUNK_BYTES // member_bytes(agent))
    if members <= fits:
        return members
    k = max(d for d in range(1, fits + 1) if members % d == 0)
    return k if 2 * k >= fits else members


def population_mesh(devices: list | None = None) -> Mesh:
    """A 1-d mesh over ``devices`` (default: every device of every process, process-major:
    after ``hj.distributed.initialize`` the population spans all hosts) with axis ``"pop"``."""
    devices = jax.devices() if devices is None else list(devices)
    return Mesh(np.asarray(devices), (AXIS,))


def padded_size(m: int, mesh: Mesh) -> int:
    n = mesh.devices.size
    return -(-m // n) * n


def pad(tree: Any, size: int) -> Any:
    """Pads the leading axis of every leaf to ``size`` by repeating the last entry."""

    def p(x):
        m = x.shape[0]
        if m == size:
            return x
        return jnp.concatenate([x, jnp.repeat(x[-1:], size - m, axis=0)], axis=0)

    return jax.tree.map(p, tree)


def unpad(tree: Any, m: int) -> Any:
    return jax.tree.map(lambda x: x[:m], tree)


class Runner:
    """Compiled population programs for one agent (one structural bucket) on one mesh.

    ``trace_count`` counts how often any of its programs was traced: a change of hyperparameter
    values, keys or states of the same shapes must not trace again.
    """

    def __init__(self, agent: ActorCriticAgent, mesh: Mesh | None = None):
        self.agent = agent
        self.mesh = population_mesh() if mesh is None else mesh
        self.trace_count = 0
        self._sharding = NamedSharding(self.mesh, P(AXIS))
        self._init = self._sharded(self._init_members)
        self._evaluate = self._sharded(self._evaluate_members, static=("num_episodes",))
        self._advance = self._sharded(self._advance_members, static=("num_updates",))
        self._refill = self._sharded(self._refill_members)
        # A gather across the population axis moves members between devices: left to XLA's
        # SPMD partitioner rather than shard_map.
        self._copy = jax.jit(self._copy_members, out_shardings=self._sharding)
        self._take = jax.jit(self._take_members)
        self._put_back = jax.jit(self._put_members, out_shardings=self._sharding)

    # -- per shard bodies (vmapped over the local members) -----------------------------------
    def _init_members(self, keys, hp):
        self.trace_count += 1
        return self._init_body(keys, hp)

    def _init_body(self, keys, hp):
        # lax.map, not vmap: on XLA:CPU, two independent *batched* QR custom calls (the actor's
        # and the critic's orthogonal initialisers) run concurrently on the shared thread pool
        # and deadlock (jaxlib 0.10, 2 cores). Unbatched calls do not; init is cheap anyway.
        return jax.lax.map(lambda a: self.agent.init(*a), (keys, hp))

    def _advance_members(self, state, hp, *, num_updates: int):
        self.trace_count += 1

        def member(s, h):
            return jax.lax.scan(lambda c, _: self.agent.update(c, h), s, None, length=num_updates)

        def together(s, h):
            return jax.vmap(member)(s, h)

        n = jax.tree.leaves(hp)[0].shape[0]
        k = member_chunk(self.agent, n)
        if k >= n:
            return together(state, hp)

        def chunked(s, h):  # a scan over n // k chunks, k members vmapped in each, in order
            return jax.lax.map(lambda a: member(*a), (s, h), batch_size=k)

        # other backends want the widest batch they can get
        return jax.lax.platform_dependent(state, hp, cpu=chunked, default=together)

    def _refill_members(self, state, mask, keys, hp):
        self.trace_count += 1
        fresh = self._init_body(keys, hp)
        pick = lambda new, old: jnp.where(mask.reshape(mask.shape + (1,) * (old.ndim - 1)), new, old)  # noqa: E731
        return jax.tree.map(pick, fresh, state)

    def _copy_members(self, state, source):
        self.trace_count += 1
        return jax.tree.map(lambda x: x[source], state)

    def _take_members(self, state, index):
        self.trace_count += 1
        return jax.tree.map(lambda x: x[index], state)

    def _put_members(self, state, index, saved):
        self.trace_count += 1
        return jax.tree.map(lambda x, y: x.at[index].set(y), state, saved)

    def _evaluate_members(self, keys, state, *, num_episodes: int):
        self.trace_count += 1
        return jax.vmap(lambda k, s: self.agent.evaluate(k, s, num_episodes))(keys, state)

    def _sharded(self, body: Callable, static: tuple[str, ...] = ()) -> Callable:
        mesh = self.mesh

        def run(*args, **kwargs):
            fn = functools.partial(body, **kwargs)
            return jax.shard_map(fn, mesh=mesh, in_specs=P(AXIS), out_specs=P(AXIS), check_vma=False)(*args)

        return jax.jit(run, static_argnames=static)

    # -- public API (host side: pads to the device count, unpads the results) ----------------
    def _put(self, tree, size):
        if jax.process_count() > 1:  # host values every process holds -> its own shards
            from hyperjax.distributed import put_global

            return put_global(pad(tree, size), self._sharding)
        return jax.device_put(pad(tree, size), self._sharding)

    def padded(self, m: int) -> int:
        """The population size ``m`` members occupy on this mesh (a multiple of the devices)."""
        return padded_size(m, self.mesh)

    def place(self, tree: Any) -> Any:
        """A pytree of ``(M, ...)`` leaves padded to :meth:`padded` ``(M)`` and sharded over the
        mesh, ready for :meth:`advance` or :meth:`evaluate`."""
        return self._put(tree, self.padded(jax.tree.leaves(tree)[0].shape[0]))

    def init(self, keys: jax.Array, hp) -> MemberState:
        """Fresh members: ``keys (M,)``, ``hp`` leaves ``(M,)`` -> state leaves ``(M_pad, ...)``.

        The returned state keeps the padding (so it can go straight back into ``advance``);
        ``num_members`` of it are real.
        """
        m = keys.shape[0]
        size = padded_size(m, self.mesh)
        return self._init(self._put(keys, size), self._put(hp, size))

    def advance(self, state: MemberState, hp, num_updates: int) -> tuple[MemberState, UpdateMetrics]:
        """Runs ``num_updates`` updates of every member; metrics leaves are ``(M_pad, num_updates)``."""
        size = jax.tree.leaves(state)[0].shape[0]
        return self._advance(state, self._put(hp, size), num_updates=int(num_updates))

    def refill(self, state: MemberState, mask: jax.Array, keys: jax.Array, hp) -> MemberState:
        """Re-initialises the slots where ``mask`` is True (fresh params, optimizer and env state
        from ``keys`` and ``hp``, all ``(M_pad,)``); the other slots are returned unchanged."""
        size = jax.tree.leaves(state)[0].shape[0]
        return self._refill(state, self._put(np.asarray(mask, bool), size), self._put(keys, size), self._put(hp, size))

    def copy_from(self, state: MemberState, source: jax.Array) -> MemberState:
        """Slot ``i`` takes the whole state of slot ``source[i]`` (PBT's exploit step)."""
        return self._copy(state, np.asarray(source, np.int32))

    def take(self, state: MemberState, index: np.ndarray) -> MemberState:
        """The members at ``index`` (k,) as a state with leading axis k, left on the device
        (a paused trial's members, or the best trial's)."""
        return self._take(state, np.asarray(index, np.int32))

    def put(self, state: MemberState, index: np.ndarray, saved: MemberState) -> MemberState:
        """Members ``index`` (k,) take the states ``saved`` (leading axis k); the rest unchanged."""
        return self._put_back(state, np.asarray(index, np.int32), saved)

    def evaluate(self, keys: jax.Array, state: MemberState, num_episodes: int) -> jax.Array:
        """Greedy returns ``(M_pad, num_episodes)``; ``keys`` (M,) are padded like the state."""
        size = jax.tree.leaves(state)[0].shape[0]
        return self._evaluate(self._put(keys, size), state, num_episodes=int(num_episodes))

    def precompile(self, keys: jax.Array, state: MemberState, num_episodes: int, k: int, put: bool = True) -> float:
        """Compiles :meth:`evaluate` (``keys (M,)``), :meth:`take` and, if ``put``, :meth:`put`
        (``k`` members at a time) for ``state``'s shapes ahead of time, without running them: a
        study calls this while it sets up, so the first completion or resume does not stop the
        study for a compile. Later calls with these shapes reuse the executables. Returns the
        seconds spent."""
        t0 = time.perf_counter()
        size = jax.tree.leaves(state)[0].shape[0]
        index = np.zeros(int(k), np.int32)
        self._evaluate.lower(self._put(keys, size), state, num_episodes=int(num_episodes)).compile()
        take = self._take.lower(state, index).compile()
        if put:
            # put is called with what take returned: the same shapes, shardings *and* weak types
            saved = _abstract(jax.eval_shape(self._take, state, index), take.output_shardings)
            self._put_back.lower(state, index, saved).compile()
        return time.perf_counter() - t0


    def precompile_advance(self, state: MemberState, hp, index: np.ndarray, num_updates: int) -> float:
        """Compiles :meth:`take` of ``index`` (k,) members of ``state``, :meth:`advance` of ``k``
        members and :meth:`put` of them back, without running them (a study compacting its idle
        slots away runs these). Returns the seconds spent."""
        t0 = time.perf_counter()
        index = np.asarray(index, np.int32)
        k = len(index)
        take = self._take.lower(state, index).compile()
        sub = _abstract(jax.eval_shape(self._take, state, index), take.output_shardings)
        hp_k = self._put(jax.tree.map(lambda x: np.asarray(x)[np.zeros(k, np.int64)], hp), k)
        adv = self._advance.lower(sub, hp_k, num_updates=int(num_updates)).compile()
        out = _abstract(jax.eval_shape(functools.partial(self._advance, num_updates=int(num_updates)), sub, hp_k)[0],
                        adv.output_shardings[0])
        self._put_back.lower(state, index, out).compile()
        return time.perf_counter() - t0


def _abstract(shapes: Any, shardings: Any) -> Any:
    """``ShapeDtypeStruct``s of ``shapes`` (from ``eval_shape``) with a compiled program's
    output ``shardings`` and the weak types: what the next program is called with, so that
    lowering it ahead of time compiles the executable the real call will use."""
    return jax.tree.map(lambda a, sh: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sh, weak_type=a.weak_type),
                        shapes, shardings)


def get_runner(agent: ActorCriticAgent, devices: tuple | None = None) -> Runner:
    """The cached :class:`Runner` for ``agent`` on ``devices`` (default: every device of every
    process); compiled programs are reused across calls, however the arguments are spelled
    (``None``, a list or a tuple of the same devices are one Runner)."""
    devices = None if devices is None else tuple(devices)
    if devices == tuple(jax.devices()):
        devices = None  # the default, spelled out
    return _runner(agent, devices)


@functools.lru_cache(maxsize=64)
def _runner(agent: ActorCriticAgent, devices: tuple | None) -> Runner:
    return Runner(agent, population_mesh(devices))
