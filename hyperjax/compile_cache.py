"""JAX's persistent compilation cache, on by default so that a study's programs compile once.

A study compiles a handful of programs per structural bucket (a population's update, its
evaluation, the take/put of paused members, the scheduler's rule), 10-100 s in all, and users
re-run studies in notebooks and scripts all day. With the cache, a later process that compiles
the same program (same computation, shapes, devices, JAX version and flags) loads the
executable from disk instead (see benchmarks/README.md, "Time to the first tick").

``import hyperjax`` calls :func:`configure` with no argument, which reads
``$HYPERJAX_COMPILE_CACHE``:

* unset or empty: the cache lives in ``$XDG_CACHE_HOME/hyperjax/jax`` (``~/.cache/hyperjax/jax``);
* ``0``, ``off``, ``false`` or ``no``: no cache;
* anything else: that directory.

A cache the user configured for JAX (``JAX_COMPILATION_CACHE_DIR`` or
``jax.config.update("jax_compilation_cache_dir", ...)``) is left as it is. The cache is trusted
code: never point it at a directory other users can write.
"""

from __future__ import annotations

import os

import jax

ENV_VAR = "HYPERJAX_COMPILE_CACHE"
_OFF = {"0", "off", "false", "no"}
# Programs that compile faster than this are not written (each entry costs a file and a hash;
# the threshold keeps hundreds of tiny helper programs out while every program that matters
# to a study's start, 0.3-10 s each, is kept).
MIN_COMPILE_SECONDS = 0.2
MAX_BYTES = 2 * 1024**3  # least recently used entries are evicted beyond this

_configured_by_us: str | None = None


def default_directory() -> str:
    """``$XDG_CACHE_HOME/hyperjax/jax``, or ``~/.cache/hyperjax/jax``."""
    home = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(home, "hyperjax", "jax")


def configure(directory: str | bool | None = None) -> str | None:
    """Turns JAX's persistent compilation cache on (or off) for this process.

    Args:
      directory: a directory for the cache; ``None`` reads ``$HYPERJAX_COMPILE_CACHE`` (see the
        module docstring); ``False`` turns off a cache hyperjax turned on (one configured by the
        user for JAX is left alone); ``True`` is the default directory.

    Returns:
      The directory in use, or ``None`` when no persistent cache is on.

    Call it before the programs to cache are compiled: turning the cache off stops reads and
    writes from the next compile on; a directory chosen after JAX has opened a cache does not
    move it (JAX opens its cache once per process, at the first compile that finds a directory).
    """
    global _configured_by_us
    current = jax.config.jax_compilation_cache_dir
    if current and current != _configured_by_us:
        return current  # the user's own JAX setting wins
    if directory is None:
        value = os.environ.get(ENV_VAR, "").strip()
        directory = False if value.lower() in _OFF else (value or True)
    if directory is True:
        directory = default_directory()
    if directory is False:
        if _configured_by_us is not None:
            jax.config.update("jax_compilation_cache_dir", None)
            _configured_by_us = None
        return None
    if not isinstance(directory, (str, os.PathLike)):
        raise ValueError(f"compile_cache.configure: directory={directory!r} must be a path, True, False or None")
    directory = os.path.abspath(os.fspath(directory))
    jax.config.update("jax_compilation_cache_dir", directory)
    if jax.config.jax_persistent_cache_min_compile_time_secs == 1.0:  # JAX's default: not the user's
        jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECONDS)
    if jax.config.jax_compilation_cache_max_size == -1:  # unbounded by default
        jax.config.update("jax_compilation_cache_max_size", MAX_BYTES)
    _configured_by_us = directory
    return directory


def directory() -> str | None:
    """The persistent cache's directory in use, or ``None``."""
    return jax.config.jax_compilation_cache_dir or None
