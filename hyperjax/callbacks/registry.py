"""Callbacks by name, for study configurations (YAML)::

    callbacks:
      - console
      - {name: tensorboard, logdir: runs/acrobot/tb}
      - {name: wandb, project: acrobot, tags: [ppo]}

Each entry is a name or a mapping with ``name`` and the callback's keyword arguments. Classes
are imported only when named, so naming no W&B callback never imports wandb.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any, Mapping

# name -> (module, class)
NAMES: dict[str, tuple[str, str]] = {
    "console": ("hyperjax.callbacks.console", "Console"),
    "tensorboard": ("hyperjax.callbacks.tensorboard", "TensorBoard"),
    "wandb": ("hyperjax.callbacks.wandb", "WandB"),
}


def callback_class(name: str) -> type:
    """The callback class registered as ``name``."""
    module, cls = NAMES[name]
    return getattr(importlib.import_module(module), cls)


def from_config(entries: Any, path: str = "callbacks") -> list:
    """Callback objects from a configuration list; errors name the entry: ``callbacks[1]: ...``."""
    if entries is None:
        return []
    if not isinstance(entries, (list, tuple)):
        raise ValueError(f"{path}: {entries!r} must be a list of callback names or mappings with a name")
    out = []
    for i, entry in enumerate(entries):
        where = f"{path}[{i}]"
        if isinstance(entry, str):
            name, options = entry, {}
        elif isinstance(entry, Mapping) and isinstance(entry.get("name"), str):
            name, options = entry["name"], {k: v for k, v in entry.items() if k != "name"}
        else:
            raise ValueError(f"{where}: {entry!r} must be a callback name or a mapping with a name")
        if name not in NAMES:
            raise ValueError(f"{where}: callback {name!r} is unknown; allowed: {', '.join(NAMES)}")
        cls = callback_class(name)
        try:
            inspect.signature(cls).bind(**options)
        except TypeError as e:
            raise ValueError(f"{where}: {name}: {e}") from None
        try:
            out.append(cls(**options))
        except (ValueError, TypeError) as e:
            raise ValueError(f"{where}: {name}: {e}") from None
    return out
