"""``figures(source)`` (every applicable interactive figure by name) and ``report(store_dir,
out)`` (``report.html`` plus one PNG per figure)."""

from __future__ import annotations

import os
from typing import Any

import plotly.graph_objects as go

from hyperjax.reports import interactive, page, tables
from hyperjax.reports.source import NotApplicable, load

# name -> (heading, caption), in the report's order
SECTIONS = {
    "history": ("Optimisation history",
                "The best final evaluation found so far against study time and against the env steps the study had "
                "used; each point is a completed trial's final score."),
    "curves": ("Learning curves",
               "Every trial's training score at each phase boundary, coloured by what became of it; an x marks "
               "where an evicted, failed or stopped trial ended; the thick line is the best trial (for PBT with its "
               "ancestors)."),
    "exploration": ("Exploration",
                    "The policy's entropy in each phase of every trial (nats; the mean over the phase's updates and "
                    "seeds): configurations whose policy collapsed early stop exploring; the thick line is the best "
                    "trial."),
    "parallel": ("Hyperparameters",
                 "One line per trial across the tuned hyperparameters (log axes for log-scaled ones) and its score. "
                 "Drag along an axis to select a range."),
    "importance": ("Hyperparameter importance",
                   "Sobol indices: the share of the score's variance a hyperparameter explains alone (first order) "
                   "and together with its interactions (total), and the interaction of each pair."),
    "timeline": ("Slot timeline",
                 "Which trial held which slot when (hover a bar for its trial and configuration). Gaps are idle "
                 "slots; asynchronous schedulers (HyperTrick, ASHA) leave few, synchronous ones wait for the rung's "
                 "stragglers. Hatched bars are still running."),
    "lineage": ("PBT lineage",
                "Trials in the lanes of their slots, a node per phase coloured by its score; an arrow runs from the "
                "parent at each exploit to the child that copied it."),
    "surrogate": ("Surrogate fit",
                  "The BNN surrogate's posterior mean at every observed configuration and fidelity against the "
                  "observed score; error bars are two epistemic standard deviations. Open markers came after the fit "
                  "and check it on data it has not seen."),
}


# name -> the function drawing it, alike in both renderers (``interactive``: plotly,
# ``static``: matplotlib)
FUNCTIONS = {
    "history": "optimization_history",
    "curves": "learning_curves",
    "exploration": "exploration",
    "parallel": "parallel_coordinates",
    "importance": "importance",
    "timeline": "slot_timeline",
    "lineage": "pbt_lineage",
    "surrogate": "surrogate_fit",
}


def figures(source: Any) -> dict[str, go.Figure]:
    """Every figure that applies to the study, by name (``history``, ``curves``, ``exploration``, ``parallel``,
    ``importance``, ``timeline``, ``lineage``, ``surrogate``), as plotly figures.

    ``source``: a store directory (read-only; the study may be running), a ``StudyResult``
    (``tune``'s own, or ``hj.load_study``'s) or a ``StudyData``. Figures that do not apply (no
    PBT, no BNN, too few trials for importance) are left out.

    Cheap enough for the end of a study: the store is read once, nothing is fit or compiled but
    the BNN's small predict program (a BNN's importance is ``(2d + 2) * 1024`` predictions);
    about 0.5 s for the small studies of the tests once warm, a few seconds on the first call
    in a process.
    """
    data = load(source)
    out = {}
    for name, fn in FUNCTIONS.items():
        try:
            out[name] = getattr(interactive, fn)(data)
        except NotApplicable:
            continue
    return out


def report(store_dir: Any, out: str | os.PathLike | None = None) -> dict[str, str]:
    """Writes ``report.html`` (interactive, one self-contained file) and one PNG per figure
    (``<name>.png``, matplotlib) into ``out`` (default: the store directory; created if
    missing). Works on a finished, killed or running study (the store is opened read-only).

    Args:
      store_dir: the study's store directory (or a ``StudyResult``/``StudyData``, then ``out``
        is needed).
      out: the directory to write into.

    Returns:
      file name -> path of every file written (``report.html``, ``history.png``, ...).
    """
    # matplotlib only here: importing it costs about a second, which figures() need not pay
    from hyperjax.reports import static

    data = load(store_dir)
    if out is None:
        if data.directory is None:
            raise ValueError("report: out=None needs a store directory as store_dir to write into")
        out = data.directory
    if not isinstance(out, (str, os.PathLike)) or not os.fspath(out):
        raise ValueError(f"report: out={out!r} must be a directory path")
    out = os.path.abspath(os.fspath(out))
    if os.path.exists(out) and not os.path.isdir(out):
        raise ValueError(f"report: out={out!r} exists and is not a directory")
    os.makedirs(out, exist_ok=True)
    written: dict[str, str] = {}
    sections = []
    for name, (heading, caption) in SECTIONS.items():
        try:
            fig = getattr(interactive, FUNCTIONS[name])(data)
        except NotApplicable as e:
            if not e.kind:  # nothing to show yet: say so ("not a PBT study" needs no saying)
                sections.append(page.Section(name, heading, caption, None, str(e)))
            continue
        sections.append(page.Section(name, heading, caption, fig))
        path = os.path.join(out, f"{name}.png")
        static.save(getattr(static, FUNCTIONS[name])(data), path)
        written[f"{name}.png"] = path
    title = "hyperjax study" + (f": {os.path.basename(data.directory)}" if data.directory else "")
    html = page.render(title, data.status, tables.summary_rows(data), tables.top_trials(data), sections)
    path = os.path.join(out, "report.html")
    page.write(path, html)
    return {"report.html": path, **written}


__all__ = ["SECTIONS", "figures", "report"]
