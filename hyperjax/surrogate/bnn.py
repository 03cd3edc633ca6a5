"""A Bayesian neural network surrogate in NumPyro: scores as a function of (configuration, fidelity).

The net maps features ``x (n, F)`` (the configuration's cube coordinates, unordered choices
one-hot, plus the fidelity) to a mean and a noise scale per input (heteroscedastic), with a
Gaussian prior on every weight. Observations are standardised; the likelihood is Student-t
(``df`` 5 by default) so that the outliers RL returns produce do not drag the mean.

Inference:

- ``"svi"`` (default, fast): a mean-field normal guide fit by SVI (Adam) in one ``lax.scan``,
  warm-started from the previous fit. Data are padded to a power-of-two capacity and masked, so
  a growing history compiles a handful of programs, not one per observation.
- ``"nuts"`` (exact, small histories): NUTS with a diagonal mass matrix.

Both end in ``num_draws`` posterior weight draws; ``predict`` evaluates every draw on a batch of
inputs (``(S, n)`` means and noise scales), which is what Thompson sampling and q-EI use.
No LAPACK call is made anywhere (no Cholesky, no QR): on XLA:CPU batched LAPACK calls inside
``vmap`` can deadlock, and none is needed here.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.infer import MCMC, NUTS, SVI, Trace_ELBO
from numpyro.infer.autoguide import AutoNormal

NOISE_SHIFT = -2.0  # softplus(-2) ~ 0.13: the prior noise scale, in standardised units
MIN_SCALE = 1e-3


@dataclasses.dataclass(frozen=True)
class BNNConfig:
    """Settings of the surrogate (static: they fix shapes and programs)."""

    hidden: tuple[int, ...] = (32, 32)
    inference: str = "svi"  # or "nuts"
    svi_steps: int = 1500
    svi_warm_steps: int = 500  # steps when warm-started from the previous fit
    learning_rate: float = 0.01
    num_draws: int = 64
    likelihood: str = "studentt"  # or "normal"
    df: float = 5.0
    nuts_warmup: int = 300
    nuts_samples: int = 64

    def __post_init__(self):
        if self.inference not in ("svi", "nuts"):
            raise ValueError(f"bnn: inference={self.inference!r} is unknown; allowed: svi, nuts")
        if self.likelihood not in ("studentt", "normal"):
            raise ValueError(f"bnn: likelihood={self.likelihood!r} is unknown; allowed: studentt, normal")
        if not self.hidden or any((not isinstance(h, int)) or h < 1 for h in self.hidden):
            raise ValueError(f"bnn: hidden={self.hidden!r} must be a non-empty tuple of positive ints")
        for f in ("svi_steps", "svi_warm_steps", "num_draws", "nuts_warmup", "nuts_samples"):
            v = getattr(self, f)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"bnn: {f}={v!r} must be an integer >= 1")


def forward(weights: dict[str, jax.Array], x: jax.Array, num_layers: int) -> tuple[jax.Array, jax.Array]:
    """One weight draw on inputs ``x (n, F)`` -> ``(mean (n,), noise scale (n,))``."""
    h = x
    for i in range(num_layers):
        h = jnp.tanh(h @ weights[f"w{i}"] + weights[f"b{i}"])
    out = h @ weights["w_out"] + weights["b_out"]
    return out[:, 0], jax.nn.softplus(out[:, 1] + NOISE_SHIFT) + MIN_SCALE


def num_weights(features: int, hidden: tuple[int, ...]) -> int:
    sizes = (features, *hidden, 2)
    return sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))


def data_weight(n: int, features: int, hidden: tuple[int, ...]) -> float:
    """The likelihood's weight: ``max(1, 4 * weights / n)``, at most 50.

    A mean-field posterior fit to fewer points than the net has weights is pulled back to the
    prior and fits nothing (measured on a sine with 60 points: mean error 0.62 untempered, 0.06
    with this weight; noise levels 0.05 / 0.5 recovered as 0.045 / 0.43 from 300 points).
    Weighting the data until it outnumbers the weights four to one is a tempered ("cold")
    posterior; it returns to the plain posterior once ``n`` exceeds four times the weights.
    """
    return float(min(50.0, max(1.0, 4.0 * num_weights(features, hidden) / max(n, 1))))


def model(x, y, mask, weight, hidden: tuple[int, ...], likelihood: str, df: float):
    """The BNN: ``x (n, F)``, ``y (n,)`` standardised scores, ``mask (n,)`` real rows,
    ``weight`` the likelihood's weight (see :func:`data_weight`)."""
    fan_in = x.shape[1]
    weights = {}
    for i, width in enumerate(hidden):
        weights[f"w{i}"] = numpyro.sample(f"w{i}", dist.Normal(0.0, 1.0 / math.sqrt(fan_in)).expand([fan_in, width]).to_event(2))
        weights[f"b{i}"] = numpyro.sample(f"b{i}", dist.Normal(0.0, 1.0).expand([width]).to_event(1))
        fan_in = width
    weights["w_out"] = numpyro.sample("w_out", dist.Normal(0.0, 1.0 / math.sqrt(fan_in)).expand([fan_in, 2]).to_event(2))
    weights["b_out"] = numpyro.sample("b_out", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
    mean, scale = forward(weights, x, len(hidden))
    noise = dist.StudentT(df, mean, scale) if likelihood == "studentt" else dist.Normal(mean, scale)
    with numpyro.plate("data", x.shape[0]), numpyro.handlers.mask(mask=mask), numpyro.handlers.scale(scale=weight):
        numpyro.sample("y", noise, obs=y)


def _capacity(n: int) -> int:
    return max(64, 1 << (int(n) - 1).bit_length())


@dataclasses.dataclass
class Posterior:
    """Posterior weight draws (leading axis S) and the standardisation of ``y``."""

    draws: dict[str, jax.Array]
    y_mean: float
    y_std: float
    num_layers: int

    def predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``x (n, F)`` -> means and noise scales ``(S, n)`` in the scores' own units."""
        mean, scale = _predict_jit(self.draws, jnp.asarray(x, jnp.float32), self.num_layers)
        return np.asarray(mean) * self.y_std + self.y_mean, np.asarray(scale) * self.y_std


_predict_jit = jax.jit(
    lambda draws, x, num_layers: jax.vmap(lambda w: forward(w, x, num_layers))(draws), static_argnums=2
)


_PROGRAMS: dict[tuple, Any] = {}


class BNN:
    """Fit-and-predict wrapper keeping the last SVI solution for warm starts."""

    def __init__(self, config: BNNConfig | None = None):
        self.config = config or BNNConfig()
        self._params = None  # last SVI guide params (warm start)
        self._shape = None  # (capacity, features) the params belong to

    def fit(self, key: jax.Array, x: np.ndarray, y: np.ndarray) -> Posterior:
        """Fits the posterior to ``x (n, F)``, ``y (n,)`` (finite values only)."""
        x = np.asarray(x, np.float32)
        y = np.asarray(y, np.float64)
        if x.ndim != 2 or y.shape != (x.shape[0],):
            raise ValueError(f"bnn: x must be (n, F) and y (n,), got {x.shape} and {y.shape}")
        if not np.all(np.isfinite(y)) or not np.all(np.isfinite(x)):
            raise ValueError("bnn: x and y must be finite (drop failed trials before fitting)")
        n, f = x.shape
        y_mean = float(y.mean()) if n else 0.0
        y_std = float(y.std()) if n > 1 else 1.0
        if not np.isfinite(y_std) or y_std < 1e-8:  # a constant objective: nothing to scale
            y_std = 1.0
        ys = ((y - y_mean) / y_std).astype(np.float32)
        cap = _capacity(n)
        xp = np.zeros((cap, f), np.float32)
        yp = np.zeros(cap, np.float32)
        mp = np.zeros(cap, bool)
        xp[:n], yp[:n], mp[:n] = x, ys, True
        c = self.config
        w = np.float32(data_weight(n, f, c.hidden))
        if c.inference == "nuts":
            draws = self._nuts(key, xp, yp, mp, w)
        else:
            draws = self._svi(key, xp, yp, mp, w)
        return Posterior(draws, y_mean, y_std, len(c.hidden))

    # -- SVI ---------------------------------------------------------------------------------
    def _svi_program(self, cap: int, f: int, steps: int):
        c = self.config
        # Programs are shared by every BNN with the same settings: a new proposer (a new
        # study, a new benchmark repetition) compiles nothing.
        cache_key = (c, cap, f, steps)
        if cache_key in _PROGRAMS:
            return _PROGRAMS[cache_key]
        mdl = lambda x, y, m, w: model(x, y, m, w, c.hidden, c.likelihood, c.df)  # noqa: E731
        guide = AutoNormal(mdl, init_scale=0.01)
        svi = SVI(mdl, guide, numpyro.optim.Adam(c.learning_rate), Trace_ELBO())

        def run(key, x, y, m, w, init_params):
            k_init, k_draw = jax.random.split(key)
            state = svi.init(k_init, x, y, m, w, init_params=init_params)
            state, _ = jax.lax.scan(lambda s, _: (svi.update(s, x, y, m, w)[0], None), state, None, length=steps)
            params = svi.get_params(state)
            draws = guide.sample_posterior(k_draw, params, sample_shape=(c.num_draws,))
            return params, draws

        def run_cold(key, x, y, m, w):
            return run(key, x, y, m, w, None)

        prog = (jax.jit(run), jax.jit(run_cold), guide)
        _PROGRAMS[cache_key] = prog
        return prog

    def _svi(self, key, x, y, m, w):
        c = self.config
        cap, f = x.shape
        warm = self._params is not None and self._shape == (cap, f)
        steps = c.svi_warm_steps if warm else c.svi_steps
        run_warm, run_cold, guide = self._svi_program(cap, f, steps)
        if warm:
            # AutoNormal's params are loc/scale per site; init_params wants unconstrained values
            # of the model's sites, i.e. the locs.
            init = {k[: -len("_auto_loc")]: v for k, v in self._params.items() if k.endswith("_auto_loc")}
            params, draws = run_warm(key, x, y, m, w, init)
        else:
            params, draws = run_cold(key, x, y, m, w)
        self._params, self._shape = params, (cap, f)
        return {k: v for k, v in draws.items() if not k.startswith("_")}

    # -- NUTS --------------------------------------------------------------------------------
    def _nuts(self, key, x, y, m, w):
        c = self.config
        mdl = lambda x, y, m, w: model(x, y, m, w, c.hidden, c.likelihood, c.df)  # noqa: E731
        mcmc = MCMC(NUTS(mdl, dense_mass=False), num_warmup=c.nuts_warmup, num_samples=c.nuts_samples,
                    progress_bar=False)
        mcmc.run(key, x, y, m, w)
        draws = mcmc.get_samples()
        if c.nuts_samples != c.num_draws:
            idx = np.linspace(0, c.nuts_samples - 1, c.num_draws).round().astype(int)
            draws = {k: v[idx] for k, v in draws.items()}
        return draws
