"""Batch Bayesian optimisation on test functions: the BNN proposer against random, Sobol and
Optuna's TPE and GP samplers, side by side in one run.

    python benchmarks/surrogate.py --json [--functions branin hartmann6 rl_like] [--reps 10]
    python benchmarks/surrogate.py --speed      # fit + batch of 16 at 500 observations, 6-d

Every method proposes batches of ``--batch`` (8) points, evaluated then told together, up to
the largest of ``--evals`` (64 128). Functions are maximised (Branin and Hartmann-6 negated);
the simple regret is ``f* - f(x_rec)`` with ``x_rec`` the evaluated point with the best
*observed* value (for the noisy function that is what a user would pick). One JSON line per
(function, method, evaluations): median and interquartile range of the regret over ``--reps``
seeds, and the proposer's median seconds per batch.

``rl_like`` (4-d, noisy, heteroscedastic) imitates a return landscape: a narrow ridge in a
learning-rate-like coordinate, a broad optimum in a discount-like one, an interaction of the
last two, and Student-t (3 dof) noise whose scale grows from 0.02 to 0.32 as the "learning
rate" passes 0.7 (unstable training is noisy). Its maximum 1.0 is at u = (0.55, 0.3, 0, *).
Optuna (TPE, GP) comes with ``pip install -e ".[bench]"``; its GP sampler needs PyTorch.
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np

from hyperjax.proposers import RandomProposer, SobolProposer
from hyperjax.space import Float, SearchSpace
from hyperjax.surrogate import BNNProposer


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


def make(method: str, space: SearchSpace, seed: int):
    if method == "random":
        return RandomProposer(space, seed)
    if method == "sobol":
        return SobolProposer(space, seed)
    if method in ("bnn-thompson", "bnn-qei"):
        return BNNProposer(space, seed, acquisition=method.split("-")[1])
    if method in ("tpe", "gp"):
        return OptunaProposer(space, seed, method)
    raise ValueError(f"method {method!r} is unknown")


def run(fn: str, method: str, seed: int, batch: int, evals: list[int]) -> tuple[dict[int, float], list[float]]:
    d, noisy, mean, best = FUNCTIONS[fn]
    space = SearchSpace({f"x{i}": Float(0.0, 1.0) for i in range(d)})
    prop = make(method, space, seed)
    rng = np.random.default_rng(10_000 + seed)
    us, ys, secs = [], [], []
    regrets = {}
    while len(ys) < max(evals):
        t0 = time.perf_counter()
        u = prop.ask(batch)
        secs.append(time.perf_counter() - t0)
        y = noisy(u, rng)
        prop.tell(u, y, np.ones(batch))
        us.extend(u)
        ys.extend(y)
        for n in evals:
            if len(ys) == n:
                rec = np.asarray(us)[int(np.argmax(ys))]
                regrets[n] = float(best - mean(rec[None])[0])
    return regrets, secs


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
    a = p.parse_args(argv)
    if a.speed:
        print(json.dumps(speed()))
        return
    for fn in a.functions:
        for method in a.methods:
            per_n = {n: [] for n in a.evals}
            secs, last = [], []
            for seed in range(a.reps):
                regrets, s = run(fn, method, seed, a.batch, a.evals)
                for n in a.evals:
                    per_n[n].append(regrets[n])
                secs.extend(s)
                last.append(s[-1])  # the largest history: the surrogate's cost grows with it
            for n in a.evals:
                r = np.asarray(per_n[n])
                row = {"function": fn, "method": method, "evaluations": n, "batch": a.batch, "reps": a.reps,
                       "median_regret": float(np.median(r)), "iqr": [float(np.percentile(r, 25)), float(np.percentile(r, 75))],
                       "seconds_per_batch": float(np.median(secs)),
                       "seconds_last_batch": float(np.median(last))}
                print(json.dumps(row) if a.json else row, flush=True)


if __name__ == "__main__":
    main()
