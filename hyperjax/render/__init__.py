"""Watching a trained agent: roll out a saved policy and draw it (a GIF, or brax's HTML viewer).

- ``watch(store, trial=None, out=None, ...)``: a trial of a stored study (the best by default).
- ``record(agent, member, ...)``: any member in hand (e.g. ``StudyResult.best_state``).
- ``rollout`` (one ``lax.scan``), ``frame_plan``, ``frames``, ``caption``, ``write_gif``,
  ``brax_html``, ``show``: the pieces they are made of.
"""

from hyperjax.render.frames import caption, frames, minatar_frame, renderer
from hyperjax.render.output import brax_html, gif_bytes, show, write_gif
from hyperjax.render.recording import Recording, record, watch
from hyperjax.render.rollout import FramePlan, Rollout, frame_plan, rollout

__all__ = ["FramePlan", "Recording", "Rollout", "brax_html", "caption", "frame_plan", "frames", "gif_bytes",
           "minatar_frame", "record", "renderer", "rollout", "show", "watch", "write_gif"]
