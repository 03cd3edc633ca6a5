"""Watching a trained member play: ``record`` (agent and member in hand) and ``watch`` (a trial
of a study's store), both giving a :class:`Recording` that shows itself in a notebook."""

from __future__ import annotations

import base64
import dataclasses
import html as htmlmod
import os
from pathlib import Path
from typing import Any

import jax
import numpy as np

from hyperjax import validate
from hyperjax.render.frames import caption, frames, renderer
from hyperjax.render.output import brax_html, check_fps, gif_bytes, write_gif
from hyperjax.render.rollout import Rollout, frame_plan, rollout
from hyperjax.rng import as_key
from hyperjax.study.reader import load_study, load_trial_params


@dataclasses.dataclass(frozen=True, eq=False)
class Recording:
    """Episodes of one member: frames (gymnax envs) or brax's viewer page, and what happened."""

    env: str
    label: str  # e.g. "trial 3, member 0, seed 0, greedy"
    returns: np.ndarray  # (E,) undiscounted return of each recorded episode
    lengths: np.ndarray  # (E,) steps of each
    rollout: Rollout
    fps: float
    frames: np.ndarray | None  # (N, H, W, 3) uint8, N = sum(lengths + 1); None for brax
    html: str | None  # brax's viewer page; None for gymnax envs
    path: Path | None = None  # where it was written, if it was

    def gif_bytes(self) -> bytes:
        """The frames as an animated GIF."""
        if self.frames is None:
            raise ValueError(f"{self.env} renders to an HTML viewer, not a GIF")
        return gif_bytes(self.frames, self.fps)

    def save(self, path: str | os.PathLike) -> "Recording":
        """Writes the GIF (``.gif``) or, for brax, the viewer page (``.html``); returns the
        recording with ``path`` set."""
        path = Path(path)
        if self.html is not None:
            if path.suffix.lower() not in (".html", ".htm"):
                raise ValueError(f"out={str(path)!r}: {self.env} renders to brax's HTML viewer; give a .html path")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(self.html)
        else:
            if path.suffix.lower() != ".gif":
                raise ValueError(f"out={str(path)!r}: {self.env} renders to a GIF; give a .gif path")
            write_gif(self.frames, path, self.fps)
        return dataclasses.replace(self, path=path)

    def _repr_html_(self) -> str:
        # Jupyter shows this for a bare `hj.watch(...)`, with no IPython import on our side.
        if self.html is not None:
            return self.html
        data = base64.b64encode(self.gif_bytes()).decode("ascii")
        return f'<img src="data:image/gif;base64,{data}" alt="{htmlmod.escape(self.label)}"/>'

    def __repr__(self) -> str:
        where = f", path={str(self.path)!r}" if self.path is not None else ""
        shown = f"{len(self.frames)} frames" if self.frames is not None else "brax viewer"
        return (f"Recording({self.env}, {self.label}, returns={np.round(self.returns, 3).tolist()}, "
                f"lengths={self.lengths.tolist()}, {shown}{where})")


def record(agent, member, *, seed: Any = 0, greedy: bool = True, max_steps: int = 500, episodes: int = 1,
           fps: float = 30, label: str | None = None) -> Recording:
    """Plays ``member`` (one member of ``agent``: leaves without a seed axis) and draws it.

    Args:
      seed: an int or a PRNG key; the greedy recording of key ``k`` is the episode
        ``agent.evaluate(k, member, 1)`` scores.
      greedy: the deterministic action, else samples of the policy.
      max_steps: at most this many steps, all episodes together.
      episodes: episodes to record (each ``L`` steps long gives ``L + 1`` frames).
      fps: frames per second of the GIF.
      label: shown in each frame's caption.

    Raises:
      ValueError: the env has no renderer (the message lists those that have one), bad arguments.
    """
    env_name = agent.env
    kind = renderer(env_name)  # fails before anything is simulated
    fps = check_fps(fps)
    key = as_key(seed, "record: seed")
    mode = "greedy" if greedy else "stochastic"
    label = mode if label is None else f"{label}, {mode}"
    r = rollout(agent, member, key, max_steps=max_steps, greedy=greedy, episodes=episodes)
    plan = frame_plan(r)
    common = dict(env=env_name, label=label, returns=r.episode_returns(), lengths=r.episode_lengths(), rollout=r,
                  fps=fps)
    if kind == "brax":
        keep = plan.state[plan.state >= 0]  # a terminal state is gone: the viewer ends one step early
        states = jax.tree.map(lambda x: x[keep], r.states)
        return Recording(**common, frames=None, html=brax_html(env_name, states))
    pictures = frames(env_name, plan.obs, plan.action)
    many = len(r.episode_slices()) > 1
    texts = [f"{env_name} | {label} | {'episode %d, ' % (e + 1) if many else ''}step {s} | return {g:.6g}"
             for e, s, g in zip(plan.episode, plan.step, plan.ret)]
    return Recording(**common, frames=caption(pictures, texts), html=None)


def watch(store: str, trial: int | None = None, out: str | os.PathLike | None = None, *, member: int = 0,
          greedy: bool = True, seed: Any = 0, max_steps: int = 500, episodes: int = 1,
          fps: float = 30) -> Recording:
    """Plays a trial of the study stored in ``store`` with its saved final parameters.

    Args:
      trial: a trial id; ``None``: the study's best trial. Any completed trial has saved
        parameters (with ``keep_params=True``, the default).
      out: a ``.gif`` path (``.html`` for brax envs) to write; ``None`` writes nothing.
      member: which of the trial's seeds plays.
      greedy, seed, max_steps, episodes, fps: as in :func:`record`.

    Returns the :class:`Recording` (``path`` set when ``out`` was given); in a notebook it
    shows itself.

    Raises:
      ValueError: no study in ``store``, no best trial yet, a trial without saved parameters
        (naming it and the trials that have some), ``member`` out of range, an env without a
        renderer, a wrong ``out`` suffix.
    """
    if trial is None:
        best = load_study(store, params=False).best
        if best is None:
            raise ValueError(f"watch: the study in {store!r} has no completed trial yet; pass trial=ID")
        trial = best.id
    agent, members = load_trial_params(store, trial)
    seeds = int(np.shape(members.updates)[0])
    member = validate.integer("watch", "member", member, 0, seeds - 1)
    kind = renderer(agent.env)  # an env without a renderer fails before the rollout is compiled
    if out is not None:
        suffix = Path(out).suffix.lower()
        wanted = (".html", ".htm") if kind == "brax" else (".gif",)
        if suffix not in wanted:
            raise ValueError(f"watch: out={str(out)!r}: {agent.env} renders to a {wanted[0][1:].upper()} file; "
                             f"give a {wanted[0]} path")
    one = jax.tree.map(lambda x: x[member], members)
    rec = record(agent, one, seed=seed, greedy=greedy, max_steps=max_steps, episodes=episodes, fps=fps,
                 label=f"trial {trial}, member {member}" + (f", seed {seed}" if isinstance(seed, int) else ""))
    return rec if out is None else rec.save(out)
