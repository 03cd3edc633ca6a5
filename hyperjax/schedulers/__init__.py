"""Schedulers: pure decisions at phase boundaries (keep / evict; PBT: copy-from + new hparams)."""

from hyperjax.schedulers.early_stopping import (
    RecordState,
    Scheduler,
    asha,
    hypertrick,
    median_stopping,
    no_stopping,
)
from hyperjax.schedulers.hyperband import Rung, hyperband_brackets, successive_halving
from hyperjax.schedulers.pbt import pbt_exploit
from hyperjax.schedulers.specs import (
    ASHA,
    PB2,
    PBT,
    Extrapolate,
    HyperTrick,
    Hyperband,
    Median,
    NoStopping,
    SuccessiveHalving,
    scheduler_spec,
)

__all__ = [
    "ASHA",
    "Extrapolate",
    "PBT",
    "PB2",
    "HyperTrick",
    "Hyperband",
    "Median",
    "NoStopping",
    "SuccessiveHalving",
    "scheduler_spec",
    "RecordState",
    "Rung",
    "Scheduler",
    "asha",
    "hyperband_brackets",
    "hypertrick",
    "median_stopping",
    "no_stopping",
    "pbt_exploit",
    "successive_halving",
]
