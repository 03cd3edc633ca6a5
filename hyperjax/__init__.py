"""hyperjax: JAX-vectorised tuning of reinforcement-learning hyperparameters.

Importing hyperjax exposes the host's CPU cores as JAX devices (unless JAX is already
initialised, or ``XLA_FLAGS``/``HYPERJAX_HOST_DEVICES`` say otherwise) so that populations are
sharded over them; import it before running any JAX operation. It also turns on JAX's
persistent compilation cache in ``~/.cache/hyperjax/jax`` unless JAX already has one
(``$HYPERJAX_COMPILE_CACHE=0`` turns it off, a path moves it: ``hyperjax.compile_cache``).
``hj.report``/``hj.reports`` (plotly), ``hj.watch``/``hj.render``, ``hj.analysis`` and
``hj.transfer`` are imported on first use.
"""

from hyperjax._devices import configure_host_devices
from hyperjax import compile_cache

configure_host_devices()
compile_cache.configure()

from hyperjax.agents import A2C, PPO, A2CHParams, PPOHParams, make_agent  # noqa: E402
from hyperjax.envs import available_envs, make_env  # noqa: E402
from hyperjax.population import Runner, get_runner, population_mesh  # noqa: E402
from hyperjax.train import TrainResult, train  # noqa: E402
from hyperjax import callbacks, distributed, schedulers, space, store  # noqa: E402
from hyperjax.space import Choice, Float, Int, SearchSpace  # noqa: E402
from hyperjax.study import StudyResult, load_study, resume, tune  # noqa: E402
from hyperjax.interop import to_optuna  # noqa: E402  (optuna itself is imported when called)

__version__ = "0.1.0"

# name -> (module, attribute or None for the module itself): imported on first use, so that
# importing hyperjax does not pay for plotly
_LAZY = {
    "report": ("hyperjax.reports", "report"),
    "reports": ("hyperjax.reports", None),
    "watch": ("hyperjax.render", "watch"),
    "render": ("hyperjax.render", None),
    "analysis": ("hyperjax.analysis", None),
    "transfer": ("hyperjax.transfer", None),
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        mod = importlib.import_module(module)
        return mod if attr is None else getattr(mod, attr)
    raise AttributeError(f"module 'hyperjax' has no attribute {name!r}")

__all__ = [
    "A2C",
    "PPO",
    "A2CHParams",
    "analysis",
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
    "compile_cache",
    "configure_host_devices",
    "distributed",
    "get_runner",
    "load_study",
    "make_agent",
    "make_env",
    "population_mesh",
    "render",
    "report",
    "reports",
    "resume",
    "schedulers",
    "space",
    "store",
    "to_optuna",
    "train",
    "transfer",
    "tune",
    "watch",
]
