"""The report's look, shared by the interactive (plotly) and the static (matplotlib) figures:
one colour per trial status, the order statuses are listed in, axis titles."""

from __future__ import annotations

# Outcomes first (what a trial became), then the states of a study that is still running.
STATUS_ORDER = ("completed", "evicted", "failed", "stopped", "running", "paused", "queued")

# Colour-blind-safe (Okabe-Ito) so that "completed" and "evicted" differ for every reader.
STATUS_COLORS = {
    "completed": "#009E73",  # green
    "evicted": "#E69F00",  # orange
    "failed": "#D55E00",  # vermilion
    "stopped": "#CC79A7",  # purple
    "running": "#0072B2",  # blue
    "paused": "#56B4E9",  # sky blue (Okabe-Ito's yellow is unreadable on white)
    "queued": "#999999",  # grey
}
BEST_COLOR = "#000000"
SCORE_COLORSCALE = "Viridis"  # plotly name; matplotlib's "viridis" is the same map

SECONDS = "study time (s)"
ENV_STEPS = "env steps (per member)"
STUDY_STEPS = "study env steps (all members)"
SCORE = "score"


def status_color(status: str) -> str:
    """The colour of ``status`` (grey for one this module does not know)."""
    return STATUS_COLORS.get(status, STATUS_COLORS["queued"])


def statuses_present(statuses) -> list[str]:
    """The distinct ``statuses`` in :data:`STATUS_ORDER` order (unknown ones last, sorted)."""
    seen = set(statuses)
    return [s for s in STATUS_ORDER if s in seen] + sorted(seen - set(STATUS_ORDER))
