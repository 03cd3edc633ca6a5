"""Choosing the best trial at the end of a study: the leaders re-evaluated on fresh episodes,
and their configurations retrained on fresh seeds.

A study scores every trial that completes by ``eval_episodes`` greedy episodes per seed, and the
highest of several hundred such scores is biased upwards (the winner's curse): measured on
Acrobot-v1 (300-s studies, ~570 trials, 16 episodes each), the study's best scored -72.0 while
its own trained policy scored -80.7 on 64 fresh episodes. So when the study ends, the
``reevaluate`` leading trials (by the study's objective) are evaluated again on
``reevaluate_episodes`` episodes per seed that no trial was scored on, all of them on the same
episodes (common random numbers), and the best is the leader that scores highest there. The
first evaluation only chooses who is re-evaluated; the choice itself is made on episodes it
did not select on.

A re-evaluated policy still comes from one training seed: it says how good that policy is, not
how its configuration fares on other seeds (on Acrobot-v1 a leader whose policy re-evaluated at
-76.9 failed to learn on 3 of 5 fresh seeds). With ``reevaluate_seeds = R`` the leaders'
configurations are also trained from scratch on ``R`` fresh seeds each (the whole trial length,
copies of them filling a pool's slots like the re-evaluation's) and evaluated on the fresh
episodes, and the best is the leader whose retrained runs score highest (a run that diverges
ranks its configuration last): the configuration is chosen on seeds it was not selected on.

The pure parts live here (which trials lead, how copies of them fill a pool's slots, the keys
of the fresh episodes and seeds, what the re-evaluation picks); the engine runs them.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from hyperjax.study.records import Trial, final_objective

# Key streams apart from training (fold_in of the seed index) and the study's own evaluations
# (``train.EVAL_STREAM``): the fresh episodes of the final re-evaluation, and the fresh seeds
# the leaders' configurations are retrained on.
REEVAL_STREAM = 0x5E1E_C7ED
RESEED_STREAM = 0x5E1E_5EED

# Objectives the re-evaluation can rank: "auc" ranks by training returns, which a greedy
# re-evaluation does not measure.
REEVALUATED = ("final", "lcb")

# What ``tune`` does when not told (``reevaluate="auto"``, ``reevaluate_seeds="auto"``): the
# DEFAULT_LEADERS leaders' configurations retrained on DEFAULT_RUNS fresh runs each, wherever
# that applies and costs at most DEFAULT_SHARE of the study (its budget at setup; with
# ``max_seconds``, its time, once the ticks have been timed). Measured in the race
# (``benchmarks/README.md``).
DEFAULT_LEADERS = 8
DEFAULT_RUNS = 2
DEFAULT_SHARE = 0.25
AUTO = "auto"


def leaders(trials: list[Trial], objective: str, k: int) -> list[int]:
    """Ids of the ``k`` evaluated trials with the highest :func:`final_objective`, best first
    (ties: the earlier trial first); failed, evicted and unevaluated trials never lead."""
    ranked = [(final_objective(objective, t), t.id) for t in trials if t.scored]
    ranked = [(v, i) for v, i in ranked if math.isfinite(v)]
    ranked.sort(key=lambda x: (-x[0], x[1]))
    return [i for _, i in ranked[:k]]


def rounds(episodes: int, eval_episodes: int) -> int:
    """Evaluations of ``eval_episodes`` episodes each that give at least ``episodes``: the
    compiled evaluation runs ``eval_episodes`` at a time, so the re-evaluation reuses it."""
    return max(1, -(-int(episodes) // int(eval_episodes)))


def packing(ids: list[int], num_rounds: int, slots: int) -> list[list[tuple[int, int]]]:
    """The evaluation calls of one pool: each a list of up to ``slots`` copies ``(trial id,
    round)``, copy ``j`` of a call placed in slot ``j``. Every leader appears once per round, so
    ``len(ids) * num_rounds`` copies in ``ceil(len(ids) * num_rounds / slots)`` calls."""
    copies = [(tid, r) for r in range(num_rounds) for tid in ids]
    return [copies[i: i + slots] for i in range(0, len(copies), slots)]


def episode_key_data(key: jax.Array, num_rounds: int, seeds: int, stream: int = REEVAL_STREAM) -> np.ndarray:
    """The raw data ``(num_rounds, seeds, ...)`` of the keys of the fresh episodes (``stream =
    REEVAL_STREAM``) or of the fresh training seeds (``RESEED_STREAM``): round ``r`` of seed
    ``s`` is ``fold_in(fold_in(fold_in(key, stream), r), s)``. Computed when the study sets up
    (it compiles a small program), kept on the host."""
    base = jax.random.fold_in(key, stream)
    per_round = jax.vmap(lambda r: jax.vmap(lambda s: jax.random.fold_in(jax.random.fold_in(base, r), s))(
        jnp.arange(seeds, dtype=jnp.uint32)))(jnp.arange(num_rounds, dtype=jnp.uint32))
    return np.asarray(jax.random.key_data(per_round))


def episode_keys(data: np.ndarray, round_of_slot: np.ndarray, impl) -> jax.Array:
    """Evaluation keys ``(slots * seeds,)`` in member order (slot-major) from
    :func:`episode_key_data`: member ``(j, s)`` evaluates seed ``s`` on round
    ``round_of_slot[j]``'s episodes, the same for every leader. Gathered on the host and
    wrapped (no program runs, so nothing compiles when the study ends)."""
    seeds = data.shape[1]
    r = np.repeat(np.asarray(round_of_slot, np.int64), seeds)
    s = np.tile(np.arange(seeds), len(round_of_slot))
    return jax.random.wrap_key_data(data[r, s], impl=impl)


def _objective_of(objective: str, returns, non_finite: float) -> float:
    """The mean of ``returns`` (any shape; ``"final"``) or their mean less their standard
    deviation, ddof 1 (``"lcb"``, with two or more); ``non_finite`` if any is not finite."""
    v = np.asarray(returns, np.float64).ravel()
    if not np.all(np.isfinite(v)):
        return non_finite
    if objective == "lcb" and v.size > 1:
        return float(v.mean() - v.std(ddof=1))
    return float(v.mean())


def reevaluated_objective(objective: str, seed_means: np.ndarray) -> float:
    """The objective of a re-evaluated trial from its per-seed mean returns ``(S,)``
    (:func:`_objective_of`); NaN if any is not finite."""
    return _objective_of(objective, seed_means, math.nan)


def retrained_objective(objective: str, returns: np.ndarray) -> float:
    """The objective of a leader's configuration from its retrained runs' mean returns
    ``(R, S)`` (run, seed; :func:`_objective_of` of all of them); ``-inf`` if any run diverged
    (non-finite): a configuration that fails on a fresh seed ranks last."""
    return _objective_of(objective, returns, -math.inf)


def retrain_steps(leaders: int, runs: int, seeds: int, num_phases: int, phase_steps: int) -> int:
    """Env steps of retraining ``leaders`` configurations on ``runs`` fresh runs of ``seeds``
    members each, for a whole trial of ``num_phases`` phases of ``phase_steps`` per member:
    what the study keeps back from its budget for it."""
    return leaders * runs * seeds * num_phases * phase_steps


def default_choice(reevaluate: int | str, runs: int | str, *, asynchronous: bool, objective: str, budget: int,
                   trial_steps: int) -> tuple[int, int]:
    """``(reevaluate, reevaluate_seeds)`` with :data:`AUTO` resolved: the runs are
    :data:`DEFAULT_RUNS` when the study retrains its leaders (an ``asynchronous`` scheduler, an
    objective in :data:`REEVALUATED`, at least one leader) and that costs at most
    :data:`DEFAULT_SHARE` of ``budget`` (``trial_steps``: env steps of one whole trial, every
    seed), else 0; the leaders are :data:`DEFAULT_LEADERS` when the runs are not 0, else 0 (a
    re-evaluation alone picks better policies, not better configurations). Values given as
    integers are kept."""
    leaders = DEFAULT_LEADERS if reevaluate == AUTO else int(reevaluate)
    if runs == AUTO:
        cost = retrain_steps(leaders, DEFAULT_RUNS, 1, 1, trial_steps)
        applies = asynchronous and objective in REEVALUATED and leaders >= 1
        runs = DEFAULT_RUNS if applies and cost <= DEFAULT_SHARE * budget else 0
    if reevaluate == AUTO:
        leaders = DEFAULT_LEADERS if runs else 0
    return leaders, int(runs)


def pick(order: list[int], scores: dict[int, float]) -> int | None:
    """The leader with the highest score (ties: the earlier in ``order``, the first
    evaluation's ranking; ``-inf`` ranks below every finite score but is a choice); ``None`` if
    none has a score (all NaN)."""
    best, best_score = None, -math.inf
    for tid in order:
        s = scores.get(tid, math.nan)
        if not math.isnan(s) and (best is None or s > best_score):
            best, best_score = tid, s
    return best
