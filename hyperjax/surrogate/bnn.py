"""A Bayesian neural network surrogate in NumPyro: scores as a function of (configuration, fidelity).

The net maps features ``x (n, F)`` (the configuration's cube coordinates, unordered choices
one-hot, plus the fidelity) to a mean and a noise scale per input (heteroscedastic), with a
Gaussian prior on every weight. Observations are standardised; the likelihood is Student-t
(``df`` 5 by default) so that the outliers RL returns produce do not drag the mean.

Inference:

- ``"svi"`` (default, fast): an ensemble of ``ensemble`` mean-field normal guides, each fit by
  SVI (Adam) in one ``lax.scan`` from its own random initialisation (``vmap`` over members),
  warm-started from the previous fit; their draws are pooled. One mean-field fit is badly
  overconfident (Hartmann-6 from 128 random points, 3 seeds: 19% of held-out values within one
  posterior std, rank correlation 0.84; four members: 65%, 0.87), and members disagree most
  where there are no data, which is what Thompson sampling needs. Each member's mean also
  carries a fixed random function drawn from the weight prior (``prior_functions`` scales it;
  "randomized prior functions", Osband et al. 2018): where data pin the members down they
  cancel it, away from the data the members keep their different priors, so the spread grows
  there (1-d set, data in [0, 0.4]: std at 1.0 is 1.5-1.7x the in-data one without, 3.6-7.3x
  with scale 3). Data are padded to a power-of-two capacity and masked, so a growing history
  compiles a handful of programs, not one per observation.
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
    svi_steps: int = 3000
    svi_warm_steps: int = 1000  # steps when warm-started from the previous fit
    learning_rate: float = 0.02
    num_draws: int = 64
    ensemble: int = 4  # independent SVI fits (different initialisations) pooled into one posterior
    prior_functions: float = 3.0  # scale of each member's fixed random prior function (0: none)
    likelihood: str = "studentt"  # or "normal"
    df: float = 5.0
    nuts_warmup: int = 300
    nuts_samples: int = 64

    def __post_init__(self):
        if self.inference not in ("svi", "nuts"):
            raise ValueError(f"bnn: inference={self.inference!r} is unknown; allowed: svi, nuts")
        if self.likelihood not in ("studentt", "normal"):
            raise ValueError(f"bnn: likelihood={self.likelihood!r} is unknown; allowed: studentt, normal")
        if not (isinstance(self.prior_functions, (int, float)) and math.isfinite(self.prior_functions)
                and self.prior_functions >= 0):
            raise ValueError(f"bnn: prior_functions={self.prior_functions!r} must be a finite number >= 0")
        if not self.hidden or any((not isinstance(h, int)) or h < 1 for h in self.hidden):
            raise ValueError(f"bnn: hidden={self.hidden!r} must be a non-empty tuple of positive ints")
        for f in ("svi_steps", "svi_warm_steps", "num_draws", "ensemble", "nuts_warmup", "nuts_samples"):
            v = getattr(self, f)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"bnn: {f}={v!r} must be an integer >= 1")


def _net(weights: dict[str, jax.Array], x: jax.Array, num_layers: int, prefix: str = "") -> jax.Array:
    h = x
    for i in range(num_layers):
        h = jnp.tanh(h @ weights[f"{prefix}w{i}"] + weights[f"{prefix}b{i}"])
    return h @ weights[f"{prefix}w_out"] + weights[f"{prefix}b_out"]


def forward(weights: dict[str, jax.Array], x: jax.Array, num_layers: int) -> tuple[jax.Array, jax.Array]:
    """One weight draw on inputs ``x (n, F)`` -> ``(mean (n,), noise scale (n,))``. Weights
    named ``prior_*`` (a member's fixed random prior function) add to the mean."""
    out = _net(weights, x, num_layers)
    mean = out[:, 0]
    if "prior_w_out" in weights:
        mean = mean + _net(weights, x, num_layers, "prior_")[:, 0]
    return mean, jax.nn.softplus(out[:, 1] + NOISE_SHIFT) + MIN_SCALE


def prior_function(key: jax.Array, features: int, hidden: tuple[int, ...], scale: float) -> dict[str, jax.Array]:
    """A fixed random function drawn from the weight prior, its output times ``scale``; keys
    ``prior_*`` (see :func:`forward`)."""
    sizes = (features, *hidden, 2)
    keys = jax.random.split(key, 2 * len(sizes))
    out = {}
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        name = "_out" if i == len(hidden) else str(i)
        mult = scale if name == "_out" else 1.0
        out[f"prior_w{name}"] = mult * jax.random.normal(keys[2 * i], (a, b)) / math.sqrt(a)
        out[f"prior_b{name}"] = mult * jax.random.normal(keys[2 * i + 1], (b,))
    return out


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


def model(x, y, mask, weight, hidden: tuple[int, ...], likelihood: str, df: float, prior_fn=None):
    """The BNN: ``x (n, F)``, ``y (n,)`` standardised scores, ``mask (n,)`` real rows,
    ``weight`` the likelihood's weight (see :func:`data_weight`), ``prior_fn`` an optional fixed
    random function added to the mean (see :func:`prior_function`)."""
    fan_in = x.shape[1]
    weights = {}
    for i, width in enumerate(hidden):
        weights[f"w{i}"] = numpyro.sample(f"w{i}", dist.Normal(0.0, 1.0 / math.sqrt(fan_in)).expand([fan_in, width]).to_event(2))
        weights[f"b{i}"] = numpyro.sample(f"b{i}", dist.Normal(0.0, 1.0).expand([width]).to_event(1))
        fan_in = width
    weights["w_out"] = numpyro.sample("w_out", dist.Normal(0.0, 1.0 / math.sqrt(fan_in)).expand([fan_in, 2]).to_event(2))
    weights["b_out"] = numpyro.sample("b_out", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
    mean, scale = forward({**weights, **(prior_fn or {})}, x, len(hidden))
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
        self._anchors = None  # each member's fixed prior function (leading axis: members)

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
        mdl = lambda x, y, m, w, a: model(x, y, m, w, c.hidden, c.likelihood, c.df, a)  # noqa: E731
        guide = AutoNormal(mdl, init_scale=0.01)
        svi = SVI(mdl, guide, numpyro.optim.Adam(c.learning_rate), Trace_ELBO())
        per_member = -(-c.num_draws // c.ensemble)

        def member(key, anchor, x, y, m, w, init_params):
            k_init, k_draw = jax.random.split(key)
            state = svi.init(k_init, x, y, m, w, anchor, init_params=init_params)
            state, _ = jax.lax.scan(lambda s, _: (svi.update(s, x, y, m, w, anchor)[0], None), state, None, length=steps)
            params = svi.get_params(state)
            draws = guide.sample_posterior(k_draw, params, sample_shape=(per_member,))
            draws = {k: v for k, v in draws.items() if not k.startswith("_")}
            draws.update(jax.tree.map(lambda a: jnp.broadcast_to(a, (per_member, *a.shape)), anchor))
            return params, draws

        def pooled(params, draws):  # (E, D, ...) member draws -> (num_draws, ...)
            return params, jax.tree.map(lambda a: a.reshape(-1, *a.shape[2:])[: c.num_draws], draws)

        def run(key, anchors, x, y, m, w, init_params):
            keys = jax.random.split(key, c.ensemble)
            # init_params None (a cold start) is an empty pytree: mapping it over axis 0 is a no-op
            fit_members = jax.vmap(member, in_axes=(0, 0, None, None, None, None, 0))
            return pooled(*fit_members(keys, anchors, x, y, m, w, init_params))

        def run_cold(key, anchors, x, y, m, w):
            return run(key, anchors, x, y, m, w, None)

        prog = (jax.jit(run), jax.jit(run_cold), guide)
        _PROGRAMS[cache_key] = prog
        return prog

    def _svi(self, key, x, y, m, w):
        c = self.config
        cap, f = x.shape
        k_fit, k_prior = jax.random.split(key)
        if self._anchors is None or self._anchors["prior_w0"].shape[1] != f:
            # one fixed prior function per member, kept across refits (warm starts stay coherent)
            self._anchors = jax.vmap(lambda k: prior_function(k, f, c.hidden, c.prior_functions))(
                jax.random.split(k_prior, c.ensemble))
        warm = self._params is not None and self._shape == (cap, f)
        steps = c.svi_warm_steps if warm else c.svi_steps
        run_warm, run_cold, guide = self._svi_program(cap, f, steps)
        if warm:
            # AutoNormal's params are loc/scale per site; init_params wants unconstrained values
            # of the model's sites, i.e. the locs.
            init = {k[: -len("_auto_loc")]: v for k, v in self._params.items() if k.endswith("_auto_loc")}
            params, draws = run_warm(k_fit, self._anchors, x, y, m, w, init)
        else:
            params, draws = run_cold(k_fit, self._anchors, x, y, m, w)
        self._params, self._shape = params, (cap, f)
        return draws

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
