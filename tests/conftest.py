import os

# Tests run on the host's default device layout; sharding tests start their own processes.
os.environ.setdefault("HYPERJAX_HOST_DEVICES", "2")

import hyperjax  # noqa: E402,F401  (configures host devices before JAX initialises)


import contextlib  # noqa: E402

import jax  # noqa: E402
import pytest  # noqa: E402

_COMPILES = []
jax.monitoring.register_event_duration_secs_listener(
    lambda name, secs, **kw: _COMPILES.append(name) if name == "/jax/core/compile/backend_compile_duration" else None
)


@pytest.fixture
def compile_events():
    """``with compile_events() as n: ...`` then ``n()``: backend compiles inside the block."""

    @contextlib.contextmanager
    def count():
        start = len(_COMPILES)
        end = []
        yield lambda: (end[0] if end else len(_COMPILES)) - start
        end.append(len(_COMPILES))

    return count
