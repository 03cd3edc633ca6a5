"""hyperjax: JAX-vectorised tuning of reinforcement-learning hyperparameters.

Importing hyperjax exposes the host's CPU cores as JAX devices (unless JAX is already
initialised, or ``XLA_FLAGS``/``HYPERJAX_HOST_DEVICES`` say otherwise) so that populations are
sharded over them; import it before running any JAX operation.
"""

from hyperjax._devices import configure_host_devices

configure_host_devices()

from hyperjax.agents import A2C, PPO, A2CHParams, PPOHParams, make_agent  # noqa: E402
from hyperjax.envs import available_envs, make_env  # noqa: E402
from hyperjax.population import Runner, get_runner, population_mesh  # noqa: E402
from hyperjax.train import TrainResult, train  # noqa: E402
from hyperjax import callbacks, schedulers, space, store  # noqa: E402
from hyperjax.space import Choice, Float, Int, SearchSpace  # noqa: E402
from hyperjax.study import StudyResult, load_study, resume, tune  # noqa: E402
from hyperjax.interop import to_optuna  # noqa: E402  (optuna itself is imported when called)

__version__ = "0.1.0"

__all__ = [
    "A2C",
    "PPO",
    "A2CHParams",
    "Choice",
    "Float",
    "Int",
    "SearchSpace",
    "StudyResult",
    "PPOHParams",
    "Runner",
    "TrainResult",
    "available_envs",
    "callbacks",
    "configure_host_devices",
    "get_runner",
    "load_study",
    "make_agent",
    "make_env",
    "population_mesh",
    "resume",
    "schedulers",
    "space",
    "store",
    "to_optuna",
    "train",
    "tune",
]
