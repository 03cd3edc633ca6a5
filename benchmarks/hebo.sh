#!/usr/bin/env bash
# Runs benchmarks/hebo_bridge.py in HEBO's own virtual environment (HEBO pins numpy < 1.25 and
# pymoo 0.6.0), created on first use under $TMPDIR (or /tmp); HEBO_VENV reuses another one.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${HEBO_VENV:-${TMPDIR:-/tmp}/hyperjax-hebo-venv}"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import hebo" 2>/dev/null; then
  python3 -m venv "$venv" >&2
  # Step by step: left to resolve HEBO's pins (NumPy < 1.25, pymoo 0.6.0) by itself, pip
  # backtracks through old releases for many minutes. Wheels for everything but pymoo 0.6.0,
  # which has none for this Python and builds from its sdist in seconds; then HEBO itself.
  pins=("numpy<1.25" "scipy<=1.12" "pandas<2.3")
  "$venv/bin/pip" install -q --only-binary=:all: "${pins[@]}" torch gpytorch GPy catboost scikit-learn disjoint-set >&2
  "$venv/bin/pip" install -q "${pins[@]}" "pymoo==0.6.0" >&2
  "$venv/bin/pip" install -q --no-deps "HEBO>=0.3.5" >&2
fi
exec "$venv/bin/python" "$here/hebo_bridge.py" "$@"
