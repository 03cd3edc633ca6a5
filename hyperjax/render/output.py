"""Where recordings go: GIF files (Pillow), brax's HTML viewer, and notebook display objects."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import jax
import numpy as np

from hyperjax.render.frames import BRAX_PREFIX


def check_frames(frames: Any) -> np.ndarray:
    """``frames`` as an ``(N, H, W, 3)`` uint8 array, ``N >= 1``; else ValueError."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] == 0 or frames.dtype != np.uint8:
        raise ValueError(f"frames of shape {frames.shape} and dtype {frames.dtype} must be (N, H, W, 3) uint8, N >= 1")
    return frames


def check_fps(fps: Any) -> float:
    """``fps`` as a float in ``(0, 100]``; else ValueError naming it."""
    if isinstance(fps, bool) or not isinstance(fps, (int, float, np.integer, np.floating)) or not 0 < fps <= 100:
        raise ValueError(f"fps={fps!r} must be a number in (0, 100] (a GIF counts time in hundredths of a second)")
    return float(fps)


def gif_bytes(frames: Any, fps: float = 30) -> bytes:
    """``frames (N, H, W, 3)`` uint8 as an endlessly looping animated GIF.

    The GIF format merges consecutive identical frames into one longer frame, so a GIF read back
    can hold fewer than ``N`` frames (never for captioned recordings: their step counter differs).
    """
    from PIL import Image

    frames, fps = check_frames(frames), check_fps(fps)
    # Each frame gets its own 256-colour palette by octree quantization: Pillow's default
    # conversion for GIF (adaptive median cut) is about 8 times slower and no more faithful here.
    images = [Image.fromarray(f).quantize(256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE)
              for f in frames]
    buf = io.BytesIO()
    images[0].save(buf, format="GIF", save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0)
    return buf.getvalue()


def write_gif(frames: Any, path: str | os.PathLike, fps: float = 30) -> Path:
    """Writes ``frames (N, H, W, 3)`` uint8 to the GIF file ``path`` (parents created); returns it."""
    path = Path(path)
    if path.suffix.lower() != ".gif":
        raise ValueError(f"write_gif: path={str(path)!r} must end with .gif")
    data = gif_bytes(frames, fps)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def brax_html(env_name: str, states: Any, height: int = 480) -> str:
    """brax's HTML viewer page for a sequence of hyperjax brax env states (leaves ``(N, ...)``).

    Raises:
      ValueError: ``env_name`` is not a brax id, brax is not installed, or no states are given.
    """
    if not isinstance(env_name, str) or not env_name.startswith(BRAX_PREFIX):
        raise ValueError(f"brax_html: env_name={env_name!r} is not a brax environment ({BRAX_PREFIX}<name>)")
    try:
        from brax import envs
        from brax.io import html
    except ImportError:
        raise ValueError(f"rendering {env_name} needs brax, which is not installed: pip install 'hyperjax[brax]'") from None
    # hyperjax's brax adapter keeps (brax State, steps into the episode) as its env state.
    brax_state, _ = states
    n = int(np.shape(jax.tree.leaves(brax_state.pipeline_state)[0])[0])
    if n == 0:
        raise ValueError("brax_html: no states to show")
    env = envs.get_environment(env_name[len(BRAX_PREFIX):])
    # The viewer steps by sys.opt.timestep; one env step is env.dt (several physics steps).
    sys = env.sys.tree_replace({"opt.timestep": env.dt})
    pipeline = [jax.tree.map(lambda x, i=i: x[i], brax_state.pipeline_state) for i in range(n)]
    return html.render(sys, pipeline, height=height)


def show(x: Any, fps: float = 30) -> Any:
    """A notebook display object: ``IPython.display.Image`` of a GIF, or ``HTML`` of a brax viewer.

    ``x`` is a ``Recording``, a ``.gif``/``.html`` path, or frames ``(N, H, W, 3)`` uint8 (shown at
    ``fps``).
    """
    from IPython.display import HTML, Image  # only present where notebooks run

    if hasattr(x, "gif_bytes") and hasattr(x, "html"):  # a Recording
        return HTML(x.html) if x.html is not None else Image(data=x.gif_bytes(), format="gif")
    if isinstance(x, (str, os.PathLike)):
        path = Path(x)
        if not path.is_file():
            raise ValueError(f"show: {str(path)!r} is not a file")
        if path.suffix.lower() == ".gif":
            return Image(data=path.read_bytes(), format="gif")
        if path.suffix.lower() in (".html", ".htm"):
            return HTML(path.read_text())
        raise ValueError(f"show: {str(path)!r} is neither a .gif nor an .html file")
    return Image(data=gif_bytes(x, fps), format="gif")
