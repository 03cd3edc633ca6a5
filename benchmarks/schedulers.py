"""Every early-stopping scheduler on the same synthetic learning curves.

    python benchmarks/schedulers.py --json [--trials 256 --slots 32 --phases 10 --repeats 5]

Prints one JSON line per scheduler: {"scheduler","alive_after_phase","compute_fraction",
"slot_utilization","overall_utilization","best_found_rank"} (medians over repeats; the curves
come from hyperjax.schedulers.simulate.synthetic_curves).
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from hyperjax.schedulers.simulate import simulate_async, simulate_successive_halving, synthetic_curves


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=256)
    p.add_argument("--slots", type=int, default=32)
    p.add_argument("--phases", type=int, default=10)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--r", type=float, default=0.2, help="HyperTrick eviction rate")
    p.add_argument("--eta", type=int, default=3)
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    names = ["hypertrick", "asha", "median", "none", "successive_halving"]
    for name in names:
        rows = []
        for rep in range(a.repeats):
            rng = np.random.default_rng(rep)
            curves = synthetic_curves(rng, a.trials, a.phases)
            if name == "successive_halving":
                rows.append(simulate_successive_halving(curves, a.slots, a.eta))
            else:
                opts = {"hypertrick": {"r": a.r}, "asha": {"eta": a.eta}}.get(name, {})
                rows.append(simulate_async(name, curves, a.slots, rng, **opts))
        med = lambda f: float(np.median([getattr(r, f) for r in rows]))  # noqa: E731
        print(json.dumps({
            "scheduler": name,
            "alive_after_phase": np.median([r.alive_after_phase for r in rows], axis=0).round(1).tolist(),
            "compute_fraction": round(med("compute_fraction"), 3),
            "slot_utilization": round(med("slot_utilization"), 3),
            "overall_utilization": round(med("overall_utilization"), 3),
            "best_found_rank": med("best_found_rank"),
        }), flush=True)


if __name__ == "__main__":
    main()
