"""A structural bucket's slots on the device: :class:`Pool` holds ``slots`` trials x ``seeds``
members of one compiled population, stages slot changes (new trials, resumed trials, PBT's
copies) and applies them together, and advances the occupied slots by one phase, in a smaller
compiled population when every occupied slot fits in one (:func:`compact_sizes`). The study
(``hyperjax.study.engine``) decides which slot holds which trial; a pool only carries it out.
"""

from __future__ import annotations

import concurrent.futures
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from hyperjax.population import Runner
from hyperjax.train import member_keys

# Smaller populations a pool may compact its occupied slots into: half and a quarter of its
# size. Each costs one compile of its programs (about 5 s on two CPU cores, on a worker thread),
# and a study's tail drains geometrically, so a third halving would save little more.
COMPACT_LEVELS = 2


class Pool:
    """The slots of one structural bucket: ``slots`` trials x ``seeds`` members each.

    Member ``slot * seeds + s`` is seed ``s`` of the trial in ``slot``. Seed ``s`` starts from
    the same key in every trial (common random numbers: trials are compared on the same
    initialisations and episodes), so which slot a trial gets does not choose its random
    streams. (A trial's float results are bit-identical whichever slot it runs in and whatever
    the other slots hold, at one population size. Across sizes they agree to float rounding for
    the first few updates only: measured on XLA:CPU, 16 and 32 members on 2 devices differ after
    one phase; so a compacted advance, which runs a smaller population, changes results by
    rounding, deterministically. See ``hyperjax.population``.)
    """

    def __init__(self, index: int, bucket: dict, agent, runner: Runner, slots: int, offset: int, seeds: int,
                 phase_steps: int, key: jax.Array, base_hp: dict[str, float]):
        self.index, self.bucket, self.agent, self.runner = index, bucket, agent, runner
        self.slots, self.offset, self.seeds = slots, offset, seeds
        self.updates = phase_steps // agent.steps_per_update
        self.steps = self.updates * agent.steps_per_update  # env steps per member per phase
        self.members = slots * seeds
        self.trial = np.full(slots, -1, np.int64)
        self.hp = {n: np.full(slots, v, np.float32) for n, v in base_hp.items()}
        self.last_member_score = np.full(self.members, np.nan)
        self.train_keys, self.eval_keys = member_keys(key, slots, seeds)  # (M,) each, slot-major
        self.state = runner.init(self.train_keys, self.hp_members())
        self._hp_dev = None
        self._refill_mask = np.zeros(self.members, bool)
        self._resume: list[tuple[np.ndarray, Any]] = []
        self.just_failed: set[int] = set()  # slots freed by a failure this tick
        self.size = runner.padded(self.members)  # members the compiled programs hold
        self.compact_sizes: tuple[int, ...] = ()  # smaller sizes advance may run (compact_sizes())
        self._compiled: concurrent.futures.Future | None = None
        self.advanced_index: np.ndarray | None = None  # members the last advance ran, if not all

    # -- compaction: idle slots cost nothing ------------------------------------------------
    def compact_sizes_for(self, levels: int) -> tuple[int, ...]:
        """:func:`compact_sizes` of this pool on its runner's devices."""
        return compact_sizes(self.size, self.runner.mesh.devices.size, levels)

    def compile_compact(self) -> concurrent.futures.Future:
        """Compiles ``take``, ``advance`` and ``put`` at every :attr:`compact_sizes` on a worker
        thread (the study's thread goes on training); :meth:`advance` waits for it before it
        first runs a smaller population, so which size ran never depends on timing."""
        if self._compiled is None:
            sizes, state, runner, updates = self.compact_sizes, self.state, self.runner, self.updates
            hp = self.hp_members()

            def work():
                for size in sizes:
                    runner.precompile_advance(state, hp, np.arange(size), updates)

            self._compiled = _compile_pool().submit(work)
        return self._compiled

    def _compact_index(self) -> np.ndarray | None:
        """The members to advance when a smaller compiled population holds every occupied
        slot: the occupied slots' members, topped up with idle ones to the size; else None."""
        busy = np.concatenate([self.members_of(int(s)) for s in self.occupied()] or [np.zeros(0, np.int64)])
        fits = [s for s in self.compact_sizes if s >= len(busy)]
        if not fits:
            return None
        size = min(fits)
        idle = np.setdiff1d(np.arange(self.size), busy)[: size - len(busy)]
        return np.sort(np.concatenate([busy, idle]))

    def expand(self, rows: np.ndarray) -> np.ndarray:
        """Per-member host values ``(k, ...)`` of the last advance as ``(size, ...)``: rows of
        members it did not run are zero (they hold no trial)."""
        if self.advanced_index is None:
            return rows
        out = np.zeros((self.size, *rows.shape[1:]), rows.dtype)
        out[self.advanced_index] = rows
        return out

    def members_of(self, slot: int) -> np.ndarray:
        return slot * self.seeds + np.arange(self.seeds)

    def hp_members(self, hp: dict[str, np.ndarray] | None = None):
        """Per-member hyperparameters ``(M,)`` from per-slot values ``{name: (slots,)}`` (default:
        the pool's own): a slot's value repeated for each of its seeds."""
        vals = {n: np.repeat(v, self.seeds) for n, v in (self.hp if hp is None else hp).items()}
        return self.agent.HParams(**{n: jnp.asarray(v) for n, v in vals.items()})

    def set_hp(self, slot: int, values: dict[str, float]) -> None:
        for n, v in values.items():
            self.hp[n][slot] = v
        self._hp_dev = None

    def take(self, slot: int) -> Any:
        """The members of ``slot`` (leading axis = seeds), left on the device."""
        return self.runner.take(self.state, self.members_of(slot))

    # -- staged slot changes, applied together by flush() -----------------------------------
    def stage_new(self, slot: int) -> None:
        self._refill_mask[self.members_of(slot)] = True
        self.last_member_score[self.members_of(slot)] = np.nan

    def stage_resume(self, slot: int, saved: Any, last_scores: np.ndarray) -> None:
        self._resume.append((self.members_of(slot), saved))
        self.last_member_score[self.members_of(slot)] = last_scores

    def flush(self) -> bool:
        """Applies staged refills and resumes; True if anything ran (caller may block on it)."""
        ran = False
        if self._refill_mask.any():
            mask = np.zeros(self.runner.padded(self.members), bool)
            mask[: self.members] = self._refill_mask
            self.state = self.runner.refill(self.state, mask, self.train_keys, self.hp_members())
            self._refill_mask[:] = False
            ran = True
        for index, saved in self._resume:
            self.state = self.runner.put(self.state, index, saved)
            ran = True
        self._resume.clear()
        return ran

    def copy_from(self, source_slot: dict[int, int]) -> None:
        """Slot ``s`` takes the members of slot ``source_slot[s]`` (one gather)."""
        member_source = np.arange(self.runner.padded(self.members))
        for s, src in source_slot.items():
            member_source[self.members_of(s)] = self.members_of(src)
        self.state = self.runner.copy_from(self.state, member_source)
        self.last_member_score = self.last_member_score[member_source[: self.members]]

    def advance(self):
        """One phase of every occupied slot; metrics leaves ``(k, updates)`` for the ``k``
        members it ran (:meth:`expand` puts them back in member order). When a compiled size
        smaller than the pool holds every occupied slot, only those members run (gathered,
        advanced, scattered back): idle slots then cost nothing."""
        index = self._compact_index() if self.compact_sizes else None
        self.advanced_index = index
        if index is None:
            if self._hp_dev is None:
                self._hp_dev = self.runner.place(self.hp_members())
            self.state, metrics = self.runner.advance(self.state, self._hp_dev, self.updates)
            return metrics
        self.compile_compact().result()
        hp = jax.tree.map(lambda x: np.asarray(x)[np.minimum(index, self.members - 1)], self.hp_members())
        sub, metrics = self.runner.advance(self.runner.take(self.state, index), hp, self.updates)
        self.state = self.runner.put(self.state, index, sub)
        return metrics

    def occupied(self) -> np.ndarray:
        return np.flatnonzero(self.trial >= 0)

    def state_dict(self) -> dict:
        """Host-side arrays (the members themselves are device state, saved apart)."""
        return {"trial": self.trial.copy(), "hp": {n: v.copy() for n, v in self.hp.items()},
                "last_member_score": self.last_member_score.copy()}

    def load_state_dict(self, d: dict) -> None:
        self.trial = np.asarray(d["trial"], np.int64).copy()
        self.hp = {n: np.asarray(v, np.float32).copy() for n, v in d["hp"].items()}
        self.last_member_score = np.asarray(d["last_member_score"], np.float64).copy()
        self._hp_dev = None


def compact_sizes(size: int, devices: int, levels: int) -> tuple[int, ...]:
    """The smaller populations a pool of ``size`` members on ``devices`` devices may run:
    up to ``levels`` halvings, each a whole number of members per device and at least two (with
    one member per device XLA:CPU compiles another kind of program, whose arithmetic differs
    more)."""
    out, s = [], size
    for _ in range(levels):
        if s % 2:
            break
        s //= 2
        if s < 2 * devices or s % devices:
            break
        out.append(s)
    return tuple(out)


_COMPILER: list = []


def _compile_pool() -> concurrent.futures.ThreadPoolExecutor:
    """One worker thread for compiling pools' smaller programs beside the study (created on
    first use)."""
    if not _COMPILER:
        _COMPILER.append(concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="hyperjax-compile"))
    return _COMPILER[0]
