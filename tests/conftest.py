import os

# Tests run on the host's default device layout; sharding tests start their own processes.
os.environ.setdefault("HYPERJAX_HOST_DEVICES", "2")
# No persistent compilation cache in tests (their subprocesses inherit this): a cache hit emits
# no compile event, so the compile-count checks would pass whether or not the code under test
# compiles; tests/test_compile_cache.py turns it on in a directory of its own.
os.environ.setdefault("HYPERJAX_COMPILE_CACHE", "0")

import pytest  # noqa: E402

import hyperjax  # noqa: E402,F401  (configures host devices before JAX initialises)

# A small study every reader of a store can share (reports, Optuna export, loggers, rendering):
# PPO on CartPole with tiny networks, 6 slots, 4 phases of 256 env steps per trial.
SMALL_STUDY = {
    "agent": {"name": "ppo", "env": "CartPole-v1", "num_envs": 4, "num_steps": 16, "num_minibatches": 1,
              "num_epochs": 1, "hidden": [16]},
    "space": {"learning_rate": {"type": "Float", "low": 1.0e-4, "high": 1.0e-2, "log": True},
              "gamma": {"type": "Choice", "choices": [0.9, 0.99, 0.999], "ordered": True}},
    "scheduler": {"name": "hypertrick", "r": 0.3},
    "budget": 6 * 4 * 256 * 4, "phase_steps": 256, "trial_steps": 1024, "slots": 6, "eval_episodes": 2, "seed": 3,
    "reevaluate": 8,  # the leaders re-evaluated at the end: every reader sees reeval scores
}


def _small_store(tmp_path_factory, name: str, **overrides) -> str:
    from hyperjax.config import tune_arguments

    config = {**SMALL_STUDY, **overrides}
    directory = str(tmp_path_factory.mktemp(name) / "store")
    agent, space, kwargs = tune_arguments(config)
    hyperjax.tune(agent, space, store=directory, **kwargs)
    return directory


@pytest.fixture(scope="session")
def hypertrick_store(tmp_path_factory) -> str:
    """A finished HyperTrick study's store (~15 s once per session). Read it, do not write it."""
    return _small_store(tmp_path_factory, "hypertrick")


@pytest.fixture(scope="session")
def pbt_store(tmp_path_factory) -> str:
    """A finished PBT study's store (exploit/explore lineages). Read it, do not write it."""
    return _small_store(tmp_path_factory, "pbt", scheduler={"name": "pbt"})


def expected_best(res):
    """The trial a finished study must name as its best, worked out from its records: with its
    leaders re-evaluated (``tune(reevaluate=...)``, two or more of them) the one with the
    highest re-evaluation (ties: the higher first objective, then the earlier trial); else the
    scored trial with the highest first objective (ties: the earlier trial)."""
    import math

    from hyperjax.study.records import final_objective

    scored = [t for t in res.trials if t.scored and math.isfinite(final_objective(res.objective, t))]
    first = sorted(scored, key=lambda t: (-final_objective(res.objective, t), t.id))
    re = [t for t in first if math.isfinite(t.reeval_score)]
    if len(re) >= 2:
        return max(re, key=lambda t: (t.reeval_score, -first.index(t)))
    return first[0] if first else None
