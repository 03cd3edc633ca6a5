"""Who watches a study: callables the engine calls once per tick with what the tick changed.

A callback is any callable ``callback(study, changes)``: ``changes["trials"]`` (ids of trials
that changed), ``["observations"]`` (``(trial id, curve index)`` of every new phase score),
``["decisions"]`` (the :class:`~hyperjax.study.decisions.Decision` objects applied),
``["completed"]`` (trial id -> final members) and ``["final"]`` (True on the last call, after
the study ended). It runs after the tick is committed to the store; one that raises is disabled
with a warning and the study goes on. Pass them as ``hj.tune(..., callbacks=[...])``.

- :class:`Console`: live progress (rich) in a terminal, one plain line per tick elsewhere.
- :class:`TensorBoard`: progress counters, a run per trial with its learning curve, and the
  hparams table of completed trials, through tensorboardX (no TensorFlow).
- :class:`WandB`: one Weights & Biases run per study: configuration, progress counters, every
  trial's curve, the trial table, the best trial in the summary, the report's figures
  (offline unless W&B is configured; needs ``hyperjax[wandb]``). Its W&B calls run on a
  worker thread, so a slow ``wandb.init`` or upload never holds the study up.

Neither tensorboardX nor wandb is imported before a callback is made.
"""

from hyperjax.callbacks.console import Console
from hyperjax.callbacks.tensorboard import TensorBoard
from hyperjax.callbacks.wandb import WandB

__all__ = ["Console", "TensorBoard", "WandB"]
