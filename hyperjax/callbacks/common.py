"""What the loggers (W&B, TensorBoard) share: the study's counters as scalars, a tick's new
curve points, and a worker thread that keeps their slow calls off the study's thread."""

from __future__ import annotations

import math
import queue
import threading
from typing import Any

# what every progress counter is called in the logs (``study/<name>``)
SCALARS = ("best_score", "trials", "running", "paused", "completed", "evicted", "failed", "steps_per_second",
           "slot_utilization", "budget_fraction", "seconds", "tick")


def study_scalars(progress: dict[str, Any]) -> dict[str, float]:
    """``{"study/<name>": value}`` of the progress counters (``Study.progress()``) that are
    finite (the best score is NaN until a trial completes: left out, not logged as NaN)."""
    out = {}
    for k in SCALARS:
        v = progress.get(k)
        if v is not None and math.isfinite(float(v)):
            out[f"study/{k}"] = float(v) if isinstance(v, float) else int(v)
    return out


def trial_points(trials: list, observations: list[tuple[int, int]], curve: str = "curve") -> list[tuple[int, int, float]]:
    """``(trial id, env steps per member, value)`` of the observations ``(trial id, curve
    index)`` a tick recorded, finite values only (a failed phase has none): the score, or with
    ``curve="entropy_curve"`` the policy's entropy in the phase."""
    out = []
    for tid, i in observations:
        t = trials[tid]
        values = getattr(t, curve)
        v = float(values[i]) if i < len(values) else math.nan
        if math.isfinite(v):
            out.append((int(tid), int(t.curve_steps[i]), v))
    return out



class Worker:
    """One daemon thread that handles messages in order, so that a logger's slow calls (a
    service start, an upload, an fsync) never run on the study's thread.

    ``handle(kind, payload)`` runs for every :meth:`put`; ``close(ok)`` once at the end (``ok``
    False after ``handle`` raised: later messages are dropped). What the thread raised is
    raised again on the study's thread by :meth:`check` and :meth:`finish` (the engine then
    disables the callback with a warning).
    """

    def __init__(self, name: str, handle, close):
        self.handle, self.close = handle, close
        self.error: BaseException | None = None
        self.queue: queue.Queue = queue.Queue()
        self.thread = threading.Thread(target=self._run, daemon=True, name=name)
        self.thread.start()

    def put(self, kind: str, payload: Any = None) -> None:
        self.check()
        self.queue.put((kind, payload))

    @staticmethod
    def running(worker: Worker | None) -> bool:
        """Whether ``worker`` can take messages; one that stopped raises what it hit here
        (so a callback disabled after a failure starts afresh if used for another study)."""
        if worker is None:
            return False
        if not worker.thread.is_alive():
            worker.check()
            return False
        return True

    def _run(self) -> None:
        ok = True
        try:
            while True:
                kind, payload = self.queue.get()
                if kind == "finish":
                    break
                self.handle(kind, payload)
        except BaseException as e:
            self.error, ok = e, False
        try:
            self.close(ok)
        except BaseException as e:
            self.error = self.error or e

    def finish(self) -> None:
        """Waits until every message is handled and ``close`` ran; raises what the thread hit."""
        if self.thread.is_alive():
            self.queue.put(("finish", None))
            self.thread.join()
        self.check()

    def check(self) -> None:
        if self.error is not None:
            e, self.error = self.error, None
            raise RuntimeError(f"{self.thread.name} failed: {type(e).__name__}: {e}") from e
