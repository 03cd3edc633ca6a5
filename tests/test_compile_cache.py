"""JAX's persistent compilation cache, as hyperjax turns it on: where, when it is off, and that a
second process loads what the first compiled (with identical results)."""

import json
import os
import subprocess
import sys

import pytest

CHILD = r"""
import json, os, sys
import jax
events = []
jax.monitoring.register_event_listener(
    lambda e, **k: events.append(e) if e.startswith("/jax/compilation_cache/") else None)
import hyperjax as hj
out = {"dir": hj.compile_cache.directory()}
if sys.argv[1] == "train":
    agent = hj.PPO(env="CartPole-v1", num_envs=4, num_steps=16, num_minibatches=1, num_epochs=1, hidden=(16,))
    res = hj.train(agent, {"learning_rate": [1e-3, 3e-3]}, total_timesteps=2048, num_seeds=2, seed=0, eval_episodes=2)
    out["returns"] = [float(x) for x in jax.device_get(res.eval_returns).ravel()]
if sys.argv[1] == "dirs":
    off = []
    for value in ("0", "off", "False"):
        os.environ["HYPERJAX_COMPILE_CACHE"] = value
        off.append(hj.compile_cache.configure())
    os.environ["HYPERJAX_COMPILE_CACHE"] = os.environ["MINE"]
    out.update(off=off, moved=hj.compile_cache.configure())
    jax.config.update("jax_compilation_cache_dir", os.environ["THEIRS"])  # the user's own choice
    os.environ["HYPERJAX_COMPILE_CACHE"] = "0"
    out["theirs"] = hj.compile_cache.configure()
out["hits"] = events.count("/jax/compilation_cache/cache_hits")
print("RESULT " + json.dumps(out))
"""


def _child(tmp_path, mode: str, **env) -> dict:
    full = {k: v for k, v in os.environ.items() if k not in ("HYPERJAX_COMPILE_CACHE", "JAX_COMPILATION_CACHE_DIR")}
    full.update(env)
    full["XDG_CACHE_HOME"] = str(tmp_path / "xdg")  # the default directory, inside the test's own
    out = subprocess.run([sys.executable, "-c", CHILD, mode], env=full, capture_output=True, text=True, timeout=600)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")]
    assert out.returncode == 0 and lines, out.stderr[-3000:]
    return json.loads(lines[-1][len("RESULT "):])


def test_where_the_cache_lives_and_how_it_is_turned_off(tmp_path):
    """Default: $XDG_CACHE_HOME/hyperjax/jax; $HYPERJAX_COMPILE_CACHE=0/off/False turns it off,
    a path moves it (read again by each configure()); a directory the user gave JAX is kept."""
    got = _child(tmp_path, "dirs", MINE=str(tmp_path / "mine"), THEIRS=str(tmp_path / "theirs"))
    assert got["dir"] == str(tmp_path / "xdg" / "hyperjax" / "jax")
    assert got["off"] == [None, None, None] and got["moved"] == str(tmp_path / "mine")
    assert got["theirs"] == str(tmp_path / "theirs")


def test_a_second_process_loads_what_the_first_compiled(tmp_path):
    """The first process writes its programs to the cache; a second one running the same
    training loads them (cache hits) and gets bit-identical results; with the cache off
    nothing is written or read and the results are the same too."""
    cache = tmp_path / "cache"
    first = _child(tmp_path, "train", HYPERJAX_COMPILE_CACHE=str(cache))
    assert first["hits"] == 0 and len(os.listdir(cache)) >= 2  # at least the update and the evaluation
    second = _child(tmp_path, "train", HYPERJAX_COMPILE_CACHE=str(cache))
    assert second["hits"] >= 2
    assert second["returns"] == first["returns"]
    off = _child(tmp_path, "train", HYPERJAX_COMPILE_CACHE="0")
    assert off["hits"] == 0 and off["returns"] == first["returns"]
    assert not (tmp_path / "xdg" / "hyperjax").exists()


def test_configure_rejects_what_is_not_a_path():
    from hyperjax import compile_cache

    with pytest.raises(ValueError, match="compile_cache.configure: directory=3"):
        compile_cache.configure(3)
