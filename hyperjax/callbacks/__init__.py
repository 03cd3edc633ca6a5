"""Who watches a study: callables the engine calls once per tick with what the tick changed.

A callback is any callable ``callback(study, changes)``: ``changes["trials"]`` (ids of trials
that changed), ``["observations"]`` (``(trial id, curve index)`` of every new phase score),
``["decisions"]`` (the :class:`~hyperjax.study.decisions.Decision` objects applied),
``["completed"]`` (trial id -> final members) and ``["final"]`` (True on the last call, after
the study ended). It runs after the tick is committed to the store; one that raises is disabled
with a warning and the study goes on. Pass them as ``hj.tune(..., callbacks=[...])``.

- :class:`Console`: live progress (rich) in a terminal, one plain line per tick elsewhere.
"""

from hyperjax.callbacks.console import Console

__all__ = ["Console"]
