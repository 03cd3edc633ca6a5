"""Pictures of observations: ``(N, H, W, 3)`` uint8 frames for the environments that can be drawn.

- gymnax classic control (CartPole, Acrobot, Pendulum, MountainCar, MountainCarContinuous): drawn
  by Gymnasium's own renderers (pygame), through gymnax's adapter that copies gymnax parameters
  onto a Gymnasium env; each observation is turned back into the Gymnasium state it encodes.
- MinAtar games: the ``(10, 10, C)`` boolean channel grid, one colour per channel as gymnax's
  MinAtar visualiser colours it, upscaled.
- brax environments have an HTML viewer instead (``hyperjax.render.output.brax_html``).

Frames are drawn from observations rather than env states because the terminal state of an
episode is replaced by the auto-reset while the terminal observation is kept (``final_obs``).
"""

from __future__ import annotations

import importlib.util
import math
import os
from typing import Any

import numpy as np

from hyperjax.envs import Env

CLASSIC_CONTROL = ("CartPole-v1", "Acrobot-v1", "Pendulum-v1", "MountainCar-v0", "MountainCarContinuous-v0")
MINATAR_SUFFIX = "-MinAtar"
BRAX_PREFIX = "brax:"


def renderer(env: str | Env) -> str:
    """How ``env`` is drawn: ``"classic"``, ``"minatar"`` or ``"brax"`` (an HTML viewer).

    Raises:
      ValueError: ``env`` has no renderer; the message lists those that have one.
    """
    name = _name(env)
    if name in CLASSIC_CONTROL:
        return "classic"
    if name.endswith(MINATAR_SUFFIX):
        return "minatar"
    if name.startswith(BRAX_PREFIX):
        return "brax"
    raise ValueError(
        f"env {name!r} has no renderer; renderable: {', '.join(CLASSIC_CONTROL)}, the *{MINATAR_SUFFIX} games "
        f"(GIF frames) and {BRAX_PREFIX}<name> (brax's HTML viewer)")


def frames(env: str | Env, obs: Any, actions: Any = None) -> np.ndarray:
    """Frames ``(N, H, W, 3)`` uint8 of observations ``obs (N, obs_dim)``.

    ``actions (N, ...)``, optional, are the actions that led to each frame (Pendulum draws the
    torque of the last one).

    Raises:
      ValueError: ``env`` has no frame renderer (brax renders to HTML), ``obs`` is not
        ``(N, obs_dim)``, or rendering needs pygame and it is not installed.
    """
    name = _name(env)
    kind = renderer(name)
    if kind == "brax":
        raise ValueError(f"env {name!r}: brax environments render to an HTML viewer, not frames "
                         "(hyperjax.render.brax_html)")
    obs = np.asarray(obs, np.float32)
    if obs.ndim != 2 or obs.shape[0] == 0:
        raise ValueError(f"frames: obs of shape {obs.shape} must be (N, obs_dim) with N >= 1")
    if kind == "minatar":
        shape = _minatar_shape(name)
        if obs.shape[1] != math.prod(shape):
            raise ValueError(f"frames: obs of shape {obs.shape} do not hold {name}'s {shape} grids")
        return np.stack([minatar_frame(o.reshape(shape)) for o in obs])
    return _classic_frames(name, obs, actions)


# -- MinAtar ----------------------------------------------------------------------------------
def minatar_frame(grid: Any, cell: int = 32) -> np.ndarray:
    """One MinAtar observation ``grid (rows, cols, C)`` (booleans or 0/1) as an RGB image
    ``(rows * cell, cols * cell, 3)`` uint8: black where no channel is set, else the colour of
    the highest set channel (gymnax's MinAtar palette: seaborn's cubehelix)."""
    grid = np.asarray(grid)
    if grid.ndim != 3:
        raise ValueError(f"minatar_frame: grid of shape {grid.shape} must be (rows, cols, channels)")
    if isinstance(cell, bool) or not isinstance(cell, (int, np.integer)) or cell < 1:
        raise ValueError(f"minatar_frame: cell={cell!r} must be a positive int")
    import seaborn as sns

    n = grid.shape[-1]
    palette = np.asarray([(0.0, 0.0, 0.0)] + list(sns.color_palette("cubehelix", n)))
    table = np.round(palette * 255).astype(np.uint8)  # (C + 1, 3)
    index = np.max((grid > 0.5) * np.arange(1, n + 1), axis=-1)  # (rows, cols), 0 = empty
    return np.repeat(np.repeat(table[index], cell, axis=0), cell, axis=1)


def _minatar_shape(name: str) -> tuple[int, ...]:
    import gymnax

    env, _ = gymnax.make(name)
    return tuple(env.obs_shape)


# -- classic control --------------------------------------------------------------------------
def _gym_state(name: str, o: np.ndarray) -> np.ndarray:
    """The Gymnasium state vector an observation of ``name`` encodes (see each gymnax env's
    ``get_obs``: angles are observed as cos/sin pairs)."""
    if name == "Acrobot-v1":
        return np.array([math.atan2(o[1], o[0]), math.atan2(o[3], o[2]), o[4], o[5]], np.float64)
    if name == "Pendulum-v1":
        return np.array([math.atan2(o[1], o[0]), o[2]], np.float64)
    if name == "CartPole-v1":
        return np.asarray(o[:4], np.float64)
    return np.asarray(o[:2], np.float64)  # MountainCar: (position, velocity)


def _classic_frames(name: str, obs: np.ndarray, actions: Any) -> np.ndarray:
    if importlib.util.find_spec("pygame") is None:
        raise ValueError(f"rendering {name} needs pygame (Gymnasium's classic-control renderer): "
                         "pip install pygame")
    # pygame.init() opens a display and an audio device too; drawing into a surface needs
    # neither (and headless machines have neither).
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    import gymnasium as gym
    import gymnax
    from gymnax.visualize.vis_gym import set_gym_params

    _, params = gymnax.make(name)
    gym_env = gym.make(name, render_mode="rgb_array")
    try:
        gym_env.reset(seed=0)
        unwrapped: Any = gym_env.unwrapped
        set_gym_params(unwrapped, name, params)
        out = []
        for i, o in enumerate(obs):
            unwrapped.state = _gym_state(name, o)
            if name == "Pendulum-v1":  # the torque arrow shows the action that led here
                unwrapped.last_u = None if actions is None or i == 0 else float(np.ravel(actions[i])[0])
            out.append(np.asarray(gym_env.render(), np.uint8))
    finally:
        gym_env.close()
    return np.stack(out)


def caption(frames: np.ndarray, texts: list[str], height: int = 24) -> np.ndarray:
    """``frames (N, H, W, 3)`` with a white strip of ``height`` pixels on top holding ``texts[i]``
    -> ``(N, H + height, W, 3)`` uint8."""
    from PIL import Image, ImageDraw, ImageFont

    frames = np.asarray(frames, np.uint8)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"caption: frames of shape {frames.shape} must be (N, H, W, 3)")
    if isinstance(height, bool) or not isinstance(height, (int, np.integer)) or height < 1:
        raise ValueError(f"caption: height={height!r} must be a positive int")
    if len(texts) != len(frames):
        raise ValueError(f"caption: {len(texts)} texts for {len(frames)} frames")
    n, h, w, _ = frames.shape
    # Pillow's bundled font (a bitmap one, of fixed size, where Pillow lacks FreeType)
    fonts = [ImageFont.load_default(size=size) for size in range(max(8, int(height * 0.6)), 7, -1)]
    out = np.full((n, h + height, w, 3), 255, np.uint8)
    out[:, height:] = frames
    for i, text in enumerate(texts):
        strip = Image.new("RGB", (w, height), "white")
        draw = ImageDraw.Draw(strip)
        # the largest size that fits the width (the smallest if none does)
        font = next((f for f in fonts if draw.textlength(text, font=f) <= w - 12), fonts[-1])
        top, bottom = draw.textbbox((0, 0), text, font=font)[1::2]
        draw.text((6, (height - top - bottom) // 2), text, fill="black", font=font)
        out[i, :height] = np.asarray(strip)
    return out


def _name(env: str | Env) -> str:
    if isinstance(env, Env):
        return env.name
    if not isinstance(env, str):
        raise ValueError(f"env={env!r} must be an environment id or an Env")
    return env
