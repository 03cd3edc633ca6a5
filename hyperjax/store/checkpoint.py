"""Device state on disk: orbax checkpoints of pytrees, one directory per tick.

``Checkpoints(root)`` keeps ``root/tick_00000042`` directories. Orbax writes each into a
temporary directory and renames it when complete, so a directory with the final name is a
complete checkpoint; a save cut short by a kill leaves only a temporary one, which is ignored
and removed. :meth:`Checkpoints.save` returns when the checkpoint is written; the store calls
it on a worker thread so that training goes on meanwhile.

With several processes (``hyperjax.distributed``) every process calls :meth:`save` and
:meth:`restore` for the same ticks in the same order, each writing and reading the shards its
own devices hold; process 0 creates, finalises and deletes directories, so ``root`` must be on a
filesystem every process sees. Their barriers go through JAX's coordination service (orbax's
``active_processes``), not device collectives: a save runs on a worker thread while the study's
thread runs collectives, and two streams of collectives would deadlock.
"""

from __future__ import annotations

import os
import re
import shutil
from typing import Any

import jax

_NAME = re.compile(r"^tick_(\d{8})$")


def _abstract(x):
    import orbax.checkpoint as ocp

    return ocp.utils.to_shape_dtype_struct(x)


class Checkpoints:
    """Tick-numbered orbax checkpoints under ``root``."""

    def __init__(self, root: str):
        import orbax.checkpoint as ocp

        self.root = os.path.abspath(root)
        os.makedirs(self.root, exist_ok=True)
        self.primary = jax.process_index() == 0
        options = {}
        if jax.process_count() > 1:
            # barrier names end with the directory's name (tick_...): the prefix tells the
            # checkpoints/ and params/ saves of one tick apart
            options["multiprocessing_options"] = ocp.options.MultiprocessingOptions(
                primary_host=0, active_processes=set(range(jax.process_count())),
                barrier_sync_key_prefix=os.path.basename(self.root))
        self._ckpt = ocp.StandardCheckpointer(**options)

    def path(self, tick: int) -> str:
        return os.path.join(self.root, f"tick_{int(tick):08d}")

    def save(self, tick: int, tree: Any) -> None:
        """Writes ``tree`` as tick ``tick`` (returns when it is complete)."""
        # force: a directory left by a run that did not commit this tick is rewritten (orbax
        # deletes it on process 0 and synchronises)
        self._ckpt.save(self.path(tick), tree, force=True)
        self._ckpt.wait_until_finished()

    def wait(self) -> None:
        """Blocks until every save started has been written."""
        self._ckpt.wait_until_finished()

    def complete(self) -> list[int]:
        """Ticks with a complete checkpoint, ascending."""
        if not os.path.isdir(self.root):
            return []
        return sorted(int(m.group(1)) for m in map(_NAME.match, os.listdir(self.root)) if m)

    def restore(self, tick: int, like: Any) -> Any:
        """Tick ``tick``'s tree, shaped, typed and sharded like ``like`` (arrays or
        ``jax.ShapeDtypeStruct``s); ``None`` leaves of ``like`` stay ``None``."""
        target = jax.tree.map(_abstract, like)
        return self._ckpt.restore(self.path(tick), target)

    def remove(self, ticks) -> None:
        """Deletes the checkpoints of ``ticks`` (process 0 does; the others have nothing to do)."""
        if not self.primary:
            return
        for t in ticks:
            shutil.rmtree(self.path(t), ignore_errors=True)

    def remove_partial(self) -> None:
        """Deletes what interrupted saves left behind (anything but complete checkpoints)."""
        if not self.primary or not os.path.isdir(self.root):
            return
        for name in os.listdir(self.root):
            if not _NAME.match(name):
                shutil.rmtree(os.path.join(self.root, name), ignore_errors=True)

    def close(self) -> None:
        self.wait()
        self._ckpt.close()
