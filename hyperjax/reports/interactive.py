"""The report's interactive figures (plotly ``go.Figure``), one public function per figure.

Each takes a store directory, a ``StudyResult`` or a ``StudyData`` and returns the figure;
a figure that does not apply to the study raises :class:`~hyperjax.reports.source.NotApplicable`
(a ``ValueError``) saying why.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from hyperjax.reports import style, surrogate, tables
from hyperjax.reports.source import load

HEIGHT = 460


def _layout(fig: go.Figure, title: str, subtitle: str = "", **kw) -> go.Figure:
    text = title + (f"<br><sup>{subtitle}</sup>" if subtitle else "")
    fig.update_layout(title=dict(text=text, x=0.01, xanchor="left"), template="plotly_white",
                      height=kw.pop("height", HEIGHT), margin=kw.pop("margin", dict(l=70, r=30, t=80, b=60)),
                      legend=dict(orientation="h", yanchor="bottom", y=1.0, xanchor="right", x=1.0), **kw)
    return fig


def _gaps(groups, key) -> list:
    """Concatenates the ``key`` column of each group with ``None`` between groups: one trace
    draws many separate lines (one trace per status instead of one per trial keeps a study of
    thousands of trials light)."""
    out: list = []
    for _, g in groups:
        out.extend(g[key].tolist())
        out.append(None)
    return out[:-1]


# -- 1 ----------------------------------------------------------------------------------------------
def optimization_history(source: Any) -> go.Figure:
    """Best-so-far final score against study time (left) and study env steps (right), with
    every completed trial's final score as a point."""
    data = load(source)
    points, best = tables.history(data)
    fig = make_subplots(rows=1, cols=2, shared_yaxes=True, horizontal_spacing=0.04)
    for col, x, label in ((1, "seconds", style.SECONDS), (2, "env_steps", style.STUDY_STEPS)):
        fig.add_trace(go.Scatter(
            x=points[x], y=points["score"], mode="markers", name="completed trial", legendgroup="points",
            showlegend=col == 1, marker=dict(color=style.status_color("completed"), size=7, opacity=0.75),
            customdata=np.stack([points["trial"], points["config"]], axis=1),
            hovertemplate="trial %{customdata[0]}<br>score %{y:.4g}<br>%{customdata[1]}<extra></extra>"),
            row=1, col=col)
        fig.add_trace(go.Scatter(
            x=best[x], y=best["score"], mode="lines", line=dict(shape="hv", color=style.BEST_COLOR, width=2),
            name="best so far", legendgroup="best", showlegend=col == 1,
            hovertemplate="best so far %{y:.4g}<extra></extra>"), row=1, col=col)
        fig.update_xaxes(title_text=label, row=1, col=col, rangemode="tozero")
    fig.update_yaxes(title_text=style.SCORE + " (final evaluation)", row=1, col=1)
    res = data.result
    sub = f"{len(points)} completed trials"
    if res.best is not None:
        sub = f"best {res.best_score:.4g} (trial {res.best.id}) found at {res.found_best_at:.1f} s; " + sub
    return _layout(fig, "Optimisation history", sub)


# -- 2 ----------------------------------------------------------------------------------------------
def learning_curves(source: Any) -> go.Figure:
    """Every trial's score against its env steps, coloured by status; where evicted, failed or
    stopped trials stopped is marked; the best trial (with its PBT ancestors) is drawn on top."""
    data = load(source)
    points, ends, best = tables.curves(data)
    fig = go.Figure()
    for status in style.statuses_present(points["status"]):
        g = points[points["status"] == status]
        groups = list(g.groupby("trial", sort=False))
        fig.add_trace(go.Scatter(
            x=_gaps(groups, "env_steps"), y=_gaps(groups, "score"), customdata=_gaps(groups, "trial"),
            mode="lines+markers", name=f"{status} ({len(groups)})", legendgroup=status,
            line=dict(color=style.status_color(status), width=1.2), marker=dict(size=4), opacity=0.7,
            connectgaps=False, hovertemplate=f"trial %{{customdata}} ({status})<br>env steps %{{x:,}}"
                                             "<br>score %{y:.4g}<extra></extra>"))
    for status in style.statuses_present(ends["status"]):
        g = ends[ends["status"] == status]
        fig.add_trace(go.Scatter(
            x=g["env_steps"], y=g["score"], mode="markers", name=f"{status} here", legendgroup=status,
            marker=dict(symbol="x", size=9, color=style.status_color(status), line=dict(width=1)),
            customdata=np.stack([g["trial"], g["reason"]], axis=1),
            hovertemplate="trial %{customdata[0]} " + status + " (%{customdata[1]})<br>env steps %{x:,}"
                          "<br>score %{y:.4g}<extra></extra>"))
    if len(best):
        fig.add_trace(go.Scatter(x=best["env_steps"], y=best["score"], mode="lines+markers", name="best trial",
                                 line=dict(color=style.BEST_COLOR, width=3), marker=dict(size=6),
                                 hovertemplate="best trial<br>env steps %{x:,}<br>score %{y:.4g}<extra></extra>"))
    fig.update_xaxes(title_text=style.ENV_STEPS, rangemode="tozero")
    fig.update_yaxes(title_text=style.SCORE + " (training return)")
    fig.update_layout(showlegend=True)
    n = points["trial"].nunique()
    return _layout(fig, "Learning curves", f"{n} trials; x marks where a trial was evicted, failed or stopped")


# -- 2b ---------------------------------------------------------------------------------------------
def exploration(source: Any) -> go.Figure:
    """The policy's entropy in every trial's phases against its env steps, coloured by status;
    the best trial (with its PBT ancestors) on top: which configurations kept exploring, which
    collapsed early."""
    data = load(source)
    points, best = tables.exploration(data)
    fig = go.Figure()
    for status in style.statuses_present(points["status"]):
        groups = list(points[points["status"] == status].groupby("trial", sort=False))
        fig.add_trace(go.Scatter(
            x=_gaps(groups, "env_steps"), y=_gaps(groups, "entropy"), customdata=_gaps(groups, "trial"),
            mode="lines+markers", name=f"{status} ({len(groups)})", line=dict(color=style.status_color(status),
                                                                               width=1.2),
            marker=dict(size=4), opacity=0.7, connectgaps=False,
            hovertemplate=f"trial %{{customdata}} ({status})<br>env steps %{{x:,}}<br>entropy %{{y:.4g}}<extra></extra>"))
    if len(best):
        fig.add_trace(go.Scatter(x=best["env_steps"], y=best["entropy"], mode="lines+markers", name="best trial",
                                 line=dict(color=style.BEST_COLOR, width=3), marker=dict(size=6),
                                 hovertemplate="best trial<br>env steps %{x:,}<br>entropy %{y:.4g}<extra></extra>"))
    fig.update_xaxes(title_text=style.ENV_STEPS, rangemode="tozero")
    fig.update_yaxes(title_text="policy entropy (nats)")
    fig.update_layout(showlegend=True)
    return _layout(fig, "Exploration", f"{points['trial'].nunique()} trials; mean entropy of the policy in each phase")


# -- 3 ----------------------------------------------------------------------------------------------
def parallel_coordinates(source: Any) -> go.Figure:
    """One line per trial across the tuned hyperparameters (log axes for log dimensions,
    categorical ones for choices) and the score, coloured by the score (the final evaluation
    of a completed trial, else its last training score). Drag along an axis to filter."""
    data = load(source)
    axes, scores, ids = tables.parallel(data)
    dims = [dict(label=a.name + (" (log)" if a.kind == "log" else ""), values=a.values, range=list(a.range),
                 tickvals=a.tickvals, ticktext=a.ticktext) for a in axes]
    lo, hi = float(np.min(scores)), float(np.max(scores))
    dims.append(dict(label="score", values=scores, range=[lo, hi] if hi > lo else [lo - 1, hi + 1]))
    fig = go.Figure(go.Parcoords(
        line=dict(color=scores, colorscale=style.SCORE_COLORSCALE, showscale=True,
                  colorbar=dict(title=dict(text="score", side="right"))),
        dimensions=dims, labelangle=0, labelside="top"))
    skipped = len(data.result.trials) - len(ids)
    sub = f"{len(ids)} trials" + (f" ({skipped} without a score not shown)" if skipped else "")
    # axis names above the axes (the range's end values sit below them): room for both
    return _layout(fig, "Hyperparameters and scores", sub + "; score = final evaluation, else last training score",
                   margin=dict(l=80, r=80, t=120, b=40))


# -- 4 ----------------------------------------------------------------------------------------------
def importance(source: Any) -> go.Figure:
    """Sobol indices of the hyperparameters (first-order: alone; total: with every interaction)
    and of pairs' interactions, from the BNN surrogate when the study has one, else from a
    regression on the trials (see ``hyperjax.reports.surrogate.regression_importance``)."""
    data = load(source)
    imp = surrogate.importance(data)
    main = imp.table[imp.table["kind"] == "main"].sort_values("total")
    pairs = imp.table[imp.table["kind"] == "pair"].sort_values("first_order")
    cols = 2 if len(pairs) else 1
    fig = make_subplots(rows=1, cols=cols, horizontal_spacing=0.25,
                        subplot_titles=("main effects", "pair interactions")[:cols])
    for col_name, label, color in (("first_order", "first order", "#0072B2"), ("total", "total", "#56B4E9")):
        fig.add_trace(go.Bar(y=main["parameter"], x=main[col_name], orientation="h", name=label, marker_color=color,
                             hovertemplate="%{y}: " + label + " %{x:.3f}<extra></extra>"), row=1, col=1)
    if len(pairs):
        fig.add_trace(go.Bar(y=pairs["parameter"], x=pairs["first_order"], orientation="h", name="interaction",
                             marker_color="#CC79A7", hovertemplate="%{y}: %{x:.3f}<extra></extra>"), row=1, col=2)
    # one scale for both panels: an interaction reads as large as it is next to the main effects
    top = float(np.nanmax(np.concatenate([[0.05], main["total"], main["first_order"], pairs["first_order"]])))
    fig.update_xaxes(title_text="fraction of the score's variance", range=[min(0.0, float(np.nanmin(
        np.concatenate([[0.0], main["first_order"], pairs["first_order"]])))), top * 1.05])
    fig.update_layout(barmode="group")
    height = max(HEIGHT - 100, 200 + 45 * len(main))
    fig = _layout(fig, "Hyperparameter importance", imp.source, height=height, margin=dict(l=70, r=30, t=90, b=100))
    return fig.update_layout(legend=dict(orientation="h", yanchor="top", y=-0.25, xanchor="left", x=0.0))


# -- 5 ----------------------------------------------------------------------------------------------
def slot_timeline(source: Any) -> go.Figure:
    """Which trial held which slot when: a bar per (trial, slot segment), x = study seconds,
    coloured by the trial's outcome; gaps are idle slots (hover a bar for its trial)."""
    data = load(source)
    tl = tables.timeline(data)
    fig = go.Figure()
    for status in style.statuses_present(tl["status"]):
        g = tl[tl["status"] == status]
        fig.add_trace(go.Bar(
            # width set: plotly otherwise sizes bars by the gap between a trace's slots
            y=g["slot"], x=g["end"] - g["start"], base=g["start"], orientation="h", name=status, width=0.8,
            marker=dict(color=style.status_color(status), line=dict(color="white", width=0.5),
                        pattern=dict(shape=["/" if o else "" for o in g["open"]])),
            text=g["trial"].astype(str), textposition="inside", insidetextanchor="middle", textangle=0,
            customdata=np.stack([g["trial"], g["start"], g["end"], g["reason"], g["config"]], axis=1),
            hovertemplate="trial %{customdata[0]} (" + status + " %{customdata[3]})<br>slot %{y}"
                          "<br>%{customdata[1]:.1f} s to %{customdata[2]:.1f} s<br>%{customdata[4]}<extra></extra>"))
    end_s, _ = tables.study_end(data)
    slots = int(data.result.slots) or (int(tl["slot"].max()) + 1 if len(tl) else 1)
    fig.update_layout(barmode="overlay", uniformtext=dict(minsize=8, mode="hide"), showlegend=True)
    fig.update_xaxes(title_text=style.SECONDS, range=[0, end_s * 1.01 if end_s > 0 else 1])
    fig.update_yaxes(title_text="slot", range=[slots - 0.5, -0.5], tickmode="linear" if slots <= 40 else "auto")
    util = data.result.slot_utilization.get("overall")
    sub = f"{len(tl)} segments of {tl['trial'].nunique()} trials in {slots} slots"
    if util is not None:
        sub += f"; slots busy {100 * util:.0f}% of the slot-ticks"
    height = min(1400, max(HEIGHT - 80, 150 + 24 * slots))
    return _layout(fig, "Slot timeline", sub, height=height)


# -- 6 ----------------------------------------------------------------------------------------------
def pbt_lineage(source: Any) -> go.Figure:
    """PBT lineages: each trial's scores as nodes over phases in the lane of its slot, an edge
    from the parent's node at each exploit to the child's first node."""
    data = load(source)
    nodes, edges = tables.lineage(data)
    fig = go.Figure()
    groups = list(nodes.groupby("trial", sort=False))
    fig.add_trace(go.Scatter(x=_gaps(groups, "phase"), y=_gaps(groups, "slot"), mode="lines", name="trial lane",
                             line=dict(color="#BBBBBB", width=2), hoverinfo="skip", showlegend=False))
    ex, ey, ecd = [], [], []
    for e in edges.itertuples():
        ex += [e.phase, e.child_phase, None]
        ey += [e.parent_slot, e.child_slot, None]
        ecd += [[e.parent, e.child]] * 2 + [[None, None]]
    fig.add_trace(go.Scatter(x=ex, y=ey, customdata=ecd, mode="lines", name="exploit (parent -> child)",
                             line=dict(color="#D55E00", width=1.5, dash="dot"),
                             hovertemplate="trial %{customdata[0]} -> trial %{customdata[1]}<extra></extra>"))
    finite = nodes[np.isfinite(nodes["score"].astype(float))]
    fig.add_trace(go.Scatter(
        x=finite["phase"], y=finite["slot"], mode="markers", name="score at a phase",
        marker=dict(color=finite["score"], colorscale=style.SCORE_COLORSCALE, size=11, showscale=True,
                    line=dict(color="white", width=0.5), colorbar=dict(title=dict(text="score", side="right"))),
        customdata=np.stack([finite["trial"], finite["status"], finite["config"]], axis=1) if len(finite) else None,
        hovertemplate="trial %{customdata[0]} (%{customdata[1]})<br>phase %{x}<br>score %{marker.color:.4g}"
                      "<br>%{customdata[2]}<extra></extra>"))
    first = nodes.groupby("trial", sort=False).head(1)
    fig.add_trace(go.Scatter(x=first["phase"], y=first["slot"] - 0.3, mode="text",
                             text=["#" + str(t) for t in first["trial"]], textfont=dict(size=10, color="#555555"),
                             name="trial id", hoverinfo="skip", showlegend=False))
    if len(edges) <= 300:  # arrowheads make the direction plain; past a few hundred they clutter
        for e in edges.itertuples():
            fig.add_annotation(x=e.child_phase, y=e.child_slot, ax=e.phase, ay=e.parent_slot, xref="x", yref="y",
                               axref="x", ayref="y", showarrow=True, arrowhead=2, arrowsize=1, arrowwidth=1.2,
                               arrowcolor="#D55E00", standoff=6, text="")
    slots = int(data.result.slots) or 1
    fig.update_xaxes(title_text="phase", dtick=1, range=[0.5, max(float(nodes["phase"].max()), 1) + 0.5]
                     if len(nodes) else None)
    fig.update_yaxes(title_text="slot", range=[slots - 0.5, -0.5], tickmode="linear" if slots <= 40 else "auto")
    height = min(1400, max(HEIGHT - 60, 150 + 30 * slots))
    return _layout(fig, "PBT lineage", f"{len(edges)} exploits over {nodes['trial'].nunique()} trials", height=height)


# -- 7 ----------------------------------------------------------------------------------------------
def surrogate_fit(source: Any) -> go.Figure:
    """The BNN surrogate's posterior mean (error bars: two epistemic standard deviations) at
    every observed (configuration, fidelity) against the observed score, coloured by fidelity;
    open markers are observations that came after the fit (a held-out check)."""
    data = load(source)
    df, src = surrogate.predicted_vs_observed(data)
    fig = go.Figure()
    lo = float(min(df["observed"].min(), df["predicted"].min()))
    hi = float(max(df["observed"].max(), df["predicted"].max()))
    fig.add_trace(go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", name="predicted = observed",
                             line=dict(color="#888888", dash="dash"), hoverinfo="skip"))
    cmin, cmax = float(df["env_steps"].min()), float(df["env_steps"].max())
    for flag, name, symbol in ((True, "fitted on", "circle"), (False, "after the fit", "circle-open")):
        g = df[df["in_fit"] == flag]
        if not len(g):
            continue
        fig.add_trace(go.Scatter(
            x=g["observed"], y=g["predicted"], mode="markers", name=name,
            error_y=dict(type="data", array=2 * g["std"], thickness=1, width=0, color="rgba(80,80,80,0.45)"),
            marker=dict(symbol=symbol, size=8, color=g["env_steps"], colorscale=style.SCORE_COLORSCALE, cmin=cmin,
                        cmax=cmax, showscale=flag, colorbar=dict(title=dict(text=style.ENV_STEPS, side="right"))),
            customdata=np.stack([g["trial"], g["phase"], g["env_steps"]], axis=1),
            hovertemplate="trial %{customdata[0]}, phase %{customdata[1]} (%{customdata[2]:,} steps)"
                          "<br>observed %{x:.4g}<br>predicted %{y:.4g}<extra></extra>"))
    fig.update_xaxes(title_text="observed score")
    fig.update_yaxes(title_text="predicted score (posterior mean \u00b1 2 sd)")
    return _layout(fig, "Surrogate: predicted vs observed", src + "<br>" + surrogate.fit_summary(df),
                   margin=dict(l=70, r=30, t=100, b=60))
