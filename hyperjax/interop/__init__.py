"""Other tools reading hyperjax studies: ``to_optuna`` writes a study's store into an Optuna
storage (for ``optuna-dashboard`` and ``optuna.visualization``). Optional dependencies are
imported when called, never at import."""

from hyperjax.interop.optuna import to_optuna

__all__ = ["to_optuna"]
