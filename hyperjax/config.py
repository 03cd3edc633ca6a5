"""A study's configuration as plain data (JSON-able dicts), and back.

The store keeps this dict; ``resume`` rebuilds the study from it; ``tune`` on an existing store
compares it field by field (:func:`diff`) and refuses to continue a study with other settings.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import numpy as np

from hyperjax.agents import AGENTS, ActorCriticAgent
from hyperjax.schedulers.specs import SPECS
from hyperjax.space import Choice, Float, Int, SearchSpace

_DIMS = {"Float": Float, "Int": Int, "Choice": Choice}


def plain(v: Any) -> Any:
    """``v`` as JSON holds it: numpy scalars as Python values, tuples as lists, keys as str."""
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, (tuple, list)):
        return [plain(x) for x in v]
    if isinstance(v, Mapping):
        return {str(k): plain(x) for k, x in v.items()}
    return v


def _tuples(v: Any) -> Any:
    return tuple(_tuples(x) for x in v) if isinstance(v, list) else v


def agent_to_dict(agent: ActorCriticAgent) -> dict:
    """``{"name": "ppo", "env": ..., <every static setting>}``."""
    return {"name": agent.name, **{f.name: plain(getattr(agent, f.name)) for f in dataclasses.fields(agent)}}


def agent_from_dict(d: Mapping) -> ActorCriticAgent:
    d = dict(d)
    cls = AGENTS[d.pop("name")]
    return cls(**{k: _tuples(v) for k, v in d.items()})


def space_to_dict(space: SearchSpace) -> dict:
    """``{name: {"type": "Float", "low": ..., ...}}`` in the space's order."""
    return {n: {"type": type(dim).__name__, **plain(dataclasses.asdict(dim))} for n, dim in space.dims.items()}


def space_from_dict(d: Mapping) -> SearchSpace:
    dims = {}
    for name, spec in d.items():
        spec = dict(spec)
        cls = _DIMS[spec.pop("type")]
        if cls is Choice:
            spec["choices"] = tuple(_tuples(c) for c in spec["choices"])
        dims[name] = cls(**spec)
    return SearchSpace(dims)


def scheduler_to_dict(spec) -> dict:
    return {"name": spec.name, **plain(dataclasses.asdict(spec))}


def scheduler_from_dict(d: Mapping):
    d = dict(d)
    return SPECS[d.pop("name")](**{k: _tuples(v) for k, v in d.items()})


def diff(old: Any, new: Any, path: str = "") -> list[str]:
    """Dotted paths at which two plain configurations differ, with both values."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in list(old) + [k for k in new if k not in old]:
            p = f"{path}.{k}" if path else str(k)
            if k not in old:
                out.append(f"{p}: (absent) -> {new[k]!r}")
            elif k not in new:
                out.append(f"{p}: {old[k]!r} -> (absent)")
            else:
                out.extend(diff(old[k], new[k], p))
        return out
    return [] if old == new else [f"{path}: {old!r} -> {new!r}"]


# what a study configuration (YAML, or the store's ``config``) may hold besides agent/space/scheduler
_TUNE_KEYS = ("proposer", "budget", "phase_steps", "trial_steps", "slots", "seeds", "seed", "eval_episodes",
              "max_trials", "max_seconds", "fixed", "snapshot_every", "snapshot_seconds", "keep_params", "objective",
              "transfer_from", "compact", "reevaluate", "reevaluate_episodes",
              "reevaluate_seeds")
KEYS = ("agent", "space", "scheduler", "devices", "callbacks") + _TUNE_KEYS


def tune_arguments(c: Mapping) -> tuple[ActorCriticAgent, SearchSpace, dict]:
    """``(agent, space, keyword arguments of hj.tune)`` from a configuration dict (a YAML file's
    or a store's). Errors name the configuration's key: ``scheduler: ... r=1.5 must be ...``.
    A ``callbacks`` list (names or ``{name: ..., **options}``, see
    ``hyperjax.callbacks.registry``) becomes the ``callbacks`` argument."""
    if not isinstance(c, Mapping):
        raise ValueError(f"config: expected a mapping of settings, got {type(c).__name__}")
    unknown = [k for k in c if k not in KEYS]
    if unknown:
        raise ValueError(f"config: unknown key(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(KEYS)}")
    for k in ("agent", "space"):
        if k not in c:
            raise ValueError(f"config: {k!r} is missing")

    def section(path, fn, value):
        try:
            return fn(value)
        except (ValueError, TypeError, KeyError, AttributeError) as e:
            msg = e.args[0] if isinstance(e, KeyError) and e.args else e
            raise ValueError(f"{path}: {msg}") from None

    agent = section("agent", agent_from_dict, c["agent"])
    space = section("space", lambda d: space_from_dict({n: _dim_checked(n, v) for n, v in d.items()}), c["space"])
    kwargs = {k: c[k] for k in _TUNE_KEYS if k in c and c[k] is not None}
    if "scheduler" in c:
        kwargs["scheduler"] = section("scheduler", scheduler_from_dict, c["scheduler"]) if isinstance(
            c["scheduler"], Mapping) else c["scheduler"]
    if isinstance(kwargs.get("proposer"), Mapping):
        raise ValueError(f"proposer: {kwargs['proposer']!r} is a custom object; pass it to hj.resume(store, proposer=...)")
    if isinstance(kwargs.get("seed"), Mapping):
        from hyperjax.rng import load_key

        kwargs["seed"] = load_key(kwargs["seed"]["key"])
    if "fixed" in kwargs and not kwargs["fixed"]:
        del kwargs["fixed"]
    if c.get("callbacks"):  # who watches the study: not part of the study (a resume may name others)
        from hyperjax.callbacks.registry import from_config

        kwargs["callbacks"] = from_config(c["callbacks"])
    return agent, space, kwargs


def _dim_checked(name: str, spec: Any) -> Mapping:
    if not isinstance(spec, Mapping) or spec.get("type") not in _DIMS:
        raise ValueError(f"{name}: {spec!r} must be a mapping with type: one of {', '.join(_DIMS)}")
    return spec
