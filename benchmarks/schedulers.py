"""Every scheduler on the same synthetic learning curves, through the study's own engine and
policies (``hyperjax.study.simulate``: a synthetic pool stands in for the agent).

    python benchmarks/schedulers.py --json [--trials 256 --slots 32 --phases 10 --repeats 5]

Prints one JSON line per scheduler (medians over repeats, min/max of the compute fraction):
{"scheduler", "trials", "alive_after_phase", "compute_fraction" (the HyperTrick paper's alpha),
"expected_alpha" (HyperTrick: sum_p (1-r)^p / P), "slot_utilization" (while work was waiting),
"overall_utilization", "best_found_rank", "ticks"}. Every method gets the same budget,
``trials * phases`` trial-phases (synchronous brackets plan how many trials that affords; PBT
runs ``slots`` lineages for ``phases`` phases).

    python benchmarks/schedulers.py --json --only hypertrick --budget 300 600 1200 --slots 8 --phases 10 --r 0.25

With ``--budget`` (trial-phases, one study per value): no trial count is given, so HyperTrick's
N comes from the budget as in ``tune`` without ``max_trials`` (one line per budget, with
``"budget"``).
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from hyperjax.schedulers import ASHA, HyperTrick, Hyperband, Median, NoStopping, PBT, SuccessiveHalving
from hyperjax.study.simulate import expected_alpha, simulate


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=256)
    p.add_argument("--slots", type=int, default=32)
    p.add_argument("--phases", type=int, default=10)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--r", type=float, default=0.2, help="HyperTrick eviction rate")
    p.add_argument("--eta", type=int, default=3)
    p.add_argument("--noise", type=float, default=0.1)
    p.add_argument("--budget", type=int, nargs="+", default=None,
                   help="budgets in trial-phases; the trial count then follows from each (tune without max_trials)")
    p.add_argument("--only", nargs="+", default=None, help="scheduler names to run (default: all)")
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    specs = [HyperTrick(r=a.r), ASHA(eta=a.eta), Median(), NoStopping(), SuccessiveHalving(eta=a.eta),
             Hyperband(eta=a.eta), PBT()]
    specs = [s for s in specs if a.only is None or s.name in a.only]
    for spec, budget in [(s, b) for s in specs for b in (a.budget or [None])]:
        trials = None if budget is not None else a.trials
        rows = [simulate(spec, slots=a.slots, trials=trials, phases=a.phases, seed=rep, noise=a.noise, budget=budget)
                for rep in range(a.repeats)]
        med = lambda f: float(np.median([getattr(r, f) for r in rows]))  # noqa: E731
        cf = [r.compute_fraction for r in rows]
        print(json.dumps({
            "scheduler": spec.name,
            **({"budget": budget} if budget is not None else {}),
            "trials": med("trials"),
            "trials_minmax": [min(r.trials for r in rows), max(r.trials for r in rows)],
            "alive_after_phase": np.median([r.alive_after_phase for r in rows], axis=0).round(1).tolist(),
            "compute_fraction": round(med("compute_fraction"), 3),
            "compute_fraction_minmax": [round(min(cf), 3), round(max(cf), 3)],
            **({"expected_alpha": round(expected_alpha(a.r, a.phases), 3)} if spec.name == "hypertrick" else {}),
            # PBT never has work waiting: every slot runs the whole study
            "slot_utilization": None if spec.kind == "pbt" else round(med("slot_utilization"), 3),
            "overall_utilization": round(med("overall_utilization"), 3),
            "best_found_rank": med("best_found_rank"),
            "ticks": med("ticks"),
        }), flush=True)


if __name__ == "__main__":
    main()
