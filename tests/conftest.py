import os

# Tests run on the host's default device layout; sharding tests start their own processes.
os.environ.setdefault("HYPERJAX_HOST_DEVICES", "2")

import hyperjax  # noqa: E402,F401  (configures host devices before JAX initialises)

