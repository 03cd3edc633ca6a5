"""The study loop: every tick advances all occupied slots by one phase; at the boundary the
policy decides, the engine applies, the store persists.

One tick is a transaction::

    fill -> advance (device) -> record -> decide -> apply -> persist -> notify

Per tick, per structural bucket (a :class:`~hyperjax.study.pool.Pool`), the device runs one compiled ``advance``;
the host reads back one small array of per-update returns (the only device -> host transfer of
an ordinary tick), the policy returns :class:`~hyperjax.study.decisions.Decision` objects for
the arrivals (its rule runs on the host CPU), and :meth:`Study.apply` carries them out: freed
slots are re-initialised in place by one compiled ``refill`` (or ``put``, to resume a paused
trial), PBT's copies are one gather. Only :meth:`Study.apply` changes slots, trials and device
state. What the tick changed (trials, observations, decisions) goes to the store and the
callbacks; everything that lives across ticks has ``state_dict``/``load_state_dict`` (host) or
is a pytree (device), so a study resumed from tick N continues exactly as if never stopped.
:meth:`Study.precompile` compiles the programs first needed mid-study (evaluation, ``take``,
``put``) while the study sets up, so none compiles on the study's thread after its first tick.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import threading
import time
from typing import Any

import jax
import numpy as np

from hyperjax import distributed
from hyperjax.study import selection
from hyperjax.study.buckets import bucket_of
from hyperjax.study.decisions import Action, Arrival, Decision
from hyperjax.study.pool import Pool
from hyperjax.study.records import StudyResult, Trial, final_objective, phase_objective

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
    """Host-side state of one running study. A policy (``policies``) decides; :meth:`apply`
    carries decisions out; an optional ``store`` persists every tick; ``callbacks`` watch.

    Args (the less obvious):
      proposer: ask/tell object (validated on every ask: shape, finite, inside the cube).
      observers: extra ask/tell objects told every observation (a predictor, say).
      store: an object with ``persist(study, changes)`` called once per tick (see
        ``hyperjax.store``), or ``None``.
      callbacks: callables ``callback(study, changes)`` called once per tick after the store.
      t0: the ``time.perf_counter()`` at which the study's clock started.
      config: the whole study configuration as plain data (``hyperjax.config``; what the store
        keeps): for callbacks that log it.
      objective: what the scheduler, the proposer and the choice of the best optimise
        (``records.OBJECTIVES``; ``phase_objective`` at phase boundaries, ``final_objective``
        for evaluated trials).
      reevaluate, reevaluate_episodes: when the study ends, its ``reevaluate`` leading trials
        are evaluated again on ``reevaluate_episodes`` fresh episodes per seed and the best is
        chosen among them by that (``hyperjax.study.selection``); 0: the best is the highest
        first evaluation. The leaders' members are kept on the device as they complete.
      reevaluate_seeds: with ``R > 0`` the leaders' configurations are also retrained from
        scratch on ``R`` fresh seeds each and the best is chosen by those runs (their env steps
        count against the budget and their time against ``max_seconds``, both kept back).
      retrain_share: with ``max_seconds``, the retraining is dropped (the best is then the
        highest first evaluation) once it is expected to take more than this share of
        ``max_seconds`` (``tune``'s ``"auto"``: ``selection.DEFAULT_SHARE``); ``None``: never.
    """

    def __init__(self, *, agent, space, structural, buckets, pools, proposer, num_phases, seeds, budget,
                 max_seconds, eval_episodes, base_hp, key: jax.Array, scheduler_name: str,
                 observers: list | None = None, store=None, callbacks: list | None = None, t0: float | None = None,
                 config: dict | None = None, objective: str = "final", reevaluate: int = 0,
                 reevaluate_episodes: int = 64, reevaluate_seeds: int = 0, retrain_share: float | None = None):
        self.agent, self.space, self.structural, self.buckets = agent, space, structural, buckets
        self.objective = objective
        # the final re-evaluation (none for an objective it cannot rank)
        self.reevaluate = int(reevaluate) if objective in selection.REEVALUATED else 0
        self.reeval_rounds = selection.rounds(reevaluate_episodes, eval_episodes)
        self.reevaluate_seeds = int(reevaluate_seeds) if self.reevaluate else 0
        self.retrain_share = retrain_share
        self.retrain_dropped = False  # set once (drop_retraining), by the run loop
        self.reseed_key_data: np.ndarray | None = None  # (R, seeds, ...): set by precompile()
        self.leaders: dict[int, Any] = {}  # trial id -> its final members (leading axis seeds), best first
        self.reeval_key_data: np.ndarray | None = None  # (rounds, seeds, ...): set by precompile()
        self.eval_call_seconds: list[float] = []  # the last eight pool-wide evaluations
        self.pools: list[Pool] = pools
        self.proposer = proposer
        self.observers = list(observers or [])
        self.num_phases, self.seeds, self.budget = num_phases, seeds, budget
        self.max_seconds, self.eval_episodes = max_seconds, eval_episodes
        self.base_hp = base_hp
        self.key = key
        self.store = store
        self.config = dict(config or {})
        self.primary = distributed.is_primary()  # decides, tells the proposer, writes the store
        self.callbacks = list(callbacks or [])
        self.scheduler_name = scheduler_name
        self.num_slots = sum(p.slots for p in pools)
        self.trials: list[Trial] = []
        self.proposed: collections.deque = collections.deque()  # (u, config) asked for, not yet used
        self.exhausted = False
        self.used = 0  # env steps consumed, all members
        self.tick = 0
        self.tick_seconds: list[float] = []
        self.timing = {"train": 0.0, "evaluate": 0.0, "tuner": 0.0, "store": 0.0, "callbacks": 0.0}
        self.callback_seconds: dict[str, float] = {}  # by callback class name (this process's run)
        self.compile_by: dict[str, float] = {}
        self.section = "tuner"
        self.busy_ticks = [0, 0]  # occupied slot-ticks, slot-ticks (whole study)
        self.busy_ticks_waiting = [0, 0]  # the same, over ticks at which work was waiting
        self.busy_members = [0, 0]  # member-phases of occupied slots, member-phases the device ran
        self.best: Trial | None = None
        self.best_state = None
        self.found_best_at = math.nan
        self.paused: dict[int, tuple[Any, np.ndarray]] = {}  # trial id -> (member states, last scores)
        self.finished = False
        self.t0 = time.perf_counter() if t0 is None else t0
        self.setup_seconds = 0.0
        self._new_changes()

    def _new_changes(self) -> None:
        # What this tick changed: the store writes it, the callbacks see it.
        self.changes = {"trials": set(), "observations": [], "decisions": [], "completed": {}}

    # -- time --------------------------------------------------------------------------------
    def now(self) -> float:
        """Seconds the study has run (across every process that ran it, when resumed)."""
        return time.perf_counter() - self.t0

    def reserve_seconds(self) -> float:
        """Seconds kept back from ``max_seconds`` for the final re-evaluation: its evaluation
        calls (the leaders so far, each bucket's at least one call) at the slowest of the last
        eight pool-wide evaluations (a leader's episodes may run longer than most: on
        MinAtar a good policy survives longer). 0 before any evaluation was timed."""
        if not self.reevaluate or not self.eval_call_seconds:
            return 0.0
        return self._calls(self.reeval_rounds) * max(self.eval_call_seconds) + self.retrain_seconds()

    def _calls(self, copies: int) -> int:
        """Calls of a pool's compiled programs that ``copies`` copies of every leader so far
        need (each bucket's at least one: a single bucket's even before any leader)."""
        per_pool = collections.Counter(self.trials[tid].bucket for tid in self.leaders)
        return sum(max(1, -(-per_pool.get(p.index, 0) * copies // p.slots)) for p in self.pools
                   if per_pool.get(p.index, 0) or len(self.pools) == 1)

    def retrain_seconds(self) -> float:
        """Seconds expected for retraining the leaders (its part of :meth:`reserve_seconds`):
        each call a whole trial of ticks (the median tick after the first, which compiles) and
        an evaluation. 0 without it, or before a tick was timed."""
        if not self.reevaluate_seeds or not self.tick_seconds:
            return 0.0
        tick = float(np.median(self.tick_seconds[1:] or self.tick_seconds))
        return self._calls(self.reevaluate_seeds) * (self.num_phases * tick + max(self.eval_call_seconds, default=0.0))

    def judges_retraining(self) -> bool:
        """Whether the retraining may still be dropped for time (``retrain_share`` and
        ``max_seconds`` set, and a retraining not dropped yet): the same on every process."""
        return self.retrain_share is not None and self.max_seconds is not None and self.reevaluate_seeds > 0

    def retraining_too_long(self, final: bool = False) -> bool:
        """Whether the retraining is expected to take more than ``retrain_share`` of
        ``max_seconds``: judged from the third tick on while the study runs (the first ticks
        compile), from whatever ticks ran when it ends (``final``). Always False without a
        share, a time limit or a retraining."""
        if not self.judges_retraining():
            return False
        timed = len(self.tick_seconds) >= (1 if final else 3)
        return timed and self.retrain_seconds() > self.retrain_share * self.max_seconds

    def drop_retraining(self) -> None:
        """No final re-evaluation or retraining after all: the best is the highest first
        evaluation, the budget and time they held back are free for trials."""
        self.reevaluate = self.reevaluate_seeds = 0
        self.leaders = {}
        self.retrain_dropped = True

    def reserve_steps(self) -> int:
        """Env steps kept back from the budget for retraining the leaders on fresh seeds: every
        leader's configuration on ``reevaluate_seeds`` runs of a whole trial (the largest
        bucket's phases). 0 without it."""
        if not self.reevaluate_seeds:
            return 0
        return selection.retrain_steps(self.reevaluate, self.reevaluate_seeds, self.seeds, self.num_phases,
                                       max(p.steps for p in self.pools))

    def deadline(self) -> float | None:
        """Study seconds by which training must end: ``max_seconds`` less the reserve."""
        return None if self.max_seconds is None else self.max_seconds - self.reserve_seconds()

    def time_fits(self, ticks: int) -> bool:
        """Whether ``ticks`` more ticks are expected to end before the :meth:`deadline`."""
        if self.max_seconds is None:
            return True
        deadline = self.deadline()
        if len(self.tick_seconds) < 2:
            return self.now() < deadline
        # Median: robust to the first ticks of each bucket, which include compiling.
        est = float(np.median(self.tick_seconds))
        return self.now() + ticks * est <= deadline

    # -- configurations ------------------------------------------------------------------------
    def proposer_ask(self, k: int, where: dict | None = None) -> np.ndarray | None:
        """``k`` cube points ``(k, d)`` from the proposer (within ``where``, for a proposer that
        ``asks_within``), or ``None`` when it has nothing left (its ``ask`` raised ValueError).
        A proposer that returns the wrong shape, non-finite values or points outside ``[0, 1]``
        is a bug in the proposer: ValueError naming it."""
        try:
            u = self.proposer.ask(k, where=where) if where else self.proposer.ask(k)
        except ValueError:
            return None
        return check_proposals(self.proposer, u, k, self.space.ndim)

    def propose(self, k: int, where: dict | None = None) -> None:
        """Asks the proposer for ``k`` configurations and appends them to :attr:`proposed`."""
        u = self.proposer_ask(k, where)
        if u is None:
            self.exhausted = True
            return
        self.proposed.extend(zip(u, self.space.configs(u)))

    def next_config(self, bucket: int):
        """The next proposed ``(u, config)`` of ``bucket``, asking the proposer for more when
        none is waiting (others' proposals keep their places); ``None`` when none can be had.

        A proposer that learns from what it is told (``proposer.learns``, e.g. the BNN) is asked
        for the slots free now, so that every refill comes from a posterior that has seen every
        score up to this tick; others are asked for batches of ``max(8, slots)``. When none of a
        learning proposer's batch fell in ``bucket`` and it ``asks_within``, it is asked for its
        best configuration within the bucket (rather than for batch after batch until one lands
        there: each ask of a surrogate costs a pass over its candidate pool)."""
        rounds = 0
        while not self.exhausted and rounds < 64:
            for i, (u, cfg) in enumerate(self.proposed):
                if bucket_of(cfg, self.structural, self.buckets) == bucket:
                    del self.proposed[i]
                    return u, cfg
            rounds += 1
            if getattr(self.proposer, "learns", False):
                if rounds > 1 and self.structural and getattr(self.proposer, "asks_within", False):
                    self.propose(1, where={n: self.buckets[bucket][n] for n in self.structural
                                           if n in self.buckets[bucket]})
                else:
                    self.propose(max(1, sum(int(np.sum(p.trial < 0)) for p in self.pools)))
            else:
                self.propose(max(8, self.num_slots))
        return None

    def discard_stale_proposals(self) -> None:
        """Drops the proposals a learning proposer made before this tick's scores (they are
        given back to it with ``forget(u)``, if it has one, so it may propose them again)."""
        if not self.proposed or not getattr(self.proposer, "learns", False):
            return
        stale = np.asarray([u for u, _ in self.proposed], np.float64)
        self.proposed.clear()
        if hasattr(self.proposer, "forget"):
            self.proposer.forget(stale)

    def take_proposals(self, k: int) -> list[tuple[np.ndarray, dict]]:
        """The next ``k`` proposals of any bucket, in order (fewer if the space runs out)."""
        if len(self.proposed) < k and not self.exhausted:
            self.propose(k - len(self.proposed))
        return [self.proposed.popleft() for _ in range(min(k, len(self.proposed)))]

    def full_config(self, cfg: dict) -> dict:
        """The search-space values plus the fixed traced values it does not set."""
        out = {n: v for n, v in self.base_hp.items() if n not in cfg}
        out.update(cfg)
        return out

    def committed(self) -> int:
        """Env steps the running and paused trials could still use if none were stopped."""
        total = 0
        for p in self.pools:
            for s in p.occupied():
                total += (self.num_phases - self.trials[p.trial[s]].phases) * self.seeds * p.steps
        return total

    # -- applying decisions ----------------------------------------------------------------------
    def _create(self, d: Decision, origin: str = "proposer", parent: int | None = None, phases: int = 0) -> Trial:
        if d.trial != len(self.trials):
            raise RuntimeError(f"decision {d.action.value} creates trial {d.trial}, but the next id is {len(self.trials)}")
        t = Trial(id=d.trial, config=self.full_config(d.config), u=np.asarray(d.u, np.float64), bucket=d.pool,
                  seeds=tuple(range(self.seeds)), origin=origin, parent=parent, phases=phases, start_phase=phases)
        self.trials.append(t)
        self.changes["trials"].add(t.id)
        return t

    def _occupy(self, pool: Pool, slot: int, trial: Trial) -> None:
        if pool.trial[slot] >= 0:
            raise RuntimeError(f"slot {slot} of bucket {pool.index} is held by trial {pool.trial[slot]}")
        pool.trial[slot] = trial.id
        pool.set_hp(slot, {n: trial.config[n] for n in pool.hp})
        trial.status = "running"
        trial.segments.append([pool.offset + slot, self.now(), math.nan, self.tick, -1])
        self.changes["trials"].add(trial.id)

    def _release(self, pool: Pool, slot: int, status: str, reason: str = "") -> Trial:
        t = self.trials[pool.trial[slot]]
        pool.trial[slot] = -1
        if status == "failed":
            pool.just_failed.add(int(slot))
        t.status, t.end_reason = status, reason or t.end_reason
        seg = t.segments[-1]
        seg[2], seg[4] = self.now(), self.tick
        self.changes["trials"].add(t.id)
        return t

    def _slot_of(self, d: Decision) -> tuple[Pool, int]:
        pool = self.pools[d.pool]
        if pool.trial[d.slot] != d.trial:
            raise RuntimeError(f"decision {d.action.value} for trial {d.trial}: slot {d.slot} holds trial {pool.trial[d.slot]}")
        return pool, d.slot

    def apply(self, decisions: list[Decision]) -> float:
        """Carries out ``decisions`` in order (PBT copies last, as one gather per bucket);
        returns the seconds spent evaluating completed trials."""
        completing: dict[int, list[tuple[int, Trial]]] = collections.defaultdict(list)
        exploits: dict[int, list[Decision]] = collections.defaultdict(list)
        for d in decisions:
            self.changes["decisions"].append(d)
            a = d.action
            if a is Action.CONTINUE:
                continue
            if a is Action.START:
                pool = self.pools[d.pool]
                self._occupy(pool, d.slot, self._create(d))
                pool.stage_new(d.slot)
            elif a is Action.QUEUE:
                self._create(d)
            elif a is Action.RESUME:
                pool, t = self.pools[d.pool], self.trials[d.trial]
                self._occupy(pool, d.slot, t)
                if t.id in self.paused:
                    saved, scores = self.paused.pop(t.id)
                    pool.stage_resume(d.slot, saved, scores)
                else:  # queued, never ran: fresh members
                    pool.stage_new(d.slot)
            elif a is Action.PAUSE:
                pool, slot = self._slot_of(d)
                # The paused members stay on the device until the trial resumes.
                self.paused[d.trial] = (pool.take(slot), pool.last_member_score[pool.members_of(slot)].copy())
                self._release(pool, slot, "paused")
            elif a is Action.EVICT:
                if d.slot >= 0:
                    self._release(*self._slot_of(d), "evicted", d.reason)
                else:  # a paused trial
                    t = self.trials[d.trial]
                    t.status, t.end_reason = "evicted", d.reason
                    self.paused.pop(t.id, None)
                    self.changes["trials"].add(t.id)
            elif a is Action.FAIL:
                self._release(*self._slot_of(d), "failed", d.reason or "non-finite values")
            elif a is Action.COMPLETE:
                pool, slot = self._slot_of(d)
                completing[pool.index].append((slot, self.trials[d.trial]))
            elif a is Action.EXPLOIT:
                exploits[d.pool].append(d)
            else:  # pragma: no cover - the enum is closed
                raise ValueError(f"unknown action {a!r}")
        eval_s = self._complete(completing)
        for pi, items in exploits.items():
            self._exploit(self.pools[pi], items)
        return eval_s

    def _complete(self, completing: dict[int, list[tuple[int, Trial]]], status: str = "completed",
                  reason: str = "") -> float:
        """Evaluates the members of ``completing`` (pool index -> [(slot, trial)]), records their
        final scores, keeps the best and releases the slots with ``status``; returns the seconds
        spent evaluating. A non-finite evaluation fails a completing trial; a trial stopped by
        the study's end keeps ``status`` with a NaN score (it never becomes the best)."""
        eval_s = 0.0
        for pi, items in completing.items():
            p = self.pools[pi]
            t_eval = time.perf_counter()
            self.section = "evaluate"
            returns = np.asarray(distributed.fetch(p.runner.evaluate(p.eval_keys, p.state, self.eval_episodes)))
            self.section = "tuner"
            eval_s += time.perf_counter() - t_eval
            self.eval_call_seconds = [*self.eval_call_seconds[-7:], time.perf_counter() - t_eval]
            per_member = returns[: p.members].mean(axis=1)
            for slot, t in items:
                vals = per_member[p.members_of(slot)]
                if not np.all(np.isfinite(vals)):
                    if status == "completed":
                        self._release(p, slot, "failed", "non-finite evaluation")
                    else:
                        self._release(p, slot, status, reason)
                    continue
                t.final_scores = [float(v) for v in vals]
                t.final_score = float(vals.mean())
                members = p.take(slot)
                self.changes["completed"][t.id] = members
                if self.best is None or (final_objective(self.objective, t)
                                         > final_objective(self.objective, self.best)):
                    self.best = t
                    self.best_state = members
                    self.found_best_at = self.now()
                self._release(p, slot, status, reason)
                self._keep_leader(t, members)  # once released: a leader is an evaluated trial
        return eval_s

    def _keep_leader(self, trial: Trial, members) -> None:
        """Keeps ``trial``'s members if it is among the ``reevaluate`` leading trials (and lets
        go of the one it displaced)."""
        if not self.reevaluate:
            return
        ids = selection.leaders([self.trials[i] for i in self.leaders] + [trial], self.objective, self.reevaluate)
        kept = {tid: (members if tid == trial.id else self.leaders[tid]) for tid in ids}
        self.leaders = kept

    def _select(self) -> float:
        """The final re-evaluation: every leader on the same fresh episodes
        (``reeval_rounds * eval_episodes`` per seed), its ``reeval_score`` recorded, and the best
        the leader that scores highest there; with ``reevaluate_seeds`` the leaders'
        configurations retrained on fresh seeds too (:meth:`_reseed`, ``reseed_score``), and the
        best the leader whose retrained runs score highest. Copies of the leaders fill each
        pool's slots (one round each), so a pool of ``slots`` slots evaluates ``slots`` copies
        per call with the compiled evaluation the study already has; the pools' own states are
        left as they were. Returns the seconds spent evaluating (retraining counts as training)."""
        order = [tid for tid in selection.leaders(self.trials, self.objective, self.reevaluate) if tid in self.leaders]
        if len(order) < 2:
            return 0.0
        t0 = time.perf_counter()
        self.section = "evaluate"
        if self.reeval_key_data is None:  # a study that was not precompiled
            self.precompute_keys()
        impl = jax.random.key_impl(self.key)
        returns: dict[int, list[np.ndarray]] = collections.defaultdict(list)  # tid -> [(S, E) per round]
        for p in self.pools:
            ids = [tid for tid in order if self.trials[tid].bucket == p.index]
            for call in selection.packing(ids, self.reeval_rounds, p.slots):
                state = p.state
                for j, (tid, _) in enumerate(call):
                    state = p.runner.put(state, p.members_of(j), self.leaders[tid])
                round_of_slot = np.zeros(p.slots, np.int64)
                round_of_slot[: len(call)] = [r for _, r in call]
                keys = selection.episode_keys(self.reeval_key_data, round_of_slot, impl)
                out = np.asarray(distributed.fetch(p.runner.evaluate(keys, state, self.eval_episodes)))
                for j, (tid, _) in enumerate(call):
                    returns[tid].append(out[p.members_of(j)])
        scores = {}
        for tid in order:
            t = self.trials[tid]
            seed_means = np.concatenate(returns[tid], axis=1).mean(axis=1)  # (S,)
            t.reeval_scores = [float(v) for v in seed_means]
            t.reeval_score = scores[tid] = selection.reevaluated_objective(self.objective, seed_means)
            self.changes["trials"].add(tid)
        self.section = "tuner"
        eval_s = time.perf_counter() - t0
        if self.reevaluate_seeds:
            t_train = time.perf_counter()
            self.section = "train"
            runs = self._reseed(order)
            scores = {}
            for tid in order:
                t = self.trials[tid]
                t.reseed_scores = [float(v) for v in runs[tid].ravel()]
                t.reseed_score = scores[tid] = selection.retrained_objective(self.objective, runs[tid])
            self.section = "tuner"
            self.timing["train"] += time.perf_counter() - t_train
        chosen = selection.pick(order, scores)
        if chosen is not None and (self.best is None or chosen != self.best.id):
            self.best = self.trials[chosen]
            self.best_state = self.leaders[chosen]
            self.found_best_at = self.best.end_time
        return eval_s

    def _reseed(self, order: list[int]) -> dict[int, np.ndarray]:
        """Each leader's configuration trained from scratch on ``reevaluate_seeds`` fresh seeds
        for a whole trial (``num_phases`` phases) and evaluated greedily on the first round of
        the re-evaluation's fresh episodes: trial id -> mean returns ``(R, S)`` (run, seed; NaN
        where a run diverged). Copies of the leaders fill each pool's slots (run ``r`` on the
        ``r``-th fresh seeds), trained by the pool's compiled refill and advance; the pool's
        own state is left as it was; the env steps count as the study's."""
        impl = jax.random.key_impl(self.key)
        out = {tid: np.full((self.reevaluate_seeds, self.seeds), np.nan) for tid in order}
        for p in self.pools:
            ids = [tid for tid in order if self.trials[tid].bucket == p.index]
            episodes = selection.episode_keys(self.reeval_key_data, np.zeros(p.slots, np.int64), impl)  # round 0
            for call in selection.packing(ids, self.reevaluate_seeds, p.slots):
                hp = {n: v.copy() for n, v in p.hp.items()}
                run_of_slot = np.zeros(p.slots, np.int64)
                mask = np.zeros(p.runner.padded(p.members), bool)
                for j, (tid, r) in enumerate(call):
                    for n in hp:
                        hp[n][j] = self.trials[tid].config[n]
                    run_of_slot[j] = r
                    mask[p.members_of(j)] = True
                hp_members = p.hp_members(hp)
                state = p.runner.refill(p.state, mask, selection.episode_keys(self.reseed_key_data, run_of_slot, impl),
                                        hp_members)
                for _ in range(self.num_phases):
                    state, _ = p.runner.advance(state, hp_members, p.updates)
                returns = np.asarray(distributed.fetch(p.runner.evaluate(episodes, state, self.eval_episodes)))
                failed = np.asarray(distributed.fetch(state.failed))
                for j, (tid, r) in enumerate(call):
                    idx = p.members_of(j)
                    out[tid][r] = np.where(failed[idx], np.nan, returns[idx].mean(axis=1))
                self.used += selection.retrain_steps(len(call), 1, p.seeds, self.num_phases, p.steps)
        return out

    def _exploit(self, pool: Pool, items: list[Decision]) -> None:
        # Sources are read before any slot changes: the copy is one simultaneous gather.
        src = {d.slot: int(np.flatnonzero(pool.trial == d.source)[0]) for d in items}
        pool.copy_from(src)
        for d in items:
            if pool.trial[d.slot] >= 0:
                self._release(pool, d.slot, "evicted", d.reason)
            parent = self.trials[d.source]
            child = self._create(d, origin="pbt", parent=parent.id, phases=parent.phases)
            self._occupy(pool, d.slot, child)

    # -- the tick ------------------------------------------------------------------------------
    def _decided(self, decide, *args) -> list[Decision]:
        """``decide(self, *args)`` on the deciding process; with several processes its
        decisions reach every process (one broadcast), which all apply them identically."""
        if not distributed.multi_process():
            return decide(self, *args)
        mine = [dict(dataclasses.asdict(d), action=d.action.value) for d in decide(self, *args)] if self.primary else None
        return [Decision(**dict(d, action=Action(d["action"]))) for d in distributed.broadcast(mine)]

    def precompile(self, policy) -> None:
        """Compiles what a study first runs mid-way (evaluating a completed trial, taking its
        members, putting a paused trial's back if ``policy.pauses`` or a leader's for the final
        re-evaluation) ahead of time, so the
        first completion or resume does not stall every slot for a compile."""
        for p in self.pools:
            p.runner.precompile(p.eval_keys, p.state, self.eval_episodes, len(p.members_of(0)),
                                put=getattr(policy, "pauses", False) or self.reevaluate > 0)
        if self.reevaluate:
            self.precompute_keys()

    def precompute_keys(self) -> None:
        """The keys of the final re-evaluation's fresh episodes and of its fresh training seeds
        (as host data: using them at the end compiles nothing)."""
        self.reeval_key_data = selection.episode_key_data(self.key, self.reeval_rounds, self.seeds)
        if self.reevaluate_seeds:
            self.reseed_key_data = selection.episode_key_data(self.key, self.reevaluate_seeds, self.seeds,
                                                              stream=selection.RESEED_STREAM)

    def run(self, policy) -> StudyResult:
        self.thread = threading.get_ident()
        _ACTIVE.append(self)
        ended = False
        try:
            while True:
                t_tick = time.perf_counter()
                self.section = "tuner"
                # FILL (from a learning proposer, with what it was told up to the last tick)
                if self.tick > 0 and self.primary:
                    self.discard_stale_proposals()
                self.apply(self._decided(policy.fill))
                for p in self.pools:
                    if p.flush():
                        jax.block_until_ready(p.state)
                waiting = policy.waiting(self) if self.primary else False
                occupied = sum(len(p.occupied()) for p in self.pools)
                if occupied == 0:  # nothing could be placed: done (or out of budget/time)
                    break
                # ADVANCE
                t_train = time.perf_counter()
                self.section = "train"
                active = [p for p in self.pools if len(p.occupied())]
                outs = [(p, p.advance()) for p in active]
                host = distributed.fetch([(m.return_sum, m.return_count, m.failed, m.entropy) for _, m in outs])
                train_s = time.perf_counter() - t_train
                self.section = "tuner"
                self.timing["train"] += train_s
                self.tick += 1
                self.busy_ticks[0] += occupied
                self.busy_ticks[1] += self.num_slots
                self.busy_members[0] += sum(len(p.occupied()) * p.seeds for p in active)
                self.busy_members[1] += sum(p.size if p.advanced_index is None else len(p.advanced_index)
                                            for p in active)
                if waiting:
                    self.busy_ticks_waiting[0] += occupied
                    self.busy_ticks_waiting[1] += self.num_slots
                # RECORD, DECIDE, APPLY
                arrivals = self._record(outs, host, train_s)
                eval_s = self.apply(self._decided(policy.decide, arrivals))
                eval_s += self.apply(self._decided(policy.after_tick))
                self.timing["evaluate"] += eval_s
                for p in self.pools:
                    p.just_failed.clear()
                dt = time.perf_counter() - t_tick
                self.tick_seconds.append(dt)
                self.timing["tuner"] += dt - train_s - eval_s
                if self.tick >= 1:  # the smaller programs compile beside the training from here (once)
                    for p in self.pools:
                        if p.compact_sizes:
                            p.compile_compact()
                # PERSIST, NOTIFY
                self._persist(policy)
                # the clock is process 0's: every process drops the retraining and stops at the
                # same tick
                if self.judges_retraining() and distributed.broadcast(self.retraining_too_long()):
                    self.drop_retraining()
                if self.max_seconds is not None and distributed.broadcast(self.now() >= self.deadline()):
                    break
            ended = True
        finally:
            _ACTIVE.remove(self)
            if ended:
                # A study that ends normally stops what still runs; one that is interrupted (an
                # exception, Ctrl-C) keeps its last committed tick as it was, to be resumed.
                self._stop_remaining()
                # the leaders known now may need more calls than those timed while it ran
                if self.judges_retraining() and distributed.broadcast(self.retraining_too_long(final=True)):
                    self.drop_retraining()
                self.timing["evaluate"] += self._select()
                self.finished = True
                self._persist(policy, final=True)
        return self.result()

    def _persist(self, policy, final: bool = False) -> None:
        t0 = time.perf_counter()
        self.changes["final"] = final
        self.section = "store"
        if self.store is not None:
            self.store.persist(self, policy, self.changes, final=final)
        t_cbs = time.perf_counter()
        self.timing["store"] += t_cbs - t0
        self.section = "callbacks"
        for cb in list(self.callbacks):
            t_cb = time.perf_counter()
            try:
                cb(self, self.changes)
            except Exception as e:  # a watcher must never kill the study or lose its records
                import warnings

                warnings.warn(f"callback {cb!r} raised {type(e).__name__}: {e}; it is disabled", stacklevel=2)
                self.callbacks.remove(cb)
            name = getattr(cb, "__name__", type(cb).__name__)
            self.callback_seconds[name] = self.callback_seconds.get(name, 0.0) + time.perf_counter() - t_cb
        self.timing["callbacks"] += time.perf_counter() - t_cbs
        self.section = "tuner"
        self._new_changes()

    def _record(self, outs, host, train_s) -> list[Arrival]:
        """Appends the phase's scores to the trials' curves and tells the proposer; returns
        the arrivals."""
        now = self.now()
        total_member_steps = sum(len(p.occupied()) * p.seeds * p.steps for p, _ in outs)
        arrivals = []
        for (p, _), fetched in zip(outs, host):
            rsum, rcount, failed, entropy = (p.expand(np.asarray(x)) for x in fetched)
            m = p.members
            scores = member_scores(np.asarray(rsum[:m]), np.asarray(rcount[:m]), p.last_member_score)
            p.last_member_score = scores
            failed = np.asarray(failed[:m, -1])
            entropy = np.asarray(entropy[:m], np.float64).mean(axis=1)  # (m,): the phase's updates
            for slot in p.occupied():
                t = self.trials[p.trial[slot]]
                idx = p.members_of(slot)
                t.phases += 1
                steps = p.steps * p.seeds
                t.env_steps += steps
                self.used += steps
                t.compute_seconds += train_s * steps / max(total_member_steps, 1)
                bad = bool(failed[idx].any())
                sc = scores[idx]
                value = math.nan if bad or np.isnan(sc).any() else float(sc.mean())
                t.curve.append(value)
                t.curve_steps.append(t.phases * p.steps)  # PBT children count from their parent's
                t.curve_times.append(now)
                t.seed_curve.append([float(v) for v in sc])
                # a study resumed from a store written before entropies were recorded: NaN there
                t.entropy_curve.extend([math.nan] * (len(t.curve) - 1 - len(t.entropy_curve)))
                ent = entropy[idx]
                t.entropy_curve.append(math.nan if bad or not np.isfinite(ent).all() else float(ent.mean()))
                self.changes["trials"].add(t.id)
                self.changes["observations"].append((t.id, len(t.curve) - 1))
                if bad:
                    score = -math.inf
                elif np.isnan(sc).any():
                    score = NO_EPISODE
                else:
                    score = phase_objective(self.objective, t.curve, sc)
                arrivals.append(Arrival(t.id, p.index, int(slot), t.phases, score, bad))
                if not bad and np.isfinite(score) and score != NO_EPISODE and self.primary:
                    for obs in (self.proposer, *self.observers):
                        obs.tell(t.u[None], np.asarray([score]), np.asarray([t.curve_steps[-1]]))
        if self.primary and hasattr(self.proposer, "refit_async"):
            self.proposer.refit_async()  # fits beside the next tick's training (the BNN)
        return arrivals

    def _stop_remaining(self) -> None:
        """Ends what still runs when the study ends (time or budget): running trials are
        evaluated like completed ones and become ``"stopped"`` with that final score, so a
        study always has an answer (the best may be a stopped trial: the best of everything
        evaluated); queued and paused trials are stopped unevaluated."""
        running = {p.index: [(int(s), self.trials[p.trial[s]]) for s in p.occupied()] for p in self.pools}
        self.timing["evaluate"] += self._complete({i: v for i, v in running.items() if v}, "stopped", "study ended")
        for t in self.trials:
            if t.status in ("queued", "paused"):
                t.status, t.end_reason = "stopped", "study ended"
                self.changes["trials"].add(t.id)
        self.paused.clear()

    def summary_record(self) -> dict:
        """What a reader of the store needs besides the trials: counters, timing, the best."""
        return {"scheduler": self.scheduler_name, "slots": self.num_slots, "seconds": self.now(), "env_steps": self.used,
                "ticks": self.tick, "found_best_at": self.found_best_at, "best": -1 if self.best is None else self.best.id,
                "timing": self._timing(), "slot_utilization": utilization(self.busy_ticks, self.busy_ticks_waiting, self.busy_members),
                "buckets": [dict(p.bucket, slots=p.slots, steps_per_phase=p.steps) for p in self.pools],
                "finished": self.finished, "selection": self.final_choice()}

    def final_choice(self) -> dict[str, Any]:
        """How the best is chosen: ``reevaluate`` leaders re-evaluated, ``reevaluate_seeds``
        retraining runs each (0, 0: the highest first evaluation), and whether the retraining
        was dropped for time."""
        return {"reevaluate": self.reevaluate, "reevaluate_seeds": self.reevaluate_seeds,
                "retrain_dropped": self.retrain_dropped}

    def progress(self) -> dict[str, Any]:
        """Where the study stands, as plain values (what progress displays and ``progress_fn``
        show): tick, seconds, env steps and budget fraction, ETA, trials by status, the best and
        when it was found, training env steps/s, slot utilisation."""
        counts = self.counts()
        now = self.now()
        used, budget = self.used, self.budget
        frac = used / budget if budget else math.nan
        # ETA from the budget spent so far; a wall-clock cap bounds it
        eta = now * (1 - frac) / frac if 0 < frac <= 1 else math.nan
        if self.max_seconds is not None:
            left = max(0.0, self.max_seconds - now)
            eta = min(eta, left) if math.isfinite(eta) else left
        train = self.timing.get("train", 0.0)
        return {
            "tick": self.tick, "seconds": now, "env_steps": used, "budget": budget, "budget_fraction": frac, "eta": eta,
            "trials": len(self.trials), "running": counts.get("running", 0), "paused": counts.get("paused", 0),
            "completed": counts.get("completed", 0), "evicted": counts.get("evicted", 0),
            "failed": counts.get("failed", 0),
            "best_score": self.best.final_score if self.best is not None else math.nan,
            "best_trial": self.best.id if self.best is not None else -1, "found_best_at": self.found_best_at,
            "steps_per_second": used / train if train > 0 else math.nan,
            "slot_utilization": self.busy_ticks[0] / max(self.busy_ticks[1], 1),
        }

    def counts(self) -> dict[str, int]:
        return collections.Counter(t.status for t in self.trials)

    # -- saving and loading ----------------------------------------------------------------------
    def state_dict(self, policy) -> dict:
        """Everything on the host that lives across ticks, as plain data and arrays (device
        state apart: see :meth:`device_state`)."""
        return {
            "tick": self.tick, "used": self.used, "exhausted": self.exhausted, "seconds": self.now(),
            "tick_seconds": list(self.tick_seconds), "timing": dict(self.timing), "compile_by": dict(self.compile_by),
            "setup_seconds": self.setup_seconds,
            "busy_ticks": list(self.busy_ticks), "busy_ticks_waiting": list(self.busy_ticks_waiting),
            "busy_members": list(self.busy_members),
            "best": -1 if self.best is None else self.best.id, "found_best_at": self.found_best_at,
            "leaders": list(self.leaders), "eval_call_seconds": list(self.eval_call_seconds),
            "retrain_dropped": self.retrain_dropped,
            "trials": [t.state_dict() for t in self.trials],
            "proposed": [[np.asarray(u), cfg] for u, cfg in self.proposed],
            "paused": [[tid, scores] for tid, (_, scores) in self.paused.items()],
            "pools": [p.state_dict() for p in self.pools],
            "proposer": _state_of(self.proposer), "observers": [_state_of(o) for o in self.observers],
            "policy": policy.state_dict(),
        }

    def device_state(self) -> dict:
        """The device pytrees that live across ticks: every pool's members, the paused trials'
        members, the best trial's and the leaders' (those the final re-evaluation chooses from)."""
        return {"pools": [p.state for p in self.pools],
                "paused": {str(tid): saved for tid, (saved, _) in self.paused.items()},
                "best": self.best_state, "leaders": {str(tid): m for tid, m in self.leaders.items()}}

    def load_state_dict(self, d: dict, policy, device: dict) -> None:
        """Restores :meth:`state_dict` and :meth:`device_state` (the study's clock continues
        from the saved seconds)."""
        self.tick, self.used, self.exhausted = int(d["tick"]), int(d["used"]), bool(d["exhausted"])
        self.t0 = time.perf_counter() - float(d["seconds"])
        self.tick_seconds = [float(x) for x in d["tick_seconds"]]
        self.timing.update({k: float(v) for k, v in d["timing"].items()})
        self.compile_by = {k: float(v) for k, v in d["compile_by"].items()}
        self.setup_seconds = float(d["setup_seconds"])
        self.busy_ticks = [int(x) for x in d["busy_ticks"]]
        self.busy_ticks_waiting = [int(x) for x in d["busy_ticks_waiting"]]
        # snapshots from before compaction: every member ran at every tick
        self.busy_members = [int(x) for x in d.get("busy_members", [0, 0])]
        self.trials = [Trial.from_state(t) for t in d["trials"]]
        self.best = None if int(d["best"]) < 0 else self.trials[int(d["best"])]
        self.found_best_at = float(d["found_best_at"])
        self.proposed = collections.deque((np.asarray(u, np.float64), dict(cfg)) for u, cfg in d["proposed"])
        for p, s, dev in zip(self.pools, d["pools"], device["pools"]):
            p.load_state_dict(s)
            p.state = dev
        self.paused = {int(tid): (device["paused"][str(tid)], np.asarray(scores, np.float64)) for tid, scores in d["paused"]}
        self.best_state = device["best"]
        # snapshots from before the final re-evaluation kept no leaders: it then chooses among
        # the leaders that complete after the resume
        self.leaders = {int(tid): device["leaders"][str(tid)] for tid in d.get("leaders", [])}
        self.eval_call_seconds = [float(x) for x in d.get("eval_call_seconds", [])]
        if d.get("retrain_dropped", False):
            self.drop_retraining()
        _load_state(self.proposer, d["proposer"], self.trials)
        for o, s in zip(self.observers, d["observers"]):
            _load_state(o, s, self.trials)
        policy.load_state_dict(d["policy"])

    # -- results ---------------------------------------------------------------------------------
    def _timing(self) -> dict[str, float]:
        """Seconds by section; compiles taken out of the section they happened in."""
        out = {"setup": self.setup_seconds}
        for k, v in self.timing.items():
            out[k] = max(0.0, v - self.compile_by.get(k, 0.0))
        out["compile"] = sum(self.compile_by.get(k, 0.0) for k in self.timing)
        if self.store is not None:  # the store's share, split: SQLite transaction vs starting checkpoints
            out.update({f"store_{k}": v for k, v in self.store.seconds.items()})
        out.update({f"callback_{k}": v for k, v in self.callback_seconds.items()})
        return out

    def result(self) -> StudyResult:
        best_state = None if self.best_state is None else distributed.fetch(self.best_state)
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
            slot_utilization=utilization(self.busy_ticks, self.busy_ticks_waiting, self.busy_members),
            buckets=[dict(p.bucket, slots=p.slots, steps_per_phase=p.steps) for p in self.pools],
            proposer=self.proposer,
            objective=self.objective,
            selection=self.final_choice(),
        )


def check_proposals(proposer, u, k: int, d: int) -> np.ndarray:
    """``u`` as a ``(k, d)`` float array inside the unit cube, or ValueError naming the proposer."""
    name = type(proposer).__name__
    try:
        arr = np.asarray(u, np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"proposer {name}: ask({k}) returned {type(u).__name__}, not an array of shape ({k}, {d})") from None
    if arr.shape != (k, d):
        hint = " (raise ValueError from ask when there is nothing left to propose)" if arr.size == 0 else ""
        raise ValueError(f"proposer {name}: ask({k}) returned shape {arr.shape}; expected ({k}, {d}){hint}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"proposer {name}: ask({k}) returned non-finite values (row {int(np.flatnonzero(~np.isfinite(arr).all(1))[0])})")
    if arr.min() < 0.0 or arr.max() > 1.0:
        raise ValueError(f"proposer {name}: ask({k}) returned points outside the unit cube [0, 1] "
                         f"(min {arr.min():.4g}, max {arr.max():.4g})")
    return arr


def utilization(busy: list[int], busy_waiting: list[int], busy_members: list[int] | None = None) -> dict[str, float]:
    """Occupied slot-ticks / slot-ticks, overall and over ticks at which work was waiting, and
    (``"compute"``) occupied member-phases / member-phases the device ran: with compaction an
    idle slot costs nothing, so this is what the study's compute was spent on."""
    out = {"while_queued": busy_waiting[0] / max(busy_waiting[1], 1), "overall": busy[0] / max(busy[1], 1)}
    if busy_members is not None:
        out["compute"] = busy_members[0] / max(busy_members[1], 1)
    return out


def _state_of(obj) -> Any:
    return obj.state_dict() if hasattr(obj, "state_dict") else None


def _load_state(obj, state, trials: list[Trial]) -> None:
    """Restores a proposer's state; one without ``state_dict`` (a user's own) is told every
    observation again instead (exact only if its proposals depend on nothing else)."""
    if hasattr(obj, "load_state_dict") and state is not None:
        obj.load_state_dict(state)
        return
    import warnings

    warnings.warn(f"{type(obj).__name__} has no state_dict/load_state_dict: it is told the study's observations "
                  "again, and its proposals after resuming may differ from an uninterrupted study's", stacklevel=3)
    for t in trials:
        for score, steps in zip(t.curve, t.curve_steps):
            if np.isfinite(score):
                obj.tell(t.u[None], np.asarray([score]), np.asarray([steps]))
