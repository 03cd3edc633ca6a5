"""The race: hyperjax's tuners against Optuna (TPE + Hyperband pruner) driving rejax, at equal
wall time, scored on test seeds never used in tuning.

    python benchmarks/race.py --smoke                     # every method and the peer on Acrobot-v1, 60 s, 1 seed
    python benchmarks/race.py [--tasks T ...] [--methods M ...] [--seeds 5] [--results FILE]
    python benchmarks/race.py --table [--results FILE] [--plot race.png]   # the table (and anytime curves) from the results

Every (task, method, study seed) cell runs in a fresh process (imports and compiles count
against its wall time, as they do for the peer) and appends one JSON line to ``--results``
(default ``benchmarks/results/race.jsonl``) with the commit it ran (``commit``); a cell already
there is skipped, so the race can be completed over several sittings. Run nothing else CPU-heavy beside it; the env-step axis of the
anytime curves is what contention cannot distort.

Protocol. PPO with the peers' settings (16 envs x 128 steps, 4 epochs x 4 minibatches, 64x64
tanh actor and critic) over their seven-parameter space (``tuning.SPACE``), trials of 8 phases
of 32,768 env steps, 32 slots, ``max_seconds`` = the task's time (Acrobot-v1 and Pendulum-v1
300 s, the MinAtar games 600 s; the peer cannot run Pendulum-v1: its greedy evaluation takes
the argmax of discrete logits, which rejax's Gaussian policy does not have, so its cells fail
and write no row). Methods: ``default`` (HyperTrick r = 0.2 + Sobol, the best the highest first
evaluation: ``tune``'s defaults until 2026-11-25, pinned with ``reevaluate=0``), ``reeval`` (the same with ``reevaluate=8``: the 8 leaders
re-evaluated on 64 fresh episodes each when the study ends, the best chosen by that; its row
also holds ``test_return_first``, the test return of what the same study picks without it, the
default's pick), ``reseed`` (the same with ``reevaluate_seeds=2``: the leaders'
configurations also retrained from scratch on 2 fresh seeds each, the best chosen by those
runs; ``tune``'s default since 2026-11-25, given explicitly so that it is never dropped for time), ``hypertrick-sobol``
(r = 0.3), ``hypertrick-bnn``, ``asha-bnn``, ``pbt`` (interval 2, quantile 0.25, every slot
training until the time is up), ``pb2`` (the same, exploring with the BNN), ``none`` (no early
stopping: population random search), ``seeds2`` (the default on 16 slots of 2 seeds each, a
trial's score the mean of its seeds: as many members, half the trials, a less noisy pick) and
``peer`` (``../shared/peers/optuna_rejax.sh``). The score of a study is its **test return**:
the configuration it picked is retrained from scratch by hyperjax's trainer on ``--test-seeds``
fresh seeds for the trial length and evaluated greedily on ``--test-episodes`` episodes per
seed (the peer's pick too); PBT's (and PB2's) pick is a schedule, so its winning lineage's schedule is
replayed (``StudyResult.best_schedule``) for as long as the winner trained. Also recorded: the
tuning score (the study's own best), the held-out return of the picked policy itself
(hyperjax methods), wall seconds, env steps, slot utilisation, the tuner's share, and the
anytime curve (incumbent's tuning score against seconds and env steps, one point per tick).

The table gives per task and method the IQM of the test return over study seeds with a 95%
percentile-bootstrap interval (``hyperjax.analysis``), the median tuning score, the median time
until the incumbent reached the peer's median final tuning score, env steps, utilisation and
the tuner's share.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
PEER = os.path.join(HERE, "..", "..", "shared", "peers", "optuna_rejax.sh")
RESULTS = os.path.join(HERE, "results", "race.jsonl")
TASKS = {"Acrobot-v1": 300, "Breakout-MinAtar": 600, "SpaceInvaders-MinAtar": 600, "Pendulum-v1": 300}
METHODS = ["default", "reeval", "reseed", "hypertrick-sobol", "hypertrick-bnn", "asha-bnn", "pbt", "pb2", "none", "seeds2", "peer"]
PHASE, PHASES, SLOTS = 32_768, 8, 32
TEST_SEED_BASE = 10**6  # fresh seeds: studies use seeds 0..; retraining 10**6 + seed


def _study_kwargs(method: str, seed: int, seconds: float) -> dict:
    import hyperjax as hj
    from hyperjax.proposers import make_proposer

    from benchmarks.tuning import SPACE

    # reevaluate=0 (tune's default until 2026-11-25) but for "reeval" and "reseed", pinned so that
    # the rows stay comparable
    kw = dict(budget=10**12, phase_steps=PHASE, trial_steps=PHASES * PHASE, slots=SLOTS, seed=seed,
              max_seconds=seconds, eval_episodes=16, reevaluate=0)
    bnn = lambda: make_proposer("bnn", SPACE, seed, target_budget=float(PHASES * PHASE))  # noqa: E731
    if method == "hypertrick-sobol":
        kw["scheduler"] = hj.schedulers.HyperTrick(r=0.3)
    elif method == "hypertrick-bnn":
        kw["scheduler"], kw["proposer"] = hj.schedulers.HyperTrick(r=0.3), bnn()
    elif method == "asha-bnn":
        kw["scheduler"], kw["proposer"] = "asha", bnn()
    elif method in ("pbt", "pb2"):
        # every slot trains until the time is up: PBT evaluates its population at the last tick
        kw["trial_steps"] = 10_000 * PHASE
        kw["budget"] = SLOTS * kw["trial_steps"]
        if method == "pbt":
            kw["scheduler"] = hj.schedulers.PBT(interval=2, quantile=0.25)
        else:
            kw["scheduler"], kw["proposer"] = hj.schedulers.PB2(interval=2, quantile=0.25), bnn()
    elif method == "none":
        kw["scheduler"] = "none"
    elif method == "reeval":  # the default and the 8 leaders re-evaluated on 64 fresh episodes each
        kw["reevaluate"] = 8
    elif method == "reseed":  # ... and their configurations retrained on 2 fresh seeds each
        kw["reevaluate"], kw["reevaluate_seeds"] = 8, 2
    elif method == "seeds2":  # the default's scheduler and proposer, each trial on 2 seeds (its score: their mean)
        kw["slots"], kw["seeds"] = SLOTS // 2, 2  # as many members as the default, half the trials at once
    elif method != "default":
        raise ValueError(f"race: method {method!r} is unknown; allowed: {', '.join(METHODS)}")
    return kw


def _retrain(agent, seed: int, test_seeds: int, test_episodes: int, steps: int, values=None, schedule=None) -> dict:
    """The picked configuration (or schedule) trained from scratch on fresh seeds."""
    import numpy as np

    import hyperjax as hj

    names = agent.hparam_names()
    kw = dict(total_timesteps=steps, num_seeds=test_seeds, seed=TEST_SEED_BASE + seed, eval_episodes=test_episodes,
              chunk_updates=PHASE // agent.steps_per_update)
    if schedule is not None:
        res = hj.train(agent, schedule=schedule, **kw)
    else:
        res = hj.train(agent, {n: float(v) for n, v in values.items() if n in names}, **kw)
    r = np.asarray(res.eval_returns, np.float64).ravel()
    return {"test_return": float(np.nanmean(r)) if np.isfinite(r).any() else None,
            "test_returns": [None if not math.isfinite(x) else round(float(x), 3) for x in r]}


def run_cell(task: str, method: str, seed: int, seconds: float, test_seeds: int, test_episodes: int) -> dict:
    """One study (or the peer's) and its retraining; a JSON-ready dict."""
    if method == "peer":
        return _peer_cell(task, seed, seconds, test_seeds, test_episodes)
    import hyperjax as hj

    from benchmarks.tuning import SPACE

    t_start = time.perf_counter()
    kw = _study_kwargs(method, seed, seconds)
    curve = []  # (seconds, env steps, best score so far) per tick

    def anytime(study, changes):
        best = study.best.final_score if study.best is not None else None
        curve.append((round(study.now(), 2), int(study.used), None if best is None else round(best, 3)))

    res = hj.tune(hj.PPO(env=task), SPACE, callbacks=[anytime], **kw)
    out = {"task": task, "method": method, "seed": seed, "seconds": seconds,
           "tuning_score": None if res.best is None else round(res.best_score, 3),
           "best_status": None if res.best is None else res.best.status,
           "wall_seconds": round(res.seconds, 1), "process_seconds": None, "env_steps": int(res.env_steps),
           "trials": len(res.trials), "slot_utilization": round(res.slot_utilization["overall"], 4),
           "tuner_fraction": round(res.timing.get("tuner", 0.0) / max(res.seconds, 1e-9), 4),
           "found_best_at": None if res.best is None else round(res.found_best_at, 1), "anytime": curve}
    if hasattr(res.proposer, "counts"):
        out["proposals"] = dict(res.proposer.counts)
        out["surrogate_wait_seconds"] = round(sum(getattr(res.proposer, "wait_seconds", [])), 2)
    if res.best is None:
        out.update(test_return=None, test_returns=[], heldout_return=None, picked=None)
    else:
        out["heldout_return"] = round(res.evaluate_best(episodes=test_episodes, seed=TEST_SEED_BASE + seed), 3)
        if method in ("pbt", "pb2"):
            schedule = res.best_schedule()
            steps = res.best.phases * int(res.buckets[res.best.bucket]["steps_per_phase"])
            out["picked"] = {"schedule": schedule, "steps": steps}
            out.update(_retrain(res.best_agent, seed, test_seeds, test_episodes, steps, schedule=schedule))
        else:
            picked = {n: res.best.config[n] for n in SPACE.names}
            out["picked"] = picked
            out.update(_retrain(res.best_agent, seed, test_seeds, test_episodes, PHASES * PHASE, values=picked))
            if kw.get("reevaluate"):
                # paired: what the same study would have picked without the re-evaluation (the
                # highest first evaluation), retrained on the same test seeds
                first = max((t for t in res.trials if t.scored), key=lambda t: (t.final_score, -t.id))
                out["reeval_score"] = round(res.best.reeval_score, 3)
                if math.isfinite(res.best.reseed_score):
                    out["reseed_score"] = round(res.best.reseed_score, 3)
                out["first_pick"] = {"trial": first.id, "tuning_score": round(first.final_score, 3),
                                     "reeval_score": None if math.isnan(first.reeval_score) else
                                     round(first.reeval_score, 3), "same": first.id == res.best.id}
                if first.id == res.best.id:
                    out["test_return_first"] = out["test_return"]
                else:
                    values = {n: first.config[n] for n in SPACE.names}
                    out["test_return_first"] = _retrain(res.best_agent, seed, test_seeds, test_episodes,
                                                        PHASES * PHASE, values=values)["test_return"]
    out["process_seconds"] = round(time.perf_counter() - t_start, 1)
    return out


def _peer_cell(task: str, seed: int, seconds: float, test_seeds: int, test_episodes: int) -> dict:
    import hyperjax as hj

    t_start = time.perf_counter()
    proc = subprocess.run([PEER, "--env", task, "--max-seconds", str(seconds), "--seed", str(seed), "--target", "1e9"],
                          capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"race: the peer failed on {task} (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    d = json.loads(lines[-1])
    out = {"task": task, "method": "peer", "seed": seed, "seconds": seconds,
           "tuning_score": d.get("best_final_return"), "wall_seconds": d.get("wall_seconds"),
           "env_steps": d.get("env_steps"), "trials": d.get("trials"), "pruned": d.get("pruned"),
           "slot_utilization": None, "tuner_fraction": None, "anytime": [], "picked": d.get("best_params"),
           "heldout_return": None}
    if d.get("best_params"):
        out.update(_retrain(hj.PPO(env=task), seed, test_seeds, test_episodes, PHASES * PHASE, values=d["best_params"]))
    else:
        out.update(test_return=None, test_returns=[])
    out["process_seconds"] = round(time.perf_counter() - t_start, 1)
    return out


# -- the driver ---------------------------------------------------------------------------------
def _load(path: str) -> list[dict]:
    """The result rows of ``path`` (one JSON object per line)."""
    with open(path) as f:
        return [json.loads(ln) for ln in f if ln.strip()]


def _done(path: str) -> set[tuple]:
    if not os.path.exists(path):
        return set()
    return {(r["task"], r["method"], r["seed"], r["seconds"]) for r in _load(path)}


def _run_in_process(task, method, seed, seconds, test_seeds, test_episodes) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--cell", task, method, str(seed), "--seconds", str(seconds),
           "--test-seeds", str(test_seeds), "--test-episodes", str(test_episodes)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=os.path.dirname(HERE))
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"race: cell {task}/{method}/{seed} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def _commit() -> str | None:
    """The checked-out commit of the code the race runs (``+dirty`` when it has changes)."""
    try:
        root = os.path.dirname(HERE)
        sha = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=root, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "hyperjax", "benchmarks/race.py"], capture_output=True,
                               text=True, cwd=root).stdout.strip()
        return sha[:10] + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return None


def _median(xs):
    xs = sorted(x for x in xs if x is not None)
    return None if not xs else (xs[len(xs) // 2] if len(xs) % 2 else 0.5 * (xs[len(xs) // 2 - 1] + xs[len(xs) // 2]))


def _time_to(curve, target):
    for seconds, _, best in curve:
        if best is not None and best >= target:
            return seconds
    return None


def table(path: str) -> list[dict]:
    """One row per (task, method): test-return IQM and 95% interval, medians of the rest."""
    from hyperjax import analysis

    rows = _load(path)
    out = []
    for task in dict.fromkeys(r["task"] for r in rows):
        here = [r for r in rows if r["task"] == task]
        peer_median = _median([r["tuning_score"] for r in here if r["method"] == "peer"])
        for method in dict.fromkeys(r["method"] for r in here):
            cells = [r for r in here if r["method"] == method]
            tests = [r["test_return"] for r in cells if r.get("test_return") is not None]
            stats = analysis.summarize(tests) if tests else {}
            reach = [_time_to(r.get("anytime", []), peer_median) for r in cells] if peer_median is not None else []
            out.append({
                "task": task, "method": method, "seeds": len(cells), "test_return_iqm": stats.get("iqm"),
                "test_return_ci": ([None if math.isnan(v) else v for v in (stats["iqm_low"], stats["iqm_high"])]
                                   if stats else None),  # one seed: no interval
                "tuning_score_median": _median([r["tuning_score"] for r in cells]),
                "heldout_return_median": _median([r.get("heldout_return") for r in cells]),
                "seconds_to_peer_median": _median([x for x in reach if x is not None]) if method != "peer" else None,
                "reached_peer_median": sum(x is not None for x in reach) if method != "peer" else None,
                "env_steps_median": _median([r["env_steps"] for r in cells]),
                "slot_utilization_median": _median([r.get("slot_utilization") for r in cells]),
                "tuner_fraction_median": _median([r.get("tuner_fraction") for r in cells]),
                "wall_seconds_median": _median([r["wall_seconds"] for r in cells]),
            })
            firsts = [r["test_return_first"] for r in cells if r.get("test_return_first") is not None]
            if firsts:  # the paired pick of the same studies without the final re-evaluation
                first = analysis.summarize(firsts)
                out[-1].update({
                    "test_return_first_iqm": first["iqm"],
                    "test_return_first_ci": [None if math.isnan(v) else v for v in (first["iqm_low"], first["iqm_high"])],
                    "picks_differ": sum(not r["first_pick"]["same"] for r in cells if "first_pick" in r),
                    "reeval_better": sum(r["test_return"] > r["test_return_first"] for r in cells
                                         if r.get("test_return_first") is not None and r.get("test_return") is not None),
                })
    return out


def _step_on_grid(curve, axis: int, grid):
    """A study's incumbent score (a step function of its ``curve`` column ``axis``) on ``grid``; NaN before the first."""
    import numpy as np

    xs = np.array([pt[axis] for pt in curve if pt[2] is not None], np.float64)
    ys = np.array([pt[2] for pt in curve if pt[2] is not None], np.float64)
    if xs.size == 0:
        return np.full(len(grid), np.nan)
    i = np.searchsorted(xs, grid, side="right") - 1
    return np.where(i >= 0, ys[np.maximum(i, 0)], np.nan)


def plot(path: str, out: str) -> None:
    """Anytime curves: per task, the incumbent's tuning score against wall seconds and against env
    steps, median and interquartile range over study seeds per method (where at least half of
    the seeds have an incumbent); methods with at most one incumbent per study (the peer reports
    only its end, PBT evaluates once at the end) as their median end point with the
    interquartile ranges of both coordinates."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    rows = _load(path)
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    fig, axes = plt.subplots(len(tasks), 2, figsize=(11, 3.6 * len(tasks)), squeeze=False)
    for t, task in enumerate(tasks):
        here = [r for r in rows if r["task"] == task]
        for c, (axis, key, label) in enumerate([(0, "wall_seconds", "wall seconds"), (1, "env_steps", "env steps")]):
            ax = axes[t, c]
            for method in dict.fromkeys(r["method"] for r in here):
                cells = [r for r in here if r["method"] == method]
                color = f"C{METHODS.index(method)}"  # one colour per method in every panel
                # ticks with an incumbent; the peer has no curve and PBT evaluates at the last tick
                scored = [sum(pt[2] is not None for pt in r.get("anytime", [])) for r in cells]
                if max(scored) <= 2:  # (which the end-of-study callback repeats): end points
                    ends = [(r[key], r["tuning_score"]) for r in cells
                            if r.get(key) is not None and r.get("tuning_score") is not None]
                    if ends:
                        xs, ys = np.array(ends, np.float64).T
                        q = lambda v: np.percentile(v, [25, 50, 75])  # noqa: E731
                        (x0, x1, x2), (y0, y1, y2) = q(xs), q(ys)
                        ax.errorbar([x1], [y1], xerr=[[x1 - x0], [x2 - x1]], yerr=[[y1 - y0], [y2 - y1]], fmt="o",
                                    color=color, capsize=3, label=f"{method} (end, n={xs.size})")
                    continue
                top = max(pt[axis] for r in cells for pt in r["anytime"])
                grid = np.linspace(0.0, top, 300)
                curves = np.stack([_step_on_grid(r["anytime"], axis, grid) for r in cells])
                enough = np.isfinite(curves).sum(axis=0) * 2 >= len(cells)
                with warnings.catch_warnings():  # all-NaN grid points (before any incumbent) stay NaN
                    warnings.simplefilter("ignore", RuntimeWarning)
                    lo, med, hi = (np.where(enough, np.nanpercentile(curves, p, axis=0), np.nan) for p in (25, 50, 75))
                ax.plot(grid, med, color=color, label=f"{method} (n={len(cells)})")
                ax.fill_between(grid, lo, hi, color=color, alpha=0.2, linewidth=0)
            ax.set_xlabel(label)
            ax.set_ylabel("incumbent's tuning score")
            ax.set_title(f"{task}: against {label}")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", nargs="+", default=list(TASKS), help=f"default: {' '.join(TASKS)}")
    p.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS)
    p.add_argument("--seeds", type=int, default=5, help="study seeds per (task, method)")
    p.add_argument("--seconds", type=float, default=None, help="per study (default: the task's)")
    p.add_argument("--test-seeds", type=int, default=5)
    p.add_argument("--test-episodes", type=int, default=64)
    p.add_argument("--results", default=RESULTS)
    p.add_argument("--smoke", action="store_true", help="Acrobot-v1, every method, 60 s, 1 seed, 2 test seeds")
    p.add_argument("--table", action="store_true", help="print the table of --results and stop")
    p.add_argument("--plot", metavar="PNG", help="with --table: also draw the anytime curves of --results to PNG")
    p.add_argument("--cell", nargs=3, metavar=("TASK", "METHOD", "SEED"), help=argparse.SUPPRESS)
    a = p.parse_args(argv)

    if a.cell:
        task, method, seed = a.cell
        sys.path.insert(0, os.path.dirname(HERE))
        print("RESULT " + json.dumps(run_cell(task, method, int(seed), a.seconds, a.test_seeds, a.test_episodes)),
              flush=True)
        return
    if a.table:
        for row in table(a.results):
            print(json.dumps(row), flush=True)
        if a.plot:
            plot(a.results, a.plot)
        return
    if a.smoke:
        import tempfile

        a.tasks, a.seeds, a.seconds, a.test_seeds, a.test_episodes = ["Acrobot-v1"], 1, 60.0, 2, 16
        a.results = os.path.join(tempfile.mkdtemp(prefix="hyperjax-race-"), "race.jsonl")
    for task in a.tasks:
        if task not in TASKS:
            p.error(f"--tasks: {task!r} is not one of {', '.join(TASKS)}")
    os.makedirs(os.path.dirname(os.path.abspath(a.results)), exist_ok=True)
    done, failed = _done(a.results), []
    for seed in range(a.seeds):  # seeds outermost: a partial race has every method at equal seeds
        for task in a.tasks:
            seconds = float(a.seconds or TASKS[task])
            for method in a.methods:
                if (task, method, seed, seconds) in done:
                    continue
                try:
                    row = _run_in_process(task, method, seed, seconds, a.test_seeds, a.test_episodes)
                except RuntimeError as e:  # one failing cell (e.g. the peer on a task it cannot run)
                    failed.append(f"{task}/{method}/{seed}")  # writes no row: a later sitting retries it
                    print(str(e), file=sys.stderr, flush=True)
                    continue
                row["commit"] = _commit()  # which engine and tuner the row measured
                with open(a.results, "a") as f:
                    f.write(json.dumps(row) + "\n")
                if a.smoke:
                    print(json.dumps({k: row.get(k) for k in ("task", "method", "test_return", "tuning_score",
                                                              "wall_seconds", "env_steps", "slot_utilization")}),
                          flush=True)
                else:
                    print(f"{task} {method} seed {seed}: test {row.get('test_return')}, tuning {row.get('tuning_score')}",
                          file=sys.stderr, flush=True)
    if not a.smoke:
        for row in table(a.results):
            print(json.dumps(row), flush=True)
    if failed:
        sys.exit(f"race: {len(failed)} cell(s) failed (see above): {', '.join(failed)}")


if __name__ == "__main__":
    main()
