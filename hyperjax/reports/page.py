"""The report as one self-contained HTML file: plotly.js embedded once in the head, each figure a
``<div>`` drawn by it, the study's summary table and its best trials at the top."""

from __future__ import annotations

import dataclasses
import html
import os
import tempfile

import pandas as pd


@dataclasses.dataclass
class Section:
    """One figure's place in the report: ``figure`` a plotly figure, or ``None`` with ``note``
    saying why it is not shown."""

    name: str
    heading: str
    caption: str
    figure: object = None
    note: str = ""


CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0; color: #222;
       background: #fafafa; }
main { max-width: 1200px; margin: 0 auto; padding: 24px 32px 48px; }
h1 { font-size: 1.6em; margin: 0.2em 0 0.1em; }
h2 { font-size: 1.2em; margin: 1.6em 0 0.3em; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
p.caption { color: #555; margin: 0.2em 0 0.6em; max-width: 900px; }
p.note { color: #8a5a00; background: #fff7e0; border: 1px solid #f0dca0; padding: 6px 10px; border-radius: 4px; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 0.8em; color: white;
         background: #0072B2; vertical-align: middle; margin-left: 8px; }
.badge.finished { background: #009E73; }
.badge.interrupted { background: #D55E00; }
.cols { display: flex; flex-wrap: wrap; gap: 32px; align-items: flex-start; }
table { border-collapse: collapse; font-size: 0.9em; background: white; }
th, td { text-align: left; padding: 3px 10px; border-bottom: 1px solid #eee; vertical-align: top; }
table.summary th { color: #555; font-weight: 600; white-space: nowrap; }
table.summary td { max-width: 560px; overflow-wrap: anywhere; }
table.trials th { background: #f0f0f0; }
.figure { background: white; border: 1px solid #e5e5e5; border-radius: 4px; padding: 4px; }
nav a { margin-right: 12px; font-size: 0.9em; }
"""


def summary_table(rows: list[tuple[str, str]]) -> str:
    body = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows)
    return f'<table class="summary">{body}</table>'


def figure_div(section: Section) -> str:
    """The section's HTML: heading, caption and the figure (or the note saying why not)."""
    import plotly.io as pio

    head = f'<h2 id="{section.name}">{html.escape(section.heading)}</h2>'
    head += f'<p class="caption">{html.escape(section.caption)}</p>' if section.caption else ""
    if section.figure is None:
        return head + f'<p class="note">Not shown: {html.escape(section.note)}</p>'
    div = pio.to_html(section.figure, full_html=False, include_plotlyjs=False, div_id=f"figure-{section.name}",
                      config={"displaylogo": False, "responsive": True})
    return head + f'<div class="figure">{div}</div>'


def render(title: str, status: str, summary: list[tuple[str, str]], top: pd.DataFrame, sections: list[Section]) -> str:
    """The whole page as a string."""
    from plotly.offline import get_plotlyjs

    nav = " ".join(f'<a href="#{s.name}">{html.escape(s.heading)}</a>' for s in sections if s.figure is not None)
    top_html = (top.to_html(index=False, classes="trials", border=0, escape=True) if len(top)
                else "<p>No trial has completed yet.</p>")
    badge = f'<span class="badge {html.escape(status)}">{html.escape(status)}</span>'
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>", f"<style>{CSS}</style>",
        # plotly.js once for every figure: the file works offline and stays one file
        f'<script type="text/javascript">{get_plotlyjs()}</script>', "</head><body><main>",
        f"<h1>{html.escape(title)} {badge}</h1>", f"<nav>{nav}</nav>",
        '<div class="cols"><div><h2>Study</h2>', summary_table(summary), "</div>",
        "<div><h2>Best trials</h2>", top_html, "</div></div>",
        *(figure_div(s) for s in sections),
        "</main></body></html>",
    ]
    return "\n".join(parts)


def write(path: str, text: str) -> None:
    """Writes ``text`` to ``path`` atomically (a reader never sees half a report)."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".report-", suffix=".html")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a report is for reading
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
