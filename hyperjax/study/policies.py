"""Policies: what a study does with its slots. Each reads the study and returns decisions::

    policy.fill(study) -> [Decision]              # START / QUEUE / RESUME trials into free slots
    policy.waiting(study) -> bool                 # is work still to come (for slot utilisation)
    policy.decide(study, arrivals) -> [Decision]  # one per arrival: CONTINUE/EVICT/FAIL/PAUSE/COMPLETE
    policy.after_tick(study) -> [Decision]        # e.g. evict a finished rung's losers, PBT's EXPLOIT
    policy.state_dict() / policy.load_state_dict(d)

A policy never changes the study: the engine applies what it returns (``Study.apply``), and a
policy's own state (records, brackets, keys, generators) is plain data it can save and load. So
a policy runs on fabricated arrivals with no agent, and a resumed study continues exactly.
The decisions themselves are the pure functions of ``hyperjax.schedulers``.
"""

from __future__ import annotations

import collections
import functools
import math
import time

import jax
import jax.numpy as jnp
import numpy as np

from hyperjax.rng import generator_state, key_state, load_generator, load_key
from hyperjax.schedulers.pbt import pbt_exploit
from hyperjax.schedulers.specs import PB2, PBT, HyperTrick, NoStopping
from hyperjax.space import Choice, Int
from hyperjax.study.buckets import bucket_of
from hyperjax.study.decisions import Action, Arrival, Decision


def _cpu(x):
    # Scheduler rules are tiny: run them on the host CPU, not on an accelerator, so a decision
    # costs no device round-trip.
    return jax.device_put(x, jax.local_devices(backend="cpu")[0])  # this process's (several processes)


def _outcome(a: Arrival, kept: bool, num_phases: int, reason: str) -> Decision:
    """The decision for an arrival the rule kept or not: a failed trial fails, and a trial that
    has run every phase completes whatever the rule says (it has spent its budget; evicting it
    there would only throw away its final evaluation)."""
    if a.failed:
        return Decision(Action.FAIL, a.trial, a.pool, a.slot, reason="non-finite values")
    if a.phases >= num_phases:
        return Decision(Action.COMPLETE, a.trial, a.pool, a.slot)
    if not kept:
        return Decision(Action.EVICT, a.trial, a.pool, a.slot, reason=reason)
    return Decision(Action.CONTINUE, a.trial, a.pool, a.slot)


@functools.lru_cache(maxsize=64)
def _rule(spec, num_phases: int, capacity: int):
    """A spec's rule and its jitted ``decide``, shared by every study with the same settings (a
    second study of the same shape compiles nothing). HyperTrick's N is a leaf of the state
    (``retarget``), not part of the compiled rule."""
    scheduler = spec.build(capacity, num_phases, capacity)
    return scheduler, jax.jit(scheduler.decide)


def survival(trials, phases: int, prior: float, min_decided: int) -> np.ndarray:
    """``s (phases + 1,)``: ``s[j]`` is the observed share of trials that went on at phase
    boundary ``j`` (1 <= j < phases) among those decided there (a trial still running went on
    at its last boundary; an evicted one did not; failed and stopped ones say nothing about the
    rule); ``prior`` where fewer than ``min_decided`` were decided. ``s[0] = 1`` (every trial
    runs its first phase), ``s[phases] = 0``."""
    went, decided = np.zeros(phases + 1), np.zeros(phases + 1)
    for t in trials:
        k = t.phases - t.start_phase
        if k < 1 or t.origin == "pbt":
            continue
        went[1:k] += 1
        decided[1:k] += 1
        if k < phases and t.status in ("running", "evicted"):
            decided[k] += 1
            went[k] += t.status == "running"
    s = np.where(decided >= min_decided, went / np.maximum(decided, 1), prior)
    s[0], s[phases] = 1.0, 0.0
    return s


def remaining_phases(s: np.ndarray, k: int) -> float:
    """Expected phases still to run for a trial that has run ``k`` phases and goes on: the next
    one, then each further one while it goes on (``s`` from :func:`survival`)."""
    phases = len(s) - 1
    total, alive = 0.0, 1.0
    for m in range(k, phases):
        total += alive
        alive *= s[m + 1]
    return total


class AsyncPolicy:
    """HyperTrick, ASHA, median stopping or none: decide at every boundary, refill at once.

    A new trial starts only if the env steps used, plus those every running trial could still
    use, plus its own full run fit the budget (so the budget is never exceeded and every trial
    started can complete); after the first fill, only while the remaining budget could keep
    the smallest population the pools run busy for a whole trial (every slot without
    compaction, half or a quarter of them with it; this bounds the tail in which slots drain to
    ``P`` ticks); and, with ``max_seconds``, if it is expected to finish in time.

    Simultaneous arrivals are fed to the rule in an order drawn from ``rng``.
    """

    def __init__(self, study, spec, max_trials: int | None, rng: np.random.Generator):
        self.spec = spec
        self.rng = rng
        self.num_phases = p = study.num_phases
        nominal = max(pool.steps for pool in study.pools) * study.seeds
        smallest = min(pool.steps for pool in study.pools) * study.seeds
        self.user_max_trials = max_trials
        self.full_tick = sum(pool.slots * study.seeds * pool.steps for pool in study.pools)  # env steps, all busy
        # env steps of a tick at the smallest population the pools run (compaction: idle slots
        # beyond it cost nothing)
        self.tail_tick = sum(min(pool.compact_sizes, default=pool.size) * pool.steps for pool in study.pools)
        self.design_trials = 0
        self.time_cap = 0  # N the time affords (max_seconds), once measured
        if max_trials is None and isinstance(spec, HyperTrick):
            # HyperTrick's N: the trials the budget affords at the expected N(1-r)^P survival,
            # revised at every tick from the survival observed (and from the measured tick time
            # if max_seconds is set); never above this
            max_trials = max(1, int((study.budget - study.reserve_steps()) // (nominal * spec.expected_phases(p))))
            self.design_trials = max_trials
        self.max_trials = max_trials
        # Every trial runs at least one phase, so no phase records more scores than this; the
        # record starts small and doubles as needed (its size is the cost of every decision).
        bound = int(study.budget // smallest)
        self.bound = max(1, min(bound, max_trials) if max_trials else bound)
        self.capacity = min(self.bound, max(1024, 4 * study.num_slots))
        self.state = None
        self._build()

    def _build(self) -> None:
        """(Re)builds the rule for the current N and capacity, keeping the record so far."""
        n = self.max_trials or self.capacity
        self.scheduler, self._decide = _rule(self.spec, self.num_phases, self.capacity)
        fresh = self.scheduler.retarget(self.scheduler.init(), n)
        if self.state is not None:
            old = np.asarray(self.state.scores)
            scores = np.asarray(fresh.scores).copy()
            scores[:, : old.shape[1]] = old
            fresh = fresh.replace(scores=jnp.asarray(scores), count=jnp.asarray(self.state.count))
        self.state = _cpu(fresh)

    def _revise_n(self, study) -> None:
        """Without max_trials, HyperTrick's N follows what the study will start: the trials
        started so far plus those the rest of the budget affords (less what the running trials
        are expected to go on using) at the survival observed so far, and with ``max_seconds``
        no more than the rest of the time affords the same way (the ticks left at the median
        tick time so far, each worth a tick with every slot busy). The rule lets the first
        ``N (1 - sqrt r)(1 - r)^p`` arrivals at phase ``p`` through, which assumes N trials
        arrive: with N from the budget at the design survival, correlated curves and the
        engine's start rules let fewer start, most arrivals then passed unconditionally, trials
        ran longer and fewer still could start (alpha 0.60-0.73 against E[alpha] = 0.38 in
        simulation). Revised before every fill, N and the cost per trial agree. The time's share
        is revised every tick too: fixed once after two ticks, from tick times that include
        compiles and at the design survival, it capped N at what ~60% of the time affords (a
        300-s Acrobot study started its last trial at 194 s and ended at 216 s). The same
        compiled rule (N is a leaf of its state); deterministic given the trials and the
        recorded tick times."""
        if not isinstance(self.spec, HyperTrick) or self.user_max_trials is not None:
            return
        p = self.num_phases
        s = survival(study.trials, p, 1 - self.spec.r, min_decided=max(4, study.num_slots // 2))
        cost = {pool.index: study.seeds * pool.steps for pool in study.pools}
        nominal = max(cost.values())
        running = [t for t in study.trials if t.status == "running"]
        inflight = sum(cost[t.bucket] * remaining_phases(s, t.phases - t.start_phase) for t in running)
        per_trial = nominal * remaining_phases(s, 0)
        started = len(study.trials)

        def afforded(steps_left: float) -> int:  # trials started + those steps_left pays for
            return started + max(0, int((steps_left - inflight) // per_trial)) if per_trial > 0 else started

        if study.max_seconds is not None and len(study.tick_seconds) >= 2:
            # the first tick compiles: median of the rest (the later slow ones are outvoted)
            est = float(np.median(study.tick_seconds[1:]))
            ticks_left = max(0.0, (study.deadline() - study.now()) / max(est, 1e-9))
            self.time_cap = max(1, afforded(ticks_left * self.full_tick))
        n = afforded(study.budget - study.reserve_steps() - study.used)
        n = int(min(max(n, started, 1), self.design_trials, self.time_cap or self.design_trials))
        if n != self.max_trials:
            self.max_trials = n
            self.state = _cpu(self.scheduler.retarget(self.state, n))

    def can_start(self, study, pool, pending: int = 0, pending_steps: int = 0) -> bool:
        """Whether one more trial may start in ``pool``, ``pending`` trials (``pending_steps``
        env steps of budget) already decided this fill."""
        if self.max_trials is not None and len(study.trials) + pending >= self.max_trials:
            return False
        if study.exhausted:
            return False
        cost = study.num_phases * study.seeds * pool.steps
        budget = study.budget - study.reserve_steps()  # less what retraining the leaders will use
        if study.used + study.committed() + pending_steps + cost > budget:
            return False
        # After the first fill, a trial starts only while the remaining budget could still keep
        # the smallest population the pools run busy until it ends. Otherwise late starts
        # trickle in one at a time as evictions free budget, each dragging the study on for P
        # more ticks of mostly idle members (which cost as much as busy ones: masks, not
        # shapes). With compaction that is a half or a quarter of the slots: every slot, as
        # before compaction, left a fifth of the quick start's budget unspent.
        if study.tick > 0 and budget - study.used < study.num_phases * self.tail_tick:
            return False
        return study.time_fits(study.num_phases)

    def fill(self, study) -> list[Decision]:
        if study.tick >= 1:
            self._revise_n(study)
        out: list[Decision] = []
        steps = 0
        for pool in study.pools:
            for slot in np.flatnonzero(pool.trial < 0):
                if not self.can_start(study, pool, len(out), steps):
                    break
                item = study.next_config(pool.index)
                if item is None:
                    break
                out.append(Decision(Action.START, len(study.trials) + len(out), pool.index, int(slot), *item))
                steps += study.num_phases * study.seeds * pool.steps
        return out

    def waiting(self, study) -> bool:
        return any(self.can_start(study, pool) for pool in study.pools)

    def decide(self, study, arrivals: list[Arrival]) -> list[Decision]:
        n = len(arrivals)
        w = max(study.num_slots, n)
        order = self.rng.permutation(n)  # simultaneous arrivals, in random order
        phase = np.zeros(w, np.int32)
        score = np.zeros(w, np.float32)
        arrived = np.zeros(w, bool)
        for j, i in enumerate(order):
            a = arrivals[i]
            phase[j], score[j], arrived[j] = a.phases - 1, a.score, True
        need = int(np.max(np.asarray(self.state.count))) + n
        if need > self.capacity:
            while self.capacity < need:
                self.capacity *= 2
            self._build()
        self.state, keep = self._decide(self.state, _cpu(phase), _cpu(score), _cpu(arrived))
        keep = np.asarray(keep)
        out: list[Decision] = [None] * n  # type: ignore[list-item]
        for j, i in enumerate(order):
            out[i] = _outcome(arrivals[i], bool(keep[j]), self.num_phases, self.spec.name)
        return out

    def after_tick(self, study) -> list[Decision]:
        return []

    def state_dict(self) -> dict:
        return {"max_trials": self.max_trials, "capacity": self.capacity, "rng": generator_state(self.rng),
                "scores": np.asarray(self.state.scores), "count": np.asarray(self.state.count),
                "time_cap": self.time_cap}

    def load_state_dict(self, d: dict) -> None:
        self.max_trials = None if d["max_trials"] is None else int(d["max_trials"])
        self.capacity = int(d["capacity"])
        self.time_cap = int(d.get("time_cap", 0))
        self.rng = load_generator(d["rng"])
        self.state = None
        self._build()
        self.state = _cpu(self.state.replace(scores=jnp.asarray(d["scores"], jnp.float32),
                                             count=jnp.asarray(d["count"], jnp.int32)))


MAX_PLANNED_TRIALS_PER_SLOT = 1000


class _Bracket:
    def __init__(self, rungs: list[int], n0: int, eta: float):
        self.rungs = rungs
        self.sizes = [max(1, int(math.floor(n0 * eta ** (-i)))) for i in range(len(rungs))]
        self.rung = 0
        self.members: list[int] = []  # trial ids of the current rung
        self.pending: collections.deque = collections.deque()  # trial ids waiting for a slot
        self.reported: dict[int, float] = {}
        self.active = False
        self.done = False

    def cost(self) -> int:
        """Member-phases the bracket uses."""
        prev, total = 0, 0
        for n, r in zip(self.sizes, self.rungs):
            total += n * (r - prev)
            prev = r
        return total

    def state_dict(self) -> dict:
        return {"sizes": list(self.sizes), "rung": self.rung, "members": list(self.members),
                "pending": list(self.pending), "reported": [[k, v] for k, v in self.reported.items()],
                "active": self.active, "done": self.done}

    def load_state_dict(self, d: dict) -> None:
        self.sizes = [int(s) for s in d["sizes"]]
        self.rung = int(d["rung"])
        self.members = [int(t) for t in d["members"]]
        self.pending = collections.deque(int(t) for t in d["pending"])
        self.reported = {int(k): float(v) for k, v in d["reported"]}
        self.active, self.done = bool(d["active"]), bool(d["done"])


def plan_brackets(spec, num_phases: int, nominal: int, budget: int, num_slots: int,
                  max_trials: int | None) -> list[_Bracket]:
    """The brackets of successive halving / Hyperband, scaled so the whole plan fits ``budget``
    (``nominal``: env steps of one phase of one trial, all seeds). Needs no population, so
    ``tune`` checks the plan before anything is built or compiled.

    Raises:
      ValueError: the budget would start more trials than a study could mean to run.
    """
    rungs = spec.brackets(num_phases)
    sizes = spec.bracket_sizes(num_phases)
    budget_phases = budget // nominal

    def plan(scale):
        return [_Bracket(r, max(1, int(round(n * scale))), spec.eta) for r, n in zip(rungs, sizes)]

    lo, hi = 0.0, 1.0
    while sum(b.cost() for b in plan(hi)) <= budget_phases and hi < 1e6:
        hi *= 2
    for _ in range(60):
        mid = (lo + hi) / 2
        if sum(b.cost() for b in plan(mid)) <= budget_phases:
            lo = mid
        else:
            hi = mid
    brackets = plan(lo)
    # Too small a budget even for one trial per bracket: keep the brackets that fit.
    while brackets and sum(b.cost() for b in brackets) > budget_phases:
        brackets.pop(0)
    planned = sum(b.sizes[0] for b in brackets)
    if max_trials is None and planned > MAX_PLANNED_TRIALS_PER_SLOT * num_slots:
        raise ValueError(
            f"tune: {spec.name} plans its brackets from the budget, and budget={budget} would start "
            f"{planned} trials; give a budget the study can spend (or max_trials) - with max_seconds, "
            "a budget of about seconds x measured env steps/s"
        )
    if max_trials is not None:
        kept, total = [], 0
        for b in brackets:
            if total + b.sizes[0] <= max_trials:
                kept.append(b)
                total += b.sizes[0]
        brackets = kept
    return brackets


class BracketPolicy:
    """Synchronous successive halving / Hyperband. Each bracket's rung ``i`` runs its trials to
    ``rungs[i]`` phases; a trial reaching the rung is paused (its members kept on the device)
    until every trial of the rung has reported; then the top ``1/eta`` resume and the rest are
    evicted. Brackets start one after another as free slots appear and run side by side, so
    slots idle only while every started bracket waits on its stragglers. Bracket sizes are
    scaled so the whole plan fits the budget."""

    pauses = True  # trials leave their slots and come back (the study precompiles put)

    def __init__(self, study, spec, max_trials: int | None, rng: np.random.Generator | None = None):
        self.eta = spec.eta
        self.name = spec.name
        nominal = max(pool.steps for pool in study.pools) * study.seeds
        brackets = plan_brackets(spec, study.num_phases, nominal, study.budget, study.num_slots, max_trials)
        self.brackets = brackets
        self.owner: dict[int, int] = {}  # trial id -> bracket index
        self.pool_of: dict[int, int] = {}  # trial id -> pool (bucket) index

    def _activate(self, study, bi: int, next_id: int) -> list[Decision]:
        """QUEUE decisions for a bracket's first rung (ids from ``next_id``)."""
        b = self.brackets[bi]
        b.active = True
        out = []
        # fewer if the space is exhausted: the bracket runs with what there is
        for row, cfg in study.take_proposals(b.sizes[0]):
            pool = bucket_of(cfg, study.structural, study.buckets)
            tid = next_id + len(out)
            out.append(Decision(Action.QUEUE, tid, pool, -1, row, cfg))
            b.members.append(tid)
            b.pending.append(tid)
            self.owner[tid] = bi
            self.pool_of[tid] = pool
        if not b.members:
            b.done = True
        return out

    def fill(self, study) -> list[Decision]:
        out: list[Decision] = []
        queued = 0
        for pool in study.pools:
            free = list(np.flatnonzero(pool.trial < 0))
            while free:
                placed = False
                for b in self.brackets:
                    if not b.active or b.done:
                        continue
                    for tid in list(b.pending):
                        if not free:
                            break
                        if self.pool_of[tid] != pool.index:
                            continue
                        phases = study.trials[tid].phases if tid < len(study.trials) else 0
                        if not study.time_fits(b.rungs[b.rung] - phases):
                            continue
                        b.pending.remove(tid)
                        out.append(Decision(Action.RESUME, tid, pool.index, int(free.pop(0))))
                        placed = True
                if free:
                    nxt = next((i for i, b in enumerate(self.brackets) if not b.active), None)
                    if nxt is None or not study.time_fits(self.brackets[nxt].rungs[0]):
                        break
                    new = self._activate(study, nxt, len(study.trials) + queued)
                    queued += len(new)
                    out.extend(new)
                    placed = True
                if not placed:
                    break
        # QUEUE decisions first: a trial must exist before it takes a slot.
        return [d for d in out if d.action is Action.QUEUE] + [d for d in out if d.action is not Action.QUEUE]

    def waiting(self, study) -> bool:
        return any(not b.done for b in self.brackets) and any(
            (not b.active) or b.pending or b.rung < len(b.rungs) - 1 for b in self.brackets if not b.done
        )

    def decide(self, study, arrivals: list[Arrival]) -> list[Decision]:
        out = []
        for a in arrivals:
            b = self.brackets[self.owner[a.trial]]
            if a.failed:
                b.reported[a.trial] = -math.inf
                out.append(Decision(Action.FAIL, a.trial, a.pool, a.slot, reason="non-finite values"))
            elif a.phases >= b.rungs[b.rung]:
                b.reported[a.trial] = a.score
                last = b.rung == len(b.rungs) - 1
                out.append(Decision(Action.COMPLETE if last else Action.PAUSE, a.trial, a.pool, a.slot))
            else:
                out.append(Decision(Action.CONTINUE, a.trial, a.pool, a.slot))
        return out

    def after_tick(self, study) -> list[Decision]:
        out = []
        for b in self.brackets:
            if not b.active or b.done or len(b.reported) < len(b.members):
                continue
            if b.rung == len(b.rungs) - 1:
                b.done = True
                continue
            # promote the top of the rung; failed (-inf) trials never are
            ranked = sorted((tid for tid in b.members if np.isfinite(b.reported[tid])),
                            key=lambda tid: -b.reported[tid])
            top = ranked[: b.sizes[b.rung + 1]]
            for tid in b.members:
                if tid not in top and study.trials[tid].status == "paused":
                    out.append(Decision(Action.EVICT, tid, reason=self.name))
            b.rung += 1
            b.members = list(top)
            b.pending.extend(top)
            b.reported = {}
            if not top:
                b.done = True
        return out

    def state_dict(self) -> dict:
        return {"brackets": [b.state_dict() for b in self.brackets],
                "owner": [[k, v] for k, v in self.owner.items()], "pool_of": [[k, v] for k, v in self.pool_of.items()]}

    def load_state_dict(self, d: dict) -> None:
        if len(d["brackets"]) != len(self.brackets):
            raise ValueError(f"{self.name}: saved state has {len(d['brackets'])} brackets, this plan {len(self.brackets)}")
        for b, s in zip(self.brackets, d["brackets"]):
            b.load_state_dict(s)
        self.owner = {int(k): int(v) for k, v in d["owner"]}
        self.pool_of = {int(k): int(v) for k, v in d["pool_of"]}


def project(dim, values: np.ndarray, previous: np.ndarray) -> np.ndarray:
    """Perturbed values back onto a search-space dimension: clipped to its range, snapped to its
    grid; an ordered numeric choice moves at least one step the way the value moved."""
    values = np.asarray(values, np.float64)
    if isinstance(dim, Choice):
        choices = np.asarray(dim.choices, np.float64)
        idx = np.abs(values[:, None] - choices[None]).argmin(1)
        prev = np.abs(np.asarray(previous, np.float64)[:, None] - choices[None]).argmin(1)
        step = np.sign(values - previous).astype(int)
        idx = np.where((idx == prev) & (step != 0), np.clip(prev + step, 0, len(choices) - 1), idx)
        return choices[idx]
    lo, hi = float(dim.low), float(dim.high)
    out = np.clip(values, lo, hi)
    if isinstance(dim, Int):
        out = np.clip(dim.low + np.round((out - dim.low) / dim.q) * dim.q, lo, hi)
    return out


class PBTPolicy:
    """Population-based training: every slot runs for the whole study; every ``interval``
    phases the bottom quantile of each bucket copies a top member (params, optimizer and env
    state: one gather) and explores. Each copy starts a child trial whose ``parent`` is the
    trial it copied, so lineages can be followed. A failed member is replaced the same way at
    once, not at the next interval."""

    def __init__(self, study, spec: PBT, max_trials: int | None, rng: np.random.Generator | None = None, model=None):
        self.spec = spec
        self.started = False
        self.tuned = [n for n in study.space.names if n not in study.structural]
        self.key = jax.random.fold_in(study.key, 0xB7)
        # PB2: the BNN whose upper confidence bound picks the new values (see schedulers.PB2)
        self.model = model if isinstance(spec, PB2) else None

    def fill(self, study) -> list[Decision]:
        if self.started:
            return []
        self.started = True
        out: list[Decision] = []
        for pool in study.pools:
            for slot in range(pool.slots):
                item = study.next_config(pool.index)
                if item is None:
                    break
                out.append(Decision(Action.START, len(study.trials) + len(out), pool.index, slot, *item))
        return out

    def waiting(self, study) -> bool:
        return False

    def decide(self, study, arrivals: list[Arrival]) -> list[Decision]:
        # The population is evaluated at the end of its phases, or earlier if the next phase
        # would not end within max_seconds: PBT's answer is whatever the population holds then.
        last = not study.time_fits(1)
        return [Decision(Action.COMPLETE, a.trial, a.pool, a.slot) if last and not a.failed
                else _outcome(a, True, study.num_phases, "") for a in arrivals]

    def after_tick(self, study) -> list[Decision]:
        exploit = study.tick % self.spec.interval == 0
        out: list[Decision] = []
        for pool in study.pools:
            running = pool.trial >= 0
            # a slot freed this tick by a failure is still "taking part": it gets replaced
            failed_slots = np.zeros(pool.slots, bool)
            failed_slots[list(pool.just_failed)] = True
            failed_slots &= ~running
            if not running.any() or (not exploit and not failed_slots.any()):
                continue
            active = running | failed_slots
            scores = np.full(pool.slots, -np.inf, np.float32)
            for s in np.flatnonzero(running):
                v = study.trials[pool.trial[s]].last_score
                scores[s] = v if np.isfinite(v) else -np.inf
            self.key, k_exp, k_fix = jax.random.split(self.key, 3)
            hp = {n: _cpu(jnp.asarray(pool.hp[n])) for n in self.tuned}
            fresh = self._fresh(study, pool.slots)
            source, new_hp, replaced = pbt_exploit(
                k_exp, _cpu(scores), hp, self.spec.quantile, self.spec.perturb, self.spec.resample_prob,
                {n: _cpu(jnp.asarray(fresh[n], jnp.float32)) for n in self.tuned} if fresh else None, _cpu(active),
            )
            source, replaced = np.asarray(source).copy(), np.asarray(replaced).copy()
            new_hp = {n: np.asarray(v).copy() for n, v in new_hp.items()}
            if not exploit:  # only the failed are replaced between intervals
                keep = ~failed_slots
                replaced = replaced & failed_slots
                source = np.where(keep, np.arange(pool.slots), source)
            # failures beyond the bottom quantile copy a random running member, unperturbed
            top = np.flatnonzero(running)
            rng = np.random.default_rng(np.asarray(jax.random.key_data(k_fix))[-1])
            for s in np.flatnonzero(failed_slots & ~replaced):
                source[s] = rng.choice(top)
                replaced[s] = True
                for n in self.tuned:
                    new_hp[n][s] = pool.hp[n][source[s]]
            guided = self._guided(study, pool, source, np.flatnonzero(replaced)) if self.model is not None else None
            for j, s in enumerate(np.flatnonzero(replaced)):
                s = int(s)
                parent = study.trials[pool.trial[source[s]]]
                cfg = {k: v for k, v in parent.config.items() if k in study.space.names}
                if guided is not None:
                    cfg.update({n: guided[j][n] for n in self.tuned})
                else:
                    for n in self.tuned:
                        prev = np.asarray([pool.hp[n][int(source[s])]])
                        cfg[n] = float(project(study.space.dims[n], new_hp[n][s : s + 1], prev)[0])
                        if isinstance(study.space.dims[n], Int):
                            cfg[n] = int(cfg[n])
                u = study.space.encode({k: [v] for k, v in cfg.items()})[0]
                out.append(Decision(Action.EXPLOIT, len(study.trials) + len(out), pool.index, s, u, cfg,
                                    source=parent.id, reason="pbt"))
        return out

    def _guided(self, study, pool, source: np.ndarray, slots: np.ndarray) -> list[dict] | None:
        """PB2's new values for the copying ``slots`` (the model's picks near each source's
        values, judged at the env steps of the next exploit), or None before its posterior."""
        if not len(slots):
            return None
        parents = [study.trials[pool.trial[int(source[s])]] for s in slots]
        free = np.asarray([n in self.tuned for n in study.space.names])
        budget = float((max(t.phases for t in parents) + self.spec.interval) * pool.steps)
        picks = self.model.explore_near(np.stack([t.u for t in parents]), budget, free, self.spec.scale,
                                        self.spec.candidates, self.spec.beta)
        if picks is None:
            return None
        return study.space.configs(picks)

    def _fresh(self, study, n) -> dict[str, np.ndarray] | None:
        if self.spec.resample_prob <= 0:
            return None
        rows = study.space.sample(jax.random.fold_in(self.key, study.tick), n)
        dec = study.space.decode(rows)
        return {name: np.asarray(dec[name], np.float64) for name in self.tuned}

    def state_dict(self) -> dict:
        return {"started": self.started, "key": key_state(self.key)}

    def load_state_dict(self, d: dict) -> None:
        self.started = bool(d["started"])
        self.key = load_key(d["key"])


class ExtrapolationPolicy(AsyncPolicy):
    """Learning-curve extrapolation with the BNN (see ``schedulers.Extrapolate``): refill as the
    asynchronous rules do; evict where P(score at the full budget > incumbent) < threshold.
    The incumbent is the best full-budget training score of a completed trial, in the same
    units as the observations the surrogate is fit to.

    ``model`` is a ``BNNProposer`` told every observation of the study (the study's proposer,
    or a predictor the study tells as an observer): the policy only reads its predictions.
    """

    def __init__(self, study, spec, max_trials: int | None, rng: np.random.Generator, model=None, target=None):
        super().__init__(study, NoStopping(), max_trials, rng)
        if model is None:
            raise ValueError("extrapolate: needs a BNN model told the study's observations")
        self.extrapolate = spec
        self.model = model
        self.target = float(target if target is not None else study.num_phases * max(p.steps for p in study.pools))
        self.incumbent = -np.inf
        self.predict_seconds = 0.0

    def decide(self, study, arrivals: list[Arrival]) -> list[Decision]:
        out = super().decide(study, arrivals)  # "none" rule: fail / complete / continue
        for d, a in zip(out, arrivals):
            if d.action is Action.COMPLETE and np.isfinite(a.score):
                self.incumbent = max(self.incumbent, float(a.score))
        check = [i for i, d in enumerate(out)
                 if d.action is Action.CONTINUE and arrivals[i].phases >= self.extrapolate.min_phases]
        if not check or not np.isfinite(self.incumbent):
            return out
        t0 = time.perf_counter()
        post = self.model.fit()
        if post is not None:
            u = np.stack([study.trials[arrivals[i].trial].u for i in check])
            means, _ = self.model.draws(u, self.target)  # (S, n) posterior draws, score units
            p_beat = (means > self.incumbent).mean(0)
            for j, i in enumerate(check):
                if p_beat[j] < self.extrapolate.threshold:
                    a = arrivals[i]
                    out[i] = Decision(Action.EVICT, a.trial, a.pool, a.slot, reason=self.extrapolate.name)
        self.predict_seconds += time.perf_counter() - t0
        return out

    def state_dict(self) -> dict:
        return {**super().state_dict(), "incumbent": float(self.incumbent), "predict_seconds": self.predict_seconds}

    def load_state_dict(self, d: dict) -> None:
        super().load_state_dict(d)
        self.incumbent = float(d["incumbent"])
        self.predict_seconds = float(d["predict_seconds"])


POLICIES = {"asynchronous": AsyncPolicy, "brackets": BracketPolicy, "pbt": PBTPolicy, "extrapolate": ExtrapolationPolicy}
