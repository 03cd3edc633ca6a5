"""One study over several processes (hosts) with JAX's multi-controller runtime.

Every process runs the same program. ``initialize`` joins them (``jax.distributed``: a
coordinator at ``HOST:PORT``, gloo collectives on CPU, NCCL on GPU, ICI on TPU); after it,
``jax.devices()`` lists every device of every process (process-major), and a study's
populations are sharded over all of them. Process 0 decides (scheduler, proposer, the clock)
and :func:`broadcast` hands its decisions to every process, which all apply them; per-member
results reach every process through :func:`fetch`. With one process every function here is the
identity, so single-process behaviour does not change.

A peer that dies is noticed at the next collective (a gloo error on CPU, raised at once) or by
the coordination service's heartbeat (``heartbeat_timeout_seconds``: JAX then aborts the
process); :func:`initialize` sets both timeouts to bounded values.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from hyperjax import validate


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, *, local_device_count: int | None = None,
               heartbeat_timeout_seconds: int = 30, shutdown_timeout_seconds: int = 30,
               initialization_timeout: int = 300) -> None:
    """Joins this process to a multi-process study (call it before any JAX operation).

    Args:
      coordinator_address: ``"HOST:PORT"`` of process 0 (every process gives the same); ``None``
        lets JAX detect the cluster (TPU pods, SLURM, Open MPI) from the environment.
      num_processes, process_id: this job's size and this process's rank (``None``: detected).
      local_device_count: CPU devices of this process (CPU only; default: what importing
        hyperjax configured, ``HYPERJAX_HOST_DEVICES`` or one per core).
      heartbeat_timeout_seconds: a peer silent this long is dead: every process stops.
      shutdown_timeout_seconds: how long a process that ends waits for the others at exit.
      initialization_timeout: how long to wait for every process to join.

    Raises:
      ValueError: a bad argument (naming it), or JAX was already initialised.
    """
    if coordinator_address is not None:
        host, sep, port = str(coordinator_address).rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(f"initialize: coordinator_address={coordinator_address!r} must look like HOST:PORT")
    if num_processes is not None:
        num_processes = validate.integer("initialize", "num_processes", num_processes, 1)
    if process_id is not None:
        hi = None if num_processes is None else num_processes - 1
        process_id = validate.integer("initialize", "process_id", process_id, 0, hi)
    for name, v in (("heartbeat_timeout_seconds", heartbeat_timeout_seconds),
                    ("shutdown_timeout_seconds", shutdown_timeout_seconds),
                    ("initialization_timeout", initialization_timeout)):
        validate.integer("initialize", name, v, 1)
    from hyperjax._devices import backends_initialized

    if backends_initialized():
        raise ValueError("initialize: JAX is already initialised in this process; call "
                         "hj.distributed.initialize before any JAX operation")
    if local_device_count is not None:
        jax.config.update("jax_num_cpu_devices",
                          validate.integer("initialize", "local_device_count", local_device_count, 1))
    jax.distributed.initialize(coordinator_address, num_processes, process_id,
                               initialization_timeout=int(initialization_timeout),
                               heartbeat_timeout_seconds=int(heartbeat_timeout_seconds),
                               shutdown_timeout_seconds=int(shutdown_timeout_seconds))
    # Starting the backend is itself a rendezvous of every process: do it here, together,
    # rather than wherever each process first touches a device.
    jax.devices()


def process_count() -> int:
    return jax.process_count()


def is_primary() -> bool:
    """Whether this process decides, writes the store, logs and prints (process 0)."""
    return jax.process_index() == 0


def multi_process() -> bool:
    return jax.process_count() > 1


def broadcast(obj: Any) -> Any:
    """Process 0's ``obj`` (plain data: what ``hyperjax.store.serialize`` holds) on every
    process; the others' argument is ignored. Two small collectives (length, then the bytes
    padded to a power of two so that few sizes ever compile)."""
    if not multi_process():
        return obj
    from jax.experimental import multihost_utils

    from hyperjax.store import serialize

    blob = serialize.dumps(obj) if is_primary() else b""
    size = int(multihost_utils.broadcast_one_to_all(np.asarray(len(blob), np.int64)))
    buf = np.zeros(max(64, 1 << max(size - 1, 0).bit_length()), np.uint8)
    buf[:len(blob)] = np.frombuffer(blob, np.uint8)
    out = np.asarray(multihost_utils.broadcast_one_to_all(buf))
    return serialize.loads(bytes(out[:size]))


def broadcast_flag(flag: bool) -> bool:
    """Process 0's ``flag`` on every process (one collective; the identity with one process)."""
    if not multi_process():
        return bool(flag)
    from jax.experimental import multihost_utils

    return bool(multihost_utils.broadcast_one_to_all(np.asarray(bool(flag))))


def all_true(flag: bool) -> bool:
    """Whether ``flag`` holds on every process (one collective; the identity with one process)."""
    if not multi_process():
        return bool(flag)
    from jax.experimental import multihost_utils

    return bool(np.all(multihost_utils.process_allgather(np.asarray([bool(flag)]))))


_REPLICATE: dict = {}


def fetch(tree: Any) -> Any:
    """The whole of a pytree of (possibly process-spanning) arrays as numpy, on every process
    (PRNG key arrays as this process's local copy). One process: ``jax.device_get``; several:
    one compiled all-gather per pytree structure. Every process must call it (a collective)."""
    if not multi_process():
        return jax.device_get(tree)
    leaves = [x for x in jax.tree.leaves(tree) if isinstance(x, jax.Array)]
    if all(x.is_fully_addressable for x in leaves):
        return jax.device_get(tree)
    mesh = next(x.sharding.mesh for x in leaves if hasattr(x.sharding, "mesh"))
    key = (jax.tree.structure(tree), id(mesh))
    if key not in _REPLICATE:
        rep = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
        _REPLICATE[key] = jax.jit(lambda t: t, out_shardings=rep)
    gathered = _REPLICATE[key](tree)
    def local(a):
        if not isinstance(a, jax.Array):
            return a
        whole = a.addressable_data(0)  # replicated: this process's copy is the whole array
        return whole if jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key) else np.array(whole)

    return jax.tree.map(local, gathered)


def put_global(tree: Any, sharding) -> Any:
    """Host values identical on every process -> global arrays over ``sharding`` (each process
    fills its own shards; no collective). PRNG key arrays keep their implementation."""

    def put(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable:  # already global
            return x if x.sharding == sharding else jax.device_put(x, sharding)
        if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            return jax.random.wrap_key_data(put(jax.random.key_data(x)), impl=jax.random.key_impl(x))
        h = np.asarray(x)
        return jax.make_array_from_callback(h.shape, sharding, lambda idx: h[idx])

    return jax.tree.map(put, tree)
