"""The seed experiment: HyperTrick against Hyperband, successive halving and random search (and
HyperTrick fed by the BNN) tuning A2C on MinAtar games at equal budgets, as in the HyperTrick
paper (arXiv 1902.02725, Table 3) and its GTC talk (the alpha columns).

    python experiments/hypertrick_vs_hyperband.py [--config YAML] [--games G ...] [--methods M ...]
                                                  [--seeds N] [--results FILE] [--figure PNG]
    python experiments/hypertrick_vs_hyperband.py --smoke     # every method, one game, one seed
    python experiments/hypertrick_vs_hyperband.py --table [--results FILE]

The configuration (default ``experiments/configs/hypertrick_vs_hyperband.yaml``, CPU scale; the
GPU/TPU scale is ``hypertrick_vs_hyperband_gpu.yaml``) gives the study settings shared by every
method, the games, the study seeds and the methods. Each (game, method, seed) cell is one
``hj.tune`` study; its JSON line is appended to ``--results`` (default
``experiments/results/hypertrick_vs_hyperband.jsonl``) as soon as it finishes, and a cell already
there is skipped: an interrupted experiment continues where it stopped.

Every cell of a game runs in this one process after a warm-up study per phase length has
compiled the game's programs, so no method pays for compiling and wall times compare (each
line records the compile seconds that remained). Cells run seed by seed, the methods in turn
within a seed, so machine noise falls on all methods alike.

Columns per cell (the paper's Table 3 and the talk's alpha columns): ``best_score`` (the best
trial's greedy evaluation on held-apart episodes), ``wall_seconds``, ``time_to_best`` (study
seconds when the best trial's score was recorded), ``best_config`` (lr, gamma, t_max), ``alpha``
(the compute fraction: trial-phases run / trial-phases that running every started trial to its
end would cost; :func:`hyperjax.analysis.compute_fraction`), and for HyperTrick ``min_alpha`` and
``expected_alpha`` (``E[alpha] = sum_p (1 - r)^p / Np``); also trials, env steps and slot
utilisation. The table aggregates the seeds: IQM of the best score with a 95% bootstrap
interval, medians of the rest (trials, env steps, slots busy too: methods given one budget do not
all spend it, and wall time follows the env steps spent), and the probability that HyperTrick's
best score beats each other method's (Mann-Whitney, over study seeds).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CONFIG = os.path.join(HERE, "configs", "hypertrick_vs_hyperband.yaml")
RESULTS = os.path.join(HERE, "results", "hypertrick_vs_hyperband.jsonl")
_TOP = ("study", "games", "seeds", "phases", "methods", "timeline", "smoke")
_METHOD_KEYS = ("scheduler", "proposer", "phases")


# -- the configuration --------------------------------------------------------------------------
def load_config(path: str, smoke: bool = False) -> dict:
    """The experiment's configuration from YAML, validated; ``smoke`` applies its ``smoke:``
    overrides (merged into ``study``, replacing ``games``/``seeds``)."""
    import yaml

    with open(path) as f:
        c = yaml.safe_load(f)
    if not isinstance(c, dict):
        raise ValueError(f"{path}: expected a mapping of settings")
    unknown = [k for k in c if k not in _TOP]
    if unknown:
        raise ValueError(f"{path}: unknown key(s) {unknown}; allowed: {', '.join(_TOP)}")
    for k in ("study", "games", "methods"):
        if k not in c:
            raise ValueError(f"{path}: {k!r} is missing")
    c.setdefault("seeds", 3)
    c.setdefault("phases", 10)
    c.setdefault("timeline", [])
    if smoke:
        s = c.get("smoke") or {}
        c["study"] = {**c["study"], **s.get("study", {})}
        c["games"], c["seeds"] = s.get("games", c["games"][:1]), s.get("seeds", 1)
    for name, m in c["methods"].items():
        bad = [k for k in (m or {}) if k not in _METHOD_KEYS]
        if bad:
            raise ValueError(f"{path}: methods.{name}: unknown key(s) {bad}; allowed: {', '.join(_METHOD_KEYS)}")
    for name in c["timeline"]:
        if name not in c["methods"]:
            raise ValueError(f"{path}: timeline: {name!r} is not a method")
    if not isinstance(c["seeds"], int) or c["seeds"] < 1:
        raise ValueError(f"{path}: seeds={c['seeds']!r} must be an integer >= 1")
    return c


def study_config(c: dict, game: str, method: str, seed: int) -> dict:
    """The ``hyperjax tune`` configuration dict of one cell."""
    m = c["methods"][method] or {}
    s = copy.deepcopy(c["study"])
    s["agent"] = {**s["agent"], "env": game}
    phases = int(m.get("phases", c["phases"]))
    if s["trial_steps"] % phases:
        raise ValueError(f"methods.{method}: trial_steps={s['trial_steps']} is not a multiple of phases={phases}")
    s["phase_steps"] = s["trial_steps"] // phases
    s["scheduler"] = m.get("scheduler", "hypertrick")
    s["proposer"] = m.get("proposer", "sobol")
    s["seed"] = seed
    return s


def _tune_args(s: dict):
    from hyperjax import config as cfgmod

    return cfgmod.tune_arguments(s)


# -- one cell -----------------------------------------------------------------------------------
def warm_up(s: dict) -> float:
    """Compiles a cell's programs with a study of one cohort of one-phase trials (random search);
    returns its seconds."""
    import hyperjax as hj

    agent, space, kw = _tune_args(s)
    t0 = time.perf_counter()
    hj.tune(agent, space, budget=kw["slots"] * kw["phase_steps"], phase_steps=kw["phase_steps"],
            trial_steps=kw["phase_steps"], slots=kw["slots"], scheduler="none", eval_episodes=kw["eval_episodes"],
            seed=10**6)
    return time.perf_counter() - t0


def run_cell(s: dict, game: str, method: str, seed: int) -> tuple[dict, object]:
    """One study; ``(JSON-ready row, StudyResult)``."""
    import hyperjax as hj
    from hyperjax import analysis

    agent, space, kw = _tune_args(s)
    kw.setdefault("reevaluate", 0)  # every method picks by the first evaluation, as the paper's
    res = hj.tune(agent, space, **kw)
    phases = kw["trial_steps"] // kw["phase_steps"]
    spec = hj.schedulers.scheduler_spec(kw["scheduler"])
    best = res.best
    row = {
        "game": game, "method": method, "seed": seed, "scheduler": spec.name,
        "proposer": kw.get("proposer") if isinstance(kw.get("proposer"), str) else type(kw.get("proposer")).__name__,
        "phases": phases, "budget": int(kw["budget"]),
        "best_score": None if best is None else round(best.final_score, 3),
        "best_status": None if best is None else best.status,
        "wall_seconds": round(res.seconds, 1),
        "time_to_best": None if best is None else round(res.found_best_at, 1),
        "best_config": None if best is None else {k: _plain(best.config[k]) for k in space.names},
        "alpha": round(analysis.compute_fraction(res, phases), 4),
        "trials": len(res.trials),
        "completed": sum(t.status == "completed" for t in res.trials),
        "env_steps": int(res.env_steps),
        "slot_utilization": round(res.slot_utilization["overall"], 4),
        "compile_seconds": round(res.timing.get("compile", 0.0), 1),
    }
    if spec.name == "hypertrick":
        row["min_alpha"] = round(analysis.min_alpha(spec.r, phases), 4)
        row["expected_alpha"] = round(analysis.expected_alpha(spec.r, phases), 4)
    if hasattr(res.proposer, "counts"):
        row["proposals"] = dict(res.proposer.counts)
    return row, res


def _plain(v):
    return v.item() if hasattr(v, "item") else v


# -- the table ----------------------------------------------------------------------------------
def _median(xs):
    import numpy as np

    xs = [x for x in xs if x is not None]
    return None if not xs else float(np.median(xs))


def read_rows(path: str) -> list[dict]:
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(ln) for ln in f if ln.strip()]


def table(rows: list[dict], reference: str = "hypertrick") -> list[dict]:
    """One row per (game, method): the IQM of the best score over seeds with a 95% bootstrap
    interval, medians of wall time, time to best and alpha, the best configuration of the best
    seed, and the probability that ``reference``'s best score beats this method's."""
    from hyperjax import analysis

    out = []
    for game in dict.fromkeys(r["game"] for r in rows):
        here = [r for r in rows if r["game"] == game]
        ref = [r["best_score"] for r in here if r["method"] == reference and r["best_score"] is not None]
        for method in dict.fromkeys(r["method"] for r in here):
            cells = [r for r in here if r["method"] == method]
            scores = [r["best_score"] for r in cells if r["best_score"] is not None]
            st = analysis.summarize(scores) if scores else {}
            top = max((r for r in cells if r["best_score"] is not None), key=lambda r: r["best_score"], default=None)
            out.append({
                "game": game, "method": method, "seeds": len(cells),
                "best_score_iqm": None if not st else round(st["iqm"], 3),
                "best_score_ci": None if not st or math.isnan(st["iqm_low"]) else [round(st["iqm_low"], 3),
                                                                                     round(st["iqm_high"], 3)],
                "best_score_max": None if not st else round(st["max"], 3),
                "wall_seconds_median": _median([r["wall_seconds"] for r in cells]),
                "time_to_best_median": _median([r["time_to_best"] for r in cells]),
                "best_config": None if top is None else top["best_config"],
                "alpha_median": _median([r["alpha"] for r in cells]),
                "min_alpha": cells[0].get("min_alpha"), "expected_alpha": cells[0].get("expected_alpha"),
                "slot_utilization_median": _median([r["slot_utilization"] for r in cells]),
                "env_steps_median": _median([r["env_steps"] for r in cells]),
                "trials_median": _median([r["trials"] for r in cells]),
                f"p_{reference}_better": (round(analysis.probability_of_improvement(ref, scores), 3)
                                          if ref and scores and method != reference else None),
            })
    return out


def markdown(rows: list[dict], reference: str = "hypertrick") -> str:
    """The table as Markdown (the paper's Table 3 columns, then alpha)."""
    head = ("| game | method | seeds | best score IQM [95% CI] | max | wall s | time to best s | best config (lr, gamma, "
            f"t_max) | alpha (min, E) | trials | env steps | slots busy | P({reference} better) |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        ci = "" if not r["best_score_ci"] else f" [{r['best_score_ci'][0]:.2f}, {r['best_score_ci'][1]:.2f}]"
        cfg = r["best_config"] or {}
        cfg_s = (f"{cfg.get('learning_rate', float('nan')):.1e}, {cfg.get('gamma')}, {cfg.get('t_max')}" if cfg else "")
        a = "" if r["alpha_median"] is None else f"{100 * r['alpha_median']:.1f}%"
        if r.get("expected_alpha") is not None:
            a += f" ({100 * r['min_alpha']:.2f}%, {100 * r['expected_alpha']:.2f}%)"
        p = r[f"p_{reference}_better"]
        lines.append(
            f"| {r['game']} | {r['method']} | {r['seeds']} | "
            f"{'' if r['best_score_iqm'] is None else format(r['best_score_iqm'], '.2f')}{ci} | "
            f"{'' if r['best_score_max'] is None else format(r['best_score_max'], '.2f')} | "
            f"{r['wall_seconds_median']:.0f} | {'' if r['time_to_best_median'] is None else format(r['time_to_best_median'], '.0f')} | "
            f"{cfg_s} | {a} | {r['trials_median']:.0f} | {r['env_steps_median'] / 1e6:.2f}M | "
            f"{100 * r['slot_utilization_median']:.0f}% | {'' if p is None else format(p, '.2f')} |")
    return "\n".join(lines)


# -- the slot-timeline picture --------------------------------------------------------------------
def timeline_figure(results: dict, path: str) -> None:
    """``results``: method -> StudyResult; one slot-timeline panel per method, one time axis."""
    from matplotlib.figure import Figure

    from hyperjax.reports import static

    names = list(results)
    fig = Figure(figsize=(11, 2.2 + 2.6 * len(names)), dpi=110, layout="constrained")
    axes = fig.subplots(len(names), 1, sharex=True, squeeze=False)[:, 0]
    for ax, name in zip(axes, names):
        res = results[name]
        static.slot_timeline(res, ax=ax)
        ax.axvline(res.seconds, color="black", lw=1)
        ax.set_title(f"{name}: {len(res.trials)} trials, slots busy {100 * res.slot_utilization['overall']:.0f}%, "
                     f"{res.seconds:.0f} s", loc="left", fontsize=10)
    # one time axis: the longest study's
    end = max(res.seconds for res in results.values())
    for ax in axes:
        ax.set_xlim(0, end * 1.01 if end > 0 else 1)
        ax.label_outer()
    fig.savefig(path, format="png")


# -- the driver ---------------------------------------------------------------------------------
def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default=CONFIG)
    p.add_argument("--games", nargs="+", help="default: the config's")
    p.add_argument("--methods", nargs="+", help="default: the config's")
    p.add_argument("--seeds", type=int, help="study seeds per (game, method); default: the config's")
    p.add_argument("--results", default=None, help=f"JSON lines, appended (default {os.path.relpath(RESULTS)}; "
                                                    "with --smoke a temporary file)")
    p.add_argument("--figure", default=None, help="the slot-timeline PNG (default: beside --results)")
    p.add_argument("--smoke", action="store_true", help="every method, the smoke section's game, budget and seed")
    p.add_argument("--table", action="store_true", help="print the table of --results (Markdown, then JSON) and stop")
    a = p.parse_args(argv)

    c = load_config(a.config, smoke=a.smoke)
    results_path = a.results or (os.path.join(tempfile.mkdtemp(prefix="hyperjax-seed-"), "cells.jsonl") if a.smoke
                                 else RESULTS)
    if a.table:
        rows = table(read_rows(results_path))
        print(markdown(rows))
        for r in rows:
            print(json.dumps(r))
        return
    games = a.games or c["games"]
    methods = a.methods or list(c["methods"])
    for m in methods:
        if m not in c["methods"]:
            p.error(f"--methods: {m!r} is not in the config; allowed: {', '.join(c['methods'])}")
    seeds = a.seeds or c["seeds"]
    # every cell's configuration is checked before anything trains
    for game in games:
        for m in methods:
            try:
                _tune_args(study_config(c, game, m, 0))
            except ValueError as e:
                p.error(f"{game} / {m}: {e}")
    os.makedirs(os.path.dirname(os.path.abspath(results_path)), exist_ok=True)
    done = {(r["game"], r["method"], r["seed"]) for r in read_rows(results_path)}
    figure = a.figure or os.path.join(os.path.dirname(os.path.abspath(results_path)), "hypertrick_vs_hyperband_timeline.png")
    t_start = time.perf_counter()
    warmed: set = set()
    pictured: dict = {}
    for game in games:
        for seed in range(seeds):
            for m in methods:
                if (game, m, seed) in done:
                    continue
                s = study_config(c, game, m, seed)
                warm_key = (game, s["phase_steps"])
                if warm_key not in warmed:
                    w = warm_up(s)
                    warmed.add(warm_key)
                    print(f"# {game}: compiled phases of {s['phase_steps']:,} env steps in {w:.1f} s", file=sys.stderr,
                          flush=True)
                row, res = run_cell(s, game, m, seed)
                with open(results_path, "a") as f:
                    f.write(json.dumps(row) + "\n")
                print(json.dumps(row), flush=True)
                if seed == 0 and game == games[0] and m in c["timeline"]:
                    pictured[m] = res
    if pictured:
        timeline_figure({m: pictured[m] for m in c["timeline"] if m in pictured}, figure)
        print(f"# slot timeline: {figure}", file=sys.stderr)
    rows = table(read_rows(results_path))
    print(markdown(rows), file=sys.stderr)
    print(f"# {time.perf_counter() - t_start:.0f} s; cells in {results_path}", file=sys.stderr)


if __name__ == "__main__":
    main()
