"""The study loop: every tick advances all occupied slots by one phase; at the boundary the
scheduler decides, and freed slots are refilled before the next tick.

Per tick, per structural bucket (a :class:`Pool`), the device runs one compiled ``advance``;
the host reads back one small array of per-update returns (the only device -> host transfer of
an ordinary tick), the scheduler decides (a pure JAX rule, run on the host CPU), and freed slots
are re-initialised in place by one compiled ``refill`` (or ``put``, to resume a paused trial).
Shapes never change, so nothing is compiled after a bucket's first tick.
"""

from __future__ import annotations

import collections
import math
import threading
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from hyperjax.population import Runner
from hyperjax.study.buckets import bucket_of
from hyperjax.study.records import StudyResult, Trial, TrialLog
from hyperjax.train import member_keys

# The score of a member none of whose episodes has ended yet: ranks below every real return
# but, unlike -inf, is not read as a failure.
NO_EPISODE = float(np.finfo(np.float32).min)

# Compile time is measured (JAX's monitoring events) and reported apart from the section it fell
# in, so the tuner's own cost is not confused with one-off compiles.
_COMPILE_EVENTS = (
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/jaxpr_to_mlir_module_duration",
    "/jax/core/compile/backend_compile_duration",
)
_ACTIVE: list = []  # the study running now, if any


def _on_event(name: str, seconds: float, **_) -> None:
    # Only compiles on the study's own thread: the surrogate compiles on a worker thread while
    # the study trains, and counting that as the study's compile time would take it out of the
    # training time it overlapped.
    if _ACTIVE and name in _COMPILE_EVENTS and _ACTIVE[-1].thread == threading.get_ident():
        st = _ACTIVE[-1]
        st.compile_by[st.section] = st.compile_by.get(st.section, 0.0) + seconds


jax.monitoring.register_event_duration_secs_listener(_on_event)


class Pool:
    """The slots of one structural bucket: ``slots`` trials x ``seeds`` members each.

    Member ``slot * seeds + s`` is seed ``s`` of the trial in ``slot``. Seed ``s`` starts from
    the same key in every trial (common random numbers: trials are compared on the same
    initialisations and episodes), so a trial's numbers do not depend on which slot it got.
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

    def members_of(self, slot: int) -> np.ndarray:
        return slot * self.seeds + np.arange(self.seeds)

    def hp_members(self):
        vals = {n: np.repeat(v, self.seeds) for n, v in self.hp.items()}
        return self.agent.HParams(**{n: jnp.asarray(v) for n, v in vals.items()})

    def set_hp(self, slot: int, values: dict[str, float]) -> None:
        for n, v in values.items():
            self.hp[n][slot] = v
        self._hp_dev = None

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
            size = jax.tree.leaves(self.state)[0].shape[0]
            mask = np.zeros(size, bool)
            mask[: self.members] = self._refill_mask
            self.state = self.runner.refill(self.state, mask, self.train_keys, self.hp_members())
            self._refill_mask[:] = False
            ran = True
        for index, saved in self._resume:
            self.state = self.runner.put(self.state, index, saved)
            ran = True
        self._resume.clear()
        return ran

    def advance(self):
        if self._hp_dev is None:
            size = jax.tree.leaves(self.state)[0].shape[0]
            self._hp_dev = self.runner._put(self.hp_members(), size)
        self.state, metrics = self.runner.advance(self.state, self._hp_dev, self.updates)
        return metrics

    def occupied(self) -> np.ndarray:
        return np.flatnonzero(self.trial >= 0)


def member_scores(return_sum: np.ndarray, return_count: np.ndarray, previous: np.ndarray) -> np.ndarray:
    """Per-member phase score ``(M,)`` from per-update sums ``(M, U)``: the mean return of the
    episodes that ended in the second half of the phase (the whole phase if none did there; the
    previous score if none did at all; NaN if there never was one)."""
    u = return_sum.shape[1]
    half = u // 2
    rs, rc = return_sum[:, half:].sum(1), return_count[:, half:].sum(1)
    fs, fc = return_sum.sum(1), return_count.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(rc > 0, rs / np.maximum(rc, 1), np.where(fc > 0, fs / np.maximum(fc, 1), previous))
    return out


class Study:
    """Host-side state of one running study; a policy (see ``policies``) makes the decisions."""

    def __init__(self, *, agent, space, structural, buckets, pools, proposer, num_phases, seeds, budget,
                 max_seconds, eval_episodes, base_hp, rng: np.random.Generator, key: jax.Array,
                 progress_fn: Callable | None, log_path, scheduler_name: str, t0: float | None = None):
        self.agent, self.space, self.structural, self.buckets = agent, space, structural, buckets
        self.pools: list[Pool] = pools
        self.proposer = proposer
        self.num_phases, self.seeds, self.budget = num_phases, seeds, budget
        self.max_seconds, self.eval_episodes = max_seconds, eval_episodes
        self.base_hp = base_hp
        self.rng, self.key = rng, key
        self.progress_fn = progress_fn
        self.log = TrialLog(log_path) if log_path is not None else None
        self.scheduler_name = scheduler_name
        self.num_slots = sum(p.slots for p in pools)
        self.trials: list[Trial] = []
        self.queues: dict[int, collections.deque] = {i: collections.deque() for i in range(len(pools))}
        self.exhausted = False
        self.used = 0  # env steps consumed, all members
        self.tick = 0
        self.tick_seconds: list[float] = []
        self.timing = {"train": 0.0, "evaluate": 0.0, "tuner": 0.0}
        self.compile_by: dict[str, float] = {}
        self.section = "tuner"
        self.busy_ticks = [0, 0]  # occupied slot-ticks, slot-ticks (whole study)
        self.busy_ticks_waiting = [0, 0]  # the same, over ticks at which work was waiting
        self.best: Trial | None = None
        self.best_state = None
        self.found_best_at = math.nan
        self.changed: set[int] = set()
        self.observers: list = []  # extra ask/tell objects told every observation (e.g. a predictor)
        self.paused: dict[int, tuple[Any, np.ndarray]] = {}  # trial id -> (member states, last scores)
        self.t0 = time.perf_counter() if t0 is None else t0

    # -- time --------------------------------------------------------------------------------
    def now(self) -> float:
        return time.perf_counter() - self.t0

    def time_fits(self, ticks: int) -> bool:
        """Whether ``ticks`` more ticks are expected to end before ``max_seconds``."""
        if self.max_seconds is None:
            return True
        if len(self.tick_seconds) < 2:
            return self.now() < self.max_seconds
        # Median: robust to the first ticks of each bucket, which include compiling.
        est = float(np.median(self.tick_seconds))
        return self.now() + ticks * est <= self.max_seconds

    # -- configurations ------------------------------------------------------------------------
    def next_config(self, bucket: int):
        """The next queued ``(u, config)`` for ``bucket``, asking the proposer for more when its
        queue is empty (others' proposals wait in their queues); ``None`` when none can be had."""
        q = self.queues[bucket]
        rounds = 0
        while not q and not self.exhausted and rounds < 64:
            rounds += 1
            try:
                u = self.proposer.ask(max(8, self.num_slots))
            except ValueError:
                self.exhausted = True
                break
            for row, cfg in zip(u, self.space.configs(u)):
                self.queues[bucket_of(cfg, self.structural, self.buckets)].append((row, cfg))
        return q.popleft() if q else None

    def full_config(self, cfg: dict) -> dict:
        """The search-space values plus the fixed traced values it does not set."""
        out = {n: v for n, v in self.base_hp.items() if n not in cfg}
        out.update(cfg)
        return out

    # -- slot transitions ----------------------------------------------------------------------
    def new_trial(self, u, cfg, pool: Pool, origin="proposer", parent=None, phases=0) -> Trial:
        t = Trial(id=len(self.trials), config=self.full_config(cfg), u=np.asarray(u, np.float64), bucket=pool.index,
                  seeds=tuple(range(self.seeds)), origin=origin, parent=parent, phases=phases, start_phase=phases)
        self.trials.append(t)
        self.changed.add(t.id)
        return t

    def occupy(self, pool: Pool, slot: int, trial: Trial) -> None:
        pool.trial[slot] = trial.id
        pool.set_hp(slot, {n: trial.config[n] for n in pool.hp})
        trial.status = "running"
        trial.segments.append([pool.offset + slot, self.now(), math.nan, self.tick, -1])
        self.changed.add(trial.id)

    def start(self, pool: Pool, slot: int, u, cfg) -> Trial:
        t = self.new_trial(u, cfg, pool)
        self.occupy(pool, slot, t)
        pool.stage_new(slot)
        return t

    def resume(self, pool: Pool, slot: int, trial: Trial, saved, last_scores) -> None:
        self.occupy(pool, slot, trial)
        pool.stage_resume(slot, saved, last_scores)

    def release(self, pool: Pool, slot: int, status: str, reason: str = "") -> Trial:
        t = self.trials[pool.trial[slot]]
        pool.trial[slot] = -1
        if status == "failed":
            pool.just_failed.add(int(slot))
        t.status, t.end_reason = status, reason or t.end_reason
        seg = t.segments[-1]
        seg[2], seg[4] = self.now(), self.tick
        self.changed.add(t.id)
        return t

    def committed(self) -> int:
        """Env steps the running and paused trials could still use if none were stopped."""
        total = 0
        for p in self.pools:
            for s in p.occupied():
                total += (self.num_phases - self.trials[p.trial[s]].phases) * self.seeds * p.steps
        return total

    # -- the tick ------------------------------------------------------------------------------
    def run(self, policy) -> StudyResult:
        self.setup_seconds = self.now()  # building the pools (their init compiles included)
        self.thread = threading.get_ident()
        _ACTIVE.append(self)
        try:
            while True:
                t_tick = time.perf_counter()
                self.section = "tuner"
                policy.fill(self)
                for p in self.pools:
                    if p.flush():
                        jax.block_until_ready(p.state)
                waiting = policy.waiting(self)
                occupied = sum(len(p.occupied()) for p in self.pools)
                if occupied == 0:  # nothing could be placed: done (or out of budget/time)
                    break
                t_train = time.perf_counter()
                self.section = "train"
                active = [p for p in self.pools if len(p.occupied())]
                outs = [(p, p.advance()) for p in active]
                host = jax.device_get([(m.return_sum, m.return_count, m.failed) for _, m in outs])
                train_s = time.perf_counter() - t_train
                self.section = "tuner"
                self.timing["train"] += train_s
                self.tick += 1
                self.busy_ticks[0] += occupied
                self.busy_ticks[1] += self.num_slots
                if waiting:
                    self.busy_ticks_waiting[0] += occupied
                    self.busy_ticks_waiting[1] += self.num_slots

                arrivals = self._record(outs, host, train_s)
                actions = policy.decide(self, arrivals)
                eval_s = self._apply(arrivals, actions)
                self.timing["evaluate"] += eval_s
                policy.after_tick(self)
                for p in self.pools:
                    p.just_failed.clear()
                self._report()
                dt = time.perf_counter() - t_tick
                self.tick_seconds.append(dt)
                self.timing["tuner"] += dt - train_s - eval_s
                if self.max_seconds is not None and self.now() >= self.max_seconds:
                    break
        finally:
            _ACTIVE.remove(self)
            self._stop_remaining()
            if self.log is not None:
                self._flush_log()
                self.log.close()
        return self._result()

    def _record(self, outs, host, train_s) -> list[tuple[Pool, int, Trial, float, bool]]:
        """Appends the phase's scores to the trials' curves; returns the arrivals."""
        now = self.now()
        total_member_steps = sum(len(p.occupied()) * p.seeds * p.steps for p, _ in outs)
        arrivals = []
        for (p, _), (rsum, rcount, failed) in zip(outs, host):
            m = p.members
            scores = member_scores(np.asarray(rsum[:m]), np.asarray(rcount[:m]), p.last_member_score)
            p.last_member_score = scores
            failed = np.asarray(failed[:m, -1])
            for slot in p.occupied():
                t = self.trials[p.trial[slot]]
                idx = p.members_of(slot)
                t.phases += 1
                steps = p.seeds * p.steps
                t.env_steps += steps
                self.used += steps
                t.compute_seconds += train_s * steps / max(total_member_steps, 1)
                bad = bool(failed[idx].any())
                sc = scores[idx]
                value = math.nan if bad or np.isnan(sc).any() else float(sc.mean())
                t.curve.append(value)
                t.curve_steps.append(t.phases * p.steps)  # PBT children count from their parent's
                t.curve_times.append(now)
                self.changed.add(t.id)
                if bad:
                    score = -math.inf
                elif np.isnan(sc).any():
                    score = NO_EPISODE
                else:
                    score = value
                arrivals.append((p, int(slot), t, score, bad))
                if not bad and np.isfinite(score) and score != NO_EPISODE:
                    for obs in (self.proposer, *self.observers):
                        obs.tell(t.u[None], np.asarray([score]), np.asarray([t.curve_steps[-1]]))
        return arrivals

    def _apply(self, arrivals, actions) -> float:
        """Carries out ``actions`` (one per arrival): continue, evict, fail, pause, complete."""
        eval_s = 0.0
        completing: dict[int, list] = collections.defaultdict(list)
        for (p, slot, t, score, bad), act in zip(arrivals, actions):
            if act == "continue":
                continue
            if act == "complete":
                completing[p.index].append((slot, t))
            elif act == "pause":
                # The paused members stay on the device until the trial resumes.
                self.paused[t.id] = (p.runner.take(p.state, p.members_of(slot)),
                                     p.last_member_score[p.members_of(slot)].copy())
                self.release(p, slot, "paused")
            elif act == "fail":
                self.release(p, slot, "failed", "non-finite values")
            elif act == "evict":
                self.release(p, slot, "evicted", self.scheduler_name)
            else:
                raise ValueError(f"unknown action {act!r}")
        for pi, items in completing.items():
            p = self.pools[pi]
            t_eval = time.perf_counter()
            self.section = "evaluate"
            returns = np.asarray(jax.device_get(p.runner.evaluate(p.eval_keys, p.state, self.eval_episodes)))
            self.section = "tuner"
            eval_s += time.perf_counter() - t_eval
            per_member = returns[: p.members].mean(axis=1)
            for slot, t in items:
                vals = per_member[p.members_of(slot)]
                if not np.all(np.isfinite(vals)):
                    self.release(p, slot, "failed", "non-finite evaluation")
                    continue
                t.final_scores = [float(v) for v in vals]
                t.final_score = float(vals.mean())
                if self.best is None or t.final_score > self.best.final_score:
                    self.best = t
                    self.best_state = p.runner.take(p.state, p.members_of(slot))
                    self.found_best_at = self.now()
                self.release(p, slot, "completed")
        return eval_s

    def _stop_remaining(self) -> None:
        for p in self.pools:
            for slot in p.occupied():
                self.release(p, slot, "stopped", "study ended")
        for t in self.trials:
            if t.status in ("queued", "paused"):
                t.status, t.end_reason = "stopped", "study ended"
                self.changed.add(t.id)
        self.paused.clear()

    def _flush_log(self) -> None:
        if self.changed:
            self.log.write([self.trials[i] for i in sorted(self.changed)], self.tick, self.now())
        self.changed.clear()

    def _report(self) -> None:
        if self.log is not None:
            self._flush_log()
        else:
            self.changed.clear()
        if self.progress_fn is None:
            return
        counts = collections.Counter(t.status for t in self.trials)
        self.progress_fn(
            self.used,
            {
                "study/tick": self.tick,
                "study/seconds": self.now(),
                "study/trials": len(self.trials),
                "study/running": counts["running"],
                "study/completed": counts["completed"],
                "study/evicted": counts["evicted"],
                "study/failed": counts["failed"],
                "study/best_score": self.best.final_score if self.best else math.nan,
                "study/slot_utilization": self.busy_ticks[0] / max(self.busy_ticks[1], 1),
            },
        )

    def _timing(self) -> dict[str, float]:
        """Seconds by section; compiles taken out of the section they happened in."""
        out = {"setup": self.setup_seconds}
        for k, v in self.timing.items():
            out[k] = max(0.0, v - self.compile_by.get(k, 0.0))
        out["compile"] = sum(self.compile_by.get(k, 0.0) for k in self.timing)
        return out

    def _result(self) -> StudyResult:
        best_state = None if self.best_state is None else jax.device_get(self.best_state)
        best_agent = self.agent if self.best is None else self.pools[self.best.bucket].agent
        return StudyResult(
            trials=self.trials,
            best=self.best,
            best_state=best_state,
            best_agent=best_agent,
            scheduler=self.scheduler_name,
            space=self.space,
            slots=self.num_slots,
            seconds=self.now(),
            env_steps=self.used,
            ticks=self.tick,
            found_best_at=self.found_best_at,
            timing=self._timing(),
            slot_utilization={
                "while_queued": self.busy_ticks_waiting[0] / max(self.busy_ticks_waiting[1], 1),
                "overall": self.busy_ticks[0] / max(self.busy_ticks[1], 1),
            },
            buckets=[dict(p.bucket, slots=p.slots, steps_per_phase=p.steps) for p in self.pools],
        )

