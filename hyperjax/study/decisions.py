"""The vocabulary between policies and the engine: what arrived, and what to do about it.

A policy (``hyperjax.study.policies``) reads the study and returns :class:`Decision` objects; only
the engine applies them to slots, trials and device state, and the store records them. So a
policy can be tested with fabricated :class:`Arrival` objects and no agent, and a decision made
once (on process 0 of a multi-host study, say) can be applied anywhere.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any

import numpy as np


class Action(str, enum.Enum):
    """What happens to a trial. ``str`` values are what the store writes."""

    START = "start"  # a new trial takes a free slot (fresh members)
    QUEUE = "queue"  # a new trial is created and waits for a slot (synchronous brackets)
    RESUME = "resume"  # a paused or queued trial takes a free slot (paused members put back)
    CONTINUE = "continue"  # an arrived trial runs its next phase in the same slot
    PAUSE = "pause"  # the trial leaves its slot; its members are kept for a RESUME
    EVICT = "evict"  # the trial ends early (in a slot, or paused)
    COMPLETE = "complete"  # the trial ran its last phase: evaluate it and free the slot
    FAIL = "fail"  # non-finite values: the trial ends, its slot is freed
    EXPLOIT = "exploit"  # PBT: a child of ``source`` copies its members into ``slot``, new config


@dataclasses.dataclass(frozen=True)
class Arrival:
    """A trial that reached a phase boundary this tick.

    ``score`` is its phase score (mean over seeds; ``-inf`` when it failed, the lowest float32
    when none of its episodes has ended yet), ``phases`` the boundaries it has reached now.
    """

    trial: int
    pool: int
    slot: int
    phases: int
    score: float
    failed: bool


@dataclasses.dataclass(frozen=True)
class Decision:
    """One decision about one trial.

    Attributes:
      action: what to do.
      trial: the trial it concerns; for START, QUEUE and EXPLOIT the id the new trial gets
        (ids are handed out in order: the next is ``len(study.trials)``).
      pool, slot: where (START, RESUME, EXPLOIT; the slot an arrival holds otherwise).
      u, config: the new trial's cube point ``(d,)`` and search-space values (START, QUEUE,
        EXPLOIT).
      source: EXPLOIT: the trial whose members are copied (the child's ``parent``).
      reason: why, as recorded in the trial's ``end_reason`` (EVICT, FAIL).
    """

    action: Action
    trial: int
    pool: int = -1
    slot: int = -1
    u: np.ndarray | None = None
    config: dict[str, Any] | None = None
    source: int = -1
    reason: str = ""

    def record(self) -> dict[str, Any]:
        """A plain-data row for the store."""
        return {"action": self.action.value, "trial": self.trial, "pool": self.pool, "slot": self.slot,
                "source": self.source, "reason": self.reason}
