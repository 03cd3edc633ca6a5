"""Live progress of a study on the console."""

from __future__ import annotations

import math
import sys
from typing import IO, Any


def _hms(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "-"
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def line(p: dict[str, Any]) -> str:
    """One plain line (log files, CI)."""
    best = "-" if not math.isfinite(p["best_score"]) else f"{p['best_score']:.4g} (trial {p['best_trial']} at {_hms(p['found_best_at'])})"
    return (f"tick {p['tick']:>4d}  {_hms(p['seconds']):>7s}  eta {_hms(p['eta']):>7s}  "
            f"{p['env_steps']:,} / {p['budget']:,} steps ({100 * p['budget_fraction']:.1f}%)  "
            f"{p['steps_per_second']:,.0f} steps/s  trials {p['trials']}: running {p['running']}, "
            f"completed {p['completed']}, evicted {p['evicted']}, failed {p['failed']}  "
            f"slots {100 * p['slot_utilization']:.0f}% busy  best {best}")


class Console:
    """Live study progress: in a terminal a rich panel redrawn every tick (env steps and budget
    fraction, wall time and ETA, trials by status, best score and when it was found, env
    steps/s, slot utilisation); elsewhere (a pipe, a log file, CI) one plain line per tick.

    Args:
      file: where to write (default ``sys.stdout``).
      force_terminal: ``True``/``False`` to override the terminal detection.
    """

    def __init__(self, file: IO[str] | None = None, force_terminal: bool | None = None):
        self.file = file
        self.force_terminal = force_terminal
        self._live = None
        self._console = None

    def _terminal(self) -> bool:
        if self.force_terminal is not None:
            return self.force_terminal
        f = self.file or sys.stdout
        return bool(getattr(f, "isatty", lambda: False)())

    def _panel(self, p: dict[str, Any]):
        from rich.panel import Panel
        from rich.progress_bar import ProgressBar
        from rich.table import Table

        t = Table.grid(padding=(0, 2))
        t.add_column(style="bold")
        t.add_column()
        frac = p["budget_fraction"] if math.isfinite(p["budget_fraction"]) else 0.0
        t.add_row("budget", ProgressBar(total=1.0, completed=min(frac, 1.0), width=40))
        t.add_row("env steps", f"{p['env_steps']:,} / {p['budget']:,} ({100 * frac:.1f}%)  "
                               f"{p['steps_per_second']:,.0f} steps/s")
        t.add_row("time", f"{_hms(p['seconds'])} elapsed, eta {_hms(p['eta'])}  (tick {p['tick']})")
        t.add_row("trials", f"{p['trials']}: [green]{p['running']} running[/], {p['paused']} paused, "
                            f"[cyan]{p['completed']} completed[/], [yellow]{p['evicted']} evicted[/], "
                            f"[red]{p['failed']} failed[/]")
        best = "-" if not math.isfinite(p["best_score"]) else (
            f"[bold]{p['best_score']:.4g}[/] (trial {p['best_trial']}, found at {_hms(p['found_best_at'])})")
        t.add_row("best", best)
        t.add_row("slots", f"{100 * p['slot_utilization']:.0f}% busy")
        return Panel(t, title="hyperjax study", expand=False)

    def __call__(self, study, changes) -> None:
        p = study.progress()
        if not self._terminal():
            print(line(p) if not changes.get("final") else "done: " + line(p), file=self.file or sys.stdout, flush=True)
            return
        if self._live is None:
            from rich.console import Console as RichConsole
            from rich.live import Live

            self._console = RichConsole(file=self.file, force_terminal=True)
            self._live = Live(self._panel(p), console=self._console, auto_refresh=False, transient=False)
            self._live.start()
        self._live.update(self._panel(p), refresh=True)
        if changes.get("final"):
            self._live.stop()
            self._live = None
