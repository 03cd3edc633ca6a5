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
