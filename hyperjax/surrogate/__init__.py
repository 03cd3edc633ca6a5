"""The Bayesian-neural-network surrogate: model and inference (``bnn``), batch proposals behind
the ask/tell interface (``proposer``), and variance-based importance (``importance``)."""

from hyperjax.surrogate.bnn import BNN, BNNConfig, Posterior
from hyperjax.surrogate.importance import sobol_indices
from hyperjax.surrogate.proposer import BNNProposer, features

__all__ = ["BNN", "BNNConfig", "BNNProposer", "Posterior", "features", "sobol_indices"]
