"""A check shared by the validation tests: nothing traced or compiled inside a block."""

import contextlib
import threading

import jax

COMPILE_EVENTS = ("/jax/core/compile/jaxpr_trace_duration", "/jax/core/compile/backend_compile_duration")


@contextlib.contextmanager
def nothing_compiled():
    """Fails if JAX traces or compiles anything on this thread inside the block. The caches are
    cleared first, so a program an earlier test compiled cannot hide a trace or a compile (a
    cache hit emits no event); other threads (a surrogate's compile worker) are not counted."""
    seen = []
    me = threading.get_ident()

    def listen(event, duration, **kwargs):
        if event in COMPILE_EVENTS and threading.get_ident() == me:
            seen.append(event)

    jax.clear_caches()
    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        yield
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)
    assert not seen, f"traced or compiled before the error: {seen}"
