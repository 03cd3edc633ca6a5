"""Scheduler choices for a study: small frozen dataclasses, validated on the host.

A study names its scheduler by string (``"hypertrick"``) or passes one of these with its
options (``HyperTrick(r=0.3)``). :func:`scheduler_spec` turns either into a validated spec;
asynchronous specs build their pure JAX rule with :meth:`build`.

- ``asynchronous`` rules (HyperTrick, ASHA, median, none) decide on every phase boundary and
  freed slots are refilled at once;
- ``brackets`` (successive halving, Hyperband) run rungs synchronously: a rung's survivors are
  promoted only once every trial of the rung has reported;
- ``pbt`` keeps every slot running and exploits/explores every ``interval`` phases (``PB2``:
  explores where the BNN's upper confidence bound is highest).
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

from hyperjax import validate
from hyperjax.schedulers.early_stopping import Scheduler, asha, hypertrick, median_stopping, no_stopping
from hyperjax.schedulers.hyperband import Rung, hyperband_brackets, s_max


def _number(name: str, field: str, value, low=None, high=None, low_open=False, high_open=False, integer=False):
    """Validates a spec option on the host: ``"scheduler hypertrick: r=1.5 must be a number > 0 and < 1"``."""
    where = f"scheduler {name}"
    if integer:  # counts (phases, scores): closed bounds, and 5.0 is not accepted as 5
        validate.integer(where, field, value, low, high)
    else:
        validate.number(where, field, value, low, high, low_open, high_open)


@dataclasses.dataclass(frozen=True)
class HyperTrick:
    """HyperTrick with eviction rate ``r`` per phase (arXiv 1902.02725)."""

    r: float = 0.2
    kind: ClassVar[str] = "asynchronous"
    name: ClassVar[str] = "hypertrick"

    def __post_init__(self):
        _number(self.name, "r", self.r, 0, 1, low_open=True, high_open=True)

    def expected_phases(self, num_phases: int) -> float:
        """Expected phases a trial runs: ``sum_{p < P} (1 - r)^p``."""
        return sum((1 - self.r) ** p for p in range(num_phases))

    def build(self, num_trials: int, num_phases: int, capacity: int) -> Scheduler:
        return hypertrick(num_trials, self.r, num_phases, capacity)


@dataclasses.dataclass(frozen=True)
class ASHA:
    """Asynchronous successive halving: continue iff in the top ``1/eta`` of the rung so far."""

    eta: float = 3
    kind: ClassVar[str] = "asynchronous"
    name: ClassVar[str] = "asha"

    def __post_init__(self):
        _number(self.name, "eta", self.eta, 2)

    def build(self, num_trials: int, num_phases: int, capacity: int) -> Scheduler:
        return asha(self.eta, num_phases, capacity)


@dataclasses.dataclass(frozen=True)
class Median:
    """Median stopping once ``min_recorded`` scores exist at a phase."""

    min_recorded: int = 5
    kind: ClassVar[str] = "asynchronous"
    name: ClassVar[str] = "median"

    def __post_init__(self):
        _number(self.name, "min_recorded", self.min_recorded, 0, integer=True)

    def build(self, num_trials: int, num_phases: int, capacity: int) -> Scheduler:
        return median_stopping(num_phases, capacity, int(self.min_recorded))


@dataclasses.dataclass(frozen=True)
class NoStopping:
    """Every trial runs every phase: plain population random (or Sobol, or BNN) search."""

    kind: ClassVar[str] = "asynchronous"
    name: ClassVar[str] = "none"

    def build(self, num_trials: int, num_phases: int, capacity: int) -> Scheduler:
        return no_stopping(num_phases, capacity)


def _rung_phases(num_phases: int, eta: float, s: int) -> list[int]:
    """Cumulative phases at each of the ``s + 1`` rungs of a bracket, ending at ``num_phases``;
    strictly increasing whole phases (rung ``i`` at ``num_phases * eta^(i - s)``, rounded up)."""
    out: list[int] = []
    for i in range(s + 1):
        p = max(1, int(math.ceil(num_phases * eta ** (i - s) - 1e-9)))
        if out and p <= out[-1]:
            continue
        out.append(p)
    return out


@dataclasses.dataclass(frozen=True)
class SuccessiveHalving:
    """Synchronous successive halving (one Hyperband bracket, the most exploratory one):
    rungs at ``P / eta^s, ..., P / eta, P`` phases, keeping the top ``1/eta`` at each."""

    eta: float = 3
    kind: ClassVar[str] = "brackets"
    name: ClassVar[str] = "successive_halving"

    def __post_init__(self):
        _number(self.name, "eta", self.eta, 2)

    def brackets(self, num_phases: int) -> list[list[int]]:
        """Rung phases of each bracket (one here)."""
        return [_rung_phases(num_phases, self.eta, s_max(num_phases, self.eta))]

    def bracket_sizes(self, num_phases: int) -> list[int]:
        """Trials each bracket starts with, in proportion (scaled to the budget by the study)."""
        s = s_max(num_phases, self.eta)
        return [int(round(self.eta**s))]


@dataclasses.dataclass(frozen=True)
class Hyperband:
    """Hyperband (Li et al. 2016): successive-halving brackets from most exploratory (many
    trials, small first rung) to a plain full-budget bracket, run side by side in the slots."""

    eta: float = 3
    kind: ClassVar[str] = "brackets"
    name: ClassVar[str] = "hyperband"

    def __post_init__(self):
        _number(self.name, "eta", self.eta, 2)

    def brackets(self, num_phases: int) -> list[list[int]]:
        smax = s_max(num_phases, self.eta)
        return [_rung_phases(num_phases, self.eta, s) for s in range(smax, -1, -1)]

    def bracket_sizes(self, num_phases: int) -> list[int]:
        return [b[0].n for b in hyperband_brackets(num_phases, self.eta)]


@dataclasses.dataclass(frozen=True)
class PBT:
    """Population-based training (Jaderberg et al. 2017): every ``interval`` phases the bottom
    ``quantile`` of each bucket copies a top-``quantile`` member (params and optimizer state)
    and perturbs its hyperparameters by one of ``perturb`` or, with ``resample_prob``, draws
    them afresh from the search space."""

    interval: int = 1
    quantile: float = 0.25
    perturb: tuple[float, float] = (0.8, 1.2)
    resample_prob: float = 0.25
    kind: ClassVar[str] = "pbt"
    name: ClassVar[str] = "pbt"

    def __post_init__(self):
        _number(self.name, "interval", self.interval, 1, integer=True)
        _number(self.name, "quantile", self.quantile, 0, 0.5, low_open=True)
        _number(self.name, "resample_prob", self.resample_prob, 0, 1)
        if not isinstance(self.perturb, (tuple, list)) or len(self.perturb) != 2:
            raise ValueError(f"scheduler pbt: perturb={self.perturb!r} must be two positive factors")
        for i, f in enumerate(self.perturb):
            _number(self.name, f"perturb[{i}]", f, 0, low_open=True)


@dataclasses.dataclass(frozen=True)
class PB2(PBT):
    """Population-based training guided by the BNN (population-based bandits, Parker-Holder et
    al. 2020, with the study's Bayesian neural network over (configuration, fidelity) in place
    of their time-varying GP): at each exploit the copying member's new values are, among
    Gaussian steps of ``scale`` (unit-cube units) around the source's values on the tuned
    dimensions and the source's values themselves, those with the highest upper confidence bound
    ``mean + beta * std`` of the score the posterior predicts at the next exploit's env steps;
    picks of one exploit are kept ``min_distance`` apart (the BNN proposer's). Until the
    posterior exists (a study's first ticks) it perturbs by ``perturb`` as PBT does. The model is
    the study's BNN proposer, or a BNN told the same observations when the proposer is another."""

    resample_prob: float = 0.0
    scale: float = 0.1
    beta: float = 1.0
    candidates: int = 128
    name: ClassVar[str] = "pb2"

    def __post_init__(self):
        super().__post_init__()
        _number(self.name, "scale", self.scale, 0, 1, low_open=True)
        _number(self.name, "beta", self.beta, 0)
        _number(self.name, "candidates", self.candidates, 1, integer=True)


@dataclasses.dataclass(frozen=True)
class Extrapolate:
    """Learning-curve extrapolation: at every boundary, evict a trial when the probability that
    its score at the full budget beats the best completed trial's is below ``threshold``.

    The prediction is the Bayesian neural network's posterior over (configuration, fidelity),
    fit to every phase boundary of every trial (the study's BNN proposer if it has one): a
    trial's own early scores and everyone else's curves inform where it will end. Trials are
    kept while nothing has completed yet, and for their first ``min_phases`` phases.
    """

    threshold: float = 0.05
    min_phases: int = 1
    kind: ClassVar[str] = "extrapolate"
    name: ClassVar[str] = "extrapolate"

    def __post_init__(self):
        _number(self.name, "threshold", self.threshold, 0, 1, low_open=True, high_open=True)
        _number(self.name, "min_phases", self.min_phases, 1, integer=True)


SPECS = {c.name: c for c in (HyperTrick, ASHA, Median, NoStopping, SuccessiveHalving, Hyperband, PBT, PB2, Extrapolate)}
Spec = HyperTrick | ASHA | Median | NoStopping | SuccessiveHalving | Hyperband | PBT | PB2 | Extrapolate


def scheduler_spec(scheduler) -> Spec:
    """A validated spec from a name (default options) or a spec instance."""
    if isinstance(scheduler, str):
        if scheduler not in SPECS:
            raise ValueError(f"scheduler={scheduler!r} is unknown; allowed: {', '.join(SPECS)}")
        return SPECS[scheduler]()
    if isinstance(scheduler, tuple(SPECS.values())):
        return scheduler
    raise ValueError(f"scheduler={scheduler!r} must be a name ({', '.join(SPECS)}) or a spec such as HyperTrick(r=0.2)")


__all__ = ["ASHA", "PBT", "PB2", "Extrapolate", "HyperTrick", "Hyperband", "Median", "NoStopping", "Rung", "SPECS", "SuccessiveHalving", "scheduler_spec"]
