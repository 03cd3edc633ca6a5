"""Batch Bayesian optimisation on test functions: the BNN proposer against random, Sobol and
Optuna's TPE and GP samplers, side by side in one run.

    python benchmarks/surrogate.py --json [--functions branin hartmann6 rl_like] [--reps 10]
    python benchmarks/surrogate.py --speed      # fit + batch of 16 at 500 observations, 6-d
    python benchmarks/surrogate.py --json --curves c.json --plot regret.png
    python benchmarks/surrogate.py --json --methods bnn-qei --curves c.json --update-curves --plot regret.png

Every method proposes batches of ``--batch`` (8) points, evaluated then told together, up to
the largest of ``--evals`` (64 128). Functions are maximised (Branin and Hartmann-6 negated);
the simple regret is ``f* - f(x_rec)`` with ``x_rec`` the evaluated point with the best
*observed* value (what a user of any of these methods would pick); for the BNN methods the
regret of the surrogate's own pick (the told point with the best posterior mean) is reported
beside it (``median_regret_model``). One JSON line per (function, method, evaluations): median
and interquartile range of the regret over ``--reps`` seeds, and the proposer's median seconds
per batch.

``rl_like`` (4-d, noisy, heteroscedastic) imitates a return landscape: a narrow ridge in a
learning-rate-like coordinate, a broad optimum in a discount-like one, an interaction of the
last two, and Student-t (3 dof) noise whose scale grows from 0.02 to 0.32 as the "learning
rate" passes 0.7 (unstable training is noisy). Its maximum 1.0 is at u = (0.55, 0.3, 0, *).
Optuna (TPE, GP) comes with ``pip install -e ".[bench]"``; its GP sampler needs PyTorch.
``hebo`` (HEBO, the NeurIPS 2020 black-box optimisation challenge's winner: a GP with input and
output warping and a multi-objective acquisition ensemble) runs in its own environment through
``benchmarks/hebo.sh``, created on first use (HEBO pins NumPy < 1.25).
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np

from hyperjax.proposers import RandomProposer, SobolProposer
from hyperjax.space import Float, SearchSpace
from hyperjax.surrogate import BNNConfig, BNNProposer


def branin(u):
    x1, x2 = -5 + 15 * u[:, 0], 15 * u[:, 1]
    a, b, c, r, s, t = 1, 5.1 / (4 * math.pi**2), 5 / math.pi, 6, 10, 1 / (8 * math.pi)
    return -(a * (x2 - b * x1**2 + c * x1 - r) ** 2 + s * (1 - t) * np.cos(x1) + s)


H_A = np.array([[10, 3, 17, 3.5, 1.7, 8], [0.05, 10, 17, 0.1, 8, 14], [3, 3.5, 1.7, 10, 17, 8], [17, 8, 0.05, 10, 0.1, 14]])
H_P = 1e-4 * np.array([[1312, 1696, 5569, 124, 8283, 5886], [2329, 4135, 8307, 3736, 1004, 9991],
                       [2348, 1451, 3522, 2883, 3047, 6650], [4047, 8828, 8732, 5743, 1091, 381]])
H_C = np.array([1.0, 1.2, 3.0, 3.2])


def hartmann6(u):
    inner = np.sum(H_A[None] * (u[:, None, :] - H_P[None]) ** 2, axis=2)
    return np.sum(H_C[None] * np.exp(-inner), axis=1)


def rl_like_mean(u):
    ridge = np.exp(-(((u[:, 0] - 0.55) / 0.12) ** 2))
    broad = 1.0 - 0.8 * (u[:, 1] - 0.3) ** 2
    inter = 0.75 + 0.25 * np.cos(math.pi * u[:, 2] * (1 + 2 * u[:, 3]))
    return ridge * broad * inter


def rl_like(u, rng):
    scale = 0.02 + 0.3 / (1 + np.exp(-25 * (u[:, 0] - 0.7)))
    return rl_like_mean(u) + scale * rng.standard_t(3, size=len(u))


FUNCTIONS = {
    # name: (dimension, noisy objective (u, rng) -> y, true mean, maximum of the mean)
    "branin": (2, lambda u, rng: branin(u), branin, -0.397887),
    "hartmann6": (6, lambda u, rng: hartmann6(u), hartmann6, 3.32237),
    "rl_like": (4, rl_like, rl_like_mean, 1.0),
}


class OptunaProposer:
    """Optuna's samplers behind ask/tell (a batch = k ``study.ask()`` calls)."""

    def __init__(self, space: SearchSpace, seed: int, kind: str):
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        sampler = optuna.samplers.TPESampler(seed=seed) if kind == "tpe" else optuna.samplers.GPSampler(seed=seed)
        self.study = optuna.create_study(direction="maximize", sampler=sampler)
        self.space, self.pending = space, []

    def ask(self, k):
        import optuna

        out = []
        for _ in range(k):
            t = self.study.ask({n: optuna.distributions.FloatDistribution(0.0, 1.0) for n in self.space.names})
            self.pending.append(t)
            out.append([t.params[n] for n in self.space.names])
        return np.asarray(out)

    def tell(self, u, scores, budgets):
        for t, s in zip(self.pending, scores):
            self.study.tell(t, float(s))
        self.pending = []


class HEBOProposer:
    """HEBO behind ask/tell: a child process in HEBO's own environment (``benchmarks/hebo.sh``,
    which creates it on first use; ``benchmarks/hebo_bridge.py`` gives the protocol)."""

    def __init__(self, space: SearchSpace, seed: int):
        import subprocess
        from pathlib import Path

        script = Path(__file__).resolve().with_name("hebo.sh")
        self.proc = subprocess.Popen(["bash", str(script)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self._call({"init": {"dim": len(space.names), "seed": int(seed)}})

    def _call(self, msg: dict) -> dict:
        self.proc.stdin.write(json.dumps(msg) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"hebo: the bridge process exited (code {self.proc.wait()})")
        reply = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"hebo: {reply['error']}")
        return reply

    def ask(self, k):
        return np.clip(np.asarray(self._call({"ask": int(k)})["u"], float), 0.0, 1.0)

    def tell(self, u, scores, budgets):
        self._call({"tell": {"u": np.asarray(u, float).tolist(), "y": np.asarray(scores, float).tolist()}})

    def close(self):
        self.proc.stdin.close()
        self.proc.wait()


def make(method: str, space: SearchSpace, seed: int):
    if method == "random":
        return RandomProposer(space, seed)
    if method == "sobol":
        return SobolProposer(space, seed)
    if method in ("bnn-thompson", "bnn-qei"):
        return BNNProposer(space, seed, acquisition=method.split("-")[1])
    if method == "bnn-thompson-crowded":  # Thompson batches without min_distance (the old behaviour)
        return BNNProposer(space, seed, acquisition="thompson", min_distance=0.0)
    if method in ("bnn-thompson-cold", "bnn-qei-cold"):  # every refit from a fresh start
        return BNNProposer(space, seed, acquisition=method.split("-")[1], config=BNNConfig(warm_start=False))
    if method in ("tpe", "gp"):
        return OptunaProposer(space, seed, method)
    if method == "hebo":
        return HEBOProposer(space, seed)
    raise ValueError(f"method {method!r} is unknown")


def run(fn: str, method: str, seed: int, batch: int, evals: list[int]) -> tuple[dict[int, float], dict[int, float], list[float]]:
    """One optimisation run -> (regret of the best observed point after every batch, regret of
    the BNN's posterior-mean pick at each of ``evals`` (BNN methods only), seconds per batch)."""
    d, noisy, mean, best = FUNCTIONS[fn]
    space = SearchSpace({f"x{i}": Float(0.0, 1.0) for i in range(d)})
    prop = make(method, space, seed)
    rng = np.random.default_rng(10_000 + seed)
    us, ys, secs = [], [], []
    regrets, model_regrets = {}, {}
    while len(ys) < max(evals):
        t0 = time.perf_counter()
        u = prop.ask(batch)
        secs.append(time.perf_counter() - t0)
        y = noisy(u, rng)
        prop.tell(u, y, np.ones(batch))
        us.extend(u)
        ys.extend(y)
        rec = np.asarray(us)[int(np.argmax(ys))]
        regrets[len(ys)] = float(best - mean(rec[None])[0])
        if len(ys) in evals and isinstance(prop, BNNProposer):
            model_regrets[len(ys)] = float(best - mean(prop.recommend()[None])[0])
    if isinstance(prop, HEBOProposer):
        prop.close()
    return regrets, model_regrets, secs


def speed(n: int = 500, d: int = 6, k: int = 16, repeats: int = 3) -> dict:
    """Seconds for one fit plus a batch of ``k`` at ``n`` observations in ``d`` dimensions (at
    two fidelities), the first call (compiling) apart from the median of the next ones, each
    after one more observation (so each refits)."""
    space = SearchSpace({f"x{i}": Float(0.0, 1.0) for i in range(d)})
    rng = np.random.default_rng(0)
    prop = BNNProposer(space, 0)
    u = rng.uniform(size=(n, d))
    prop.tell(u, hartmann6(u) if d == 6 else -np.sum(u**2, 1), np.where(rng.uniform(size=n) < 0.5, 1e5, 8e5))
    times = []
    for _ in range(repeats + 1):
        t0 = time.perf_counter()
        prop.ask(k)
        times.append(time.perf_counter() - t0)
        v = rng.uniform(size=(1, d))
        prop.tell(v, hartmann6(v) if d == 6 else -np.sum(v**2, 1), np.array([8e5]))
    return {"benchmark": "bnn_fit_and_batch", "observations": n, "dimensions": d, "batch": k,
            "first_seconds_with_compile": round(times[0], 2), "median_seconds": round(float(np.median(times[1:])), 3)}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--functions", nargs="+", default=list(FUNCTIONS))
    p.add_argument("--methods", nargs="+", default=["bnn-thompson", "bnn-qei", "random", "sobol", "tpe", "gp"])
    p.add_argument("--evals", nargs="+", type=int, default=[64, 128])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--reps", type=int, default=10)
    p.add_argument("--speed", action="store_true", help="only time one fit + batch of 16 at 500 points in 6-d")
    p.add_argument("--json", action="store_true")
    p.add_argument("--curves", help="write every method's regret-vs-evaluations curve to this JSON file")
    p.add_argument("--plot", help="draw the curves to this image (matplotlib)")
    p.add_argument("--update-curves", action="store_true",
                   help="keep the curves already in --curves and replace only the (function, method) pairs run now")
    a = p.parse_args(argv)
    if a.speed:
        print(json.dumps(speed()))
        return
    curves = {}
    if a.update_curves and a.curves:
        try:
            with open(a.curves) as f:
                old = json.load(f)
        except FileNotFoundError:
            old = None
        if old is not None:
            if (old["batch"], old["reps"]) != (a.batch, a.reps):
                raise SystemExit(f"--update-curves: {a.curves} has batch {old['batch']}, reps {old['reps']}; "
                                 f"this run has {a.batch}, {a.reps}")
            curves = old["curves"]
    for fn in a.functions:
        for method in a.methods:
            runs, model_runs, secs, last = [], [], [], []
            for seed in range(a.reps):
                regrets, model_regrets, s = run(fn, method, seed, a.batch, a.evals)
                runs.append(regrets)
                model_runs.append(model_regrets)
                secs.extend(s)
                last.append(s[-1])  # the largest history: the surrogate's cost grows with it
            grid = sorted(runs[0])
            r = np.asarray([[run_[n] for n in grid] for run_ in runs])  # (reps, batches)
            curves.setdefault(fn, {})[method] = {"evaluations": grid, "median": np.median(r, 0).tolist(),
                                                 "q25": np.percentile(r, 25, 0).tolist(),
                                                 "q75": np.percentile(r, 75, 0).tolist()}
            for n in a.evals:
                rn = r[:, grid.index(n)]
                row = {"function": fn, "method": method, "evaluations": n, "batch": a.batch, "reps": a.reps,
                       "median_regret": float(np.median(rn)), "iqr": [float(np.percentile(rn, 25)), float(np.percentile(rn, 75))],
                       "seconds_per_batch": float(np.median(secs)),
                       "seconds_last_batch": float(np.median(last))}
                if model_runs[0]:  # the BNN's own recommendation: best posterior mean among the told
                    rm = np.asarray([m[n] for m in model_runs])
                    row["median_regret_model"] = float(np.median(rm))
                    row["iqr_model"] = [float(np.percentile(rm, 25)), float(np.percentile(rm, 75))]
                print(json.dumps(row) if a.json else row, flush=True)
    if a.curves:
        with open(a.curves, "w") as f:
            json.dump({"batch": a.batch, "reps": a.reps, "curves": curves}, f)
    if a.plot:
        plot(curves, a.plot)


def plot(curves: dict, path: str) -> None:
    """Median regret (best observed point) against evaluations, one panel per function, the
    interquartile range shaded, log scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(curves), figsize=(5 * len(curves), 4), squeeze=False)
    for ax, (fn, methods) in zip(axes[0], curves.items()):
        for method, c in methods.items():
            (line,) = ax.plot(c["evaluations"], c["median"], label=method)
            ax.fill_between(c["evaluations"], c["q25"], c["q75"], color=line.get_color(), alpha=0.15)
        ax.set_yscale("log")
        ax.set_title(fn)
        ax.set_xlabel("evaluations")
        ax.set_ylabel("simple regret (median, IQR)")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)

if __name__ == "__main__":
    main()
