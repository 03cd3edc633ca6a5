"""HEBO (Cowen-Rivers et al. 2022, the NeurIPS 2020 black-box optimisation challenge's winner)
behind ask/tell over JSON lines, for ``benchmarks/surrogate.py``.

HEBO pins NumPy < 1.25 and pymoo 0.6.0, which hyperjax's environment cannot hold, so it runs in
its own virtual environment (``benchmarks/hebo.sh`` creates it on first use) as a child process:

    {"init": {"dim": d, "seed": s}}      -> {"ok": true}
    {"ask": k}                           -> {"u": [[...], ...]}   k points of the unit cube
    {"tell": {"u": [[...]], "y": [...]}} -> {"ok": true}          maximised (HEBO minimises -y)

One JSON object per line on stdin, one answer per line on stdout; HEBO's own output goes to
stderr. The points are HEBO's batch suggestions (its MACE acquisition's Pareto set).
"""

import json
import sys


def main() -> None:
    opt = None
    out = sys.stdout
    sys.stdout = sys.stderr  # anything HEBO prints must not corrupt the protocol
    for line in sys.stdin:
        msg = json.loads(line)
        if "init" in msg:
            import numpy as np
            import torch
            from hebo.design_space.design_space import DesignSpace
            from hebo.optimizers.hebo import HEBO

            dim, seed = int(msg["init"]["dim"]), int(msg["init"]["seed"])
            np.random.seed(seed)
            torch.manual_seed(seed)
            torch.set_num_threads(1)
            names = [f"x{i}" for i in range(dim)]
            space = DesignSpace().parse([{"name": n, "type": "num", "lb": 0.0, "ub": 1.0} for n in names])
            opt = HEBO(space, scramble_seed=seed)
            reply = {"ok": True}
        elif "ask" in msg:
            rec = opt.suggest(n_suggestions=int(msg["ask"]))
            reply = {"u": rec[names].to_numpy(dtype=float).tolist()}
        elif "tell" in msg:
            import pandas as pd

            u = np.asarray(msg["tell"]["u"], float)
            y = np.asarray(msg["tell"]["y"], float).reshape(-1, 1)
            opt.observe(pd.DataFrame(u, columns=names), -y)
            reply = {"ok": True}
        else:
            reply = {"error": f"unknown message {sorted(msg)}"}
        out.write(json.dumps(reply) + "\n")
        out.flush()


if __name__ == "__main__":
    main()
