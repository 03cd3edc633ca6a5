"""The report's static figures (matplotlib ``Figure`` objects, for PNG files): the same tables as
the interactive ones, drawn without a display.

Figures are made with ``matplotlib.figure.Figure`` directly, never ``pyplot``: no global backend
is chosen, no window opened, nothing kept alive after saving (Agg renders the file).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure

from hyperjax.reports import style, surrogate, tables
from hyperjax.reports.source import load

DPI = 110
WIDTH = 11.0  # inches: 1210 px at DPI


def _figure(height: float = 4.6, cols: int = 1, **kw) -> tuple[Figure, Any]:
    fig = Figure(figsize=(WIDTH, height), dpi=DPI, layout="constrained")
    return fig, fig.subplots(1, cols, **kw)


def _title(fig: Figure, title: str, subtitle: str = "") -> None:
    fig.suptitle(title + ("\n" + subtitle if subtitle else ""), x=0.01, ha="left", fontsize=12)


def _nan_joined(groups, key) -> np.ndarray:
    """The ``key`` column of each group, NaN between groups: one ``plot`` call, many lines."""
    parts = []
    for _, g in groups:
        parts += [g[key].to_numpy(np.float64), [np.nan]]
    return np.concatenate(parts[:-1]) if parts else np.zeros(0)


def save(fig: Figure, path: str) -> None:
    """Writes ``fig`` as a PNG to ``path``."""
    fig.savefig(path, format="png", dpi=DPI)


def optimization_history(source: Any) -> Figure:
    data = load(source)
    points, best = tables.history(data)
    fig, axes = _figure(cols=2, sharey=True)
    for ax, x, label in zip(axes, ("seconds", "env_steps"), (style.SECONDS, style.STUDY_STEPS)):
        ax.scatter(points[x], points["score"], s=22, color=style.status_color("completed"), alpha=0.75,
                   label="completed trial")
        ax.step(best[x], best["score"], where="post", color=style.BEST_COLOR, lw=2, label="best so far")
        ax.set_xlabel(label)
        ax.set_xlim(left=0)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(style.SCORE + " (final evaluation)")
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside upper right", ncols=2, fontsize=9)
    res = data.result
    sub = f"{len(points)} completed trials"
    if res.best is not None:
        sub = f"best {res.best_score:.4g} (trial {res.best.id}) found at {res.found_best_at:.1f} s; " + sub
    _title(fig, "Optimisation history", sub)
    return fig


def learning_curves(source: Any) -> Figure:
    data = load(source)
    points, ends, best = tables.curves(data)
    fig, ax = _figure(height=5.0)
    for status in style.statuses_present(points["status"]):
        groups = list(points[points["status"] == status].groupby("trial", sort=False))
        ax.plot(_nan_joined(groups, "env_steps"), _nan_joined(groups, "score"), color=style.status_color(status),
                lw=1, alpha=0.6, marker=".", ms=3, label=f"{status} ({len(groups)})")
    for status in style.statuses_present(ends["status"]):
        g = ends[ends["status"] == status]
        ax.scatter(g["env_steps"], g["score"], marker="x", s=40, color=style.status_color(status), zorder=3)
    if len(best):
        ax.plot(best["env_steps"], best["score"], color=style.BEST_COLOR, lw=2.5, marker="o", ms=4, label="best trial",
                zorder=4)
    ax.set_xlabel(style.ENV_STEPS)
    ax.set_ylabel(style.SCORE + " (training return)")
    ax.set_xlim(left=0)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=9)
    _title(fig, "Learning curves", f"{points['trial'].nunique()} trials; x: where a trial was evicted, failed or stopped")
    return fig


def exploration(source: Any) -> Figure:
    data = load(source)
    points, best = tables.exploration(data)
    fig, ax = _figure(height=5.0)
    for status in style.statuses_present(points["status"]):
        groups = list(points[points["status"] == status].groupby("trial", sort=False))
        ax.plot(_nan_joined(groups, "env_steps"), _nan_joined(groups, "entropy"), color=style.status_color(status),
                lw=1, alpha=0.6, marker=".", ms=3, label=f"{status} ({len(groups)})")
    if len(best):
        ax.plot(best["env_steps"], best["entropy"], color=style.BEST_COLOR, lw=2.5, marker="o", ms=4,
                label="best trial", zorder=4)
    ax.set_xlabel(style.ENV_STEPS)
    ax.set_ylabel("policy entropy (nats)")
    ax.set_xlim(left=0)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=9)
    _title(fig, "Exploration", f"{points['trial'].nunique()} trials; mean entropy of the policy in each phase")
    return fig


def parallel_coordinates(source: Any) -> Figure:
    data = load(source)
    axes, scores, ids = tables.parallel(data)
    lo, hi = float(np.min(scores)), float(np.max(scores))
    span = hi - lo if hi > lo else 1.0
    cols = [(a.values - a.range[0]) / ((a.range[1] - a.range[0]) or 1.0) for a in axes] + [(scores - lo) / span]
    y = np.stack(cols, axis=1)  # (n, k) in [0, 1]
    k = y.shape[1]
    fig, ax = _figure(height=4.8)
    xs = np.arange(k)
    segs = [np.stack([xs, row], axis=1) for row in y]
    lc = LineCollection(segs, array=scores, cmap="viridis", lw=1.2, alpha=0.8)
    ax.add_collection(lc)
    for i, a in enumerate(axes):
        ax.axvline(i, color="#444", lw=0.8)
        width = (a.range[1] - a.range[0]) or 1.0
        for tv, tt in zip(a.tickvals, a.ticktext):
            ax.text(i - 0.03, (tv - a.range[0]) / width, tt, ha="right", va="center", fontsize=8)
    ax.axvline(k - 1, color="#444", lw=0.8)
    for v in np.linspace(lo, hi, 5):
        ax.text(k - 1 - 0.03, (v - lo) / span, f"{v:.4g}", ha="right", va="center", fontsize=8)
    labels = [a.name + (" (log)" if a.kind == "log" else "") for a in axes] + ["score"]
    ax.set_xticks(xs, labels)
    ax.set_xlim(-0.4, k - 1 + 0.2)
    ax.set_ylim(-0.05, 1.05)
    ax.set_yticks([])
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    fig.colorbar(lc, ax=ax, label="score")
    _title(fig, "Hyperparameters and scores", f"{len(ids)} trials; score = final evaluation, else last training score")
    return fig


def importance(source: Any) -> Figure:
    data = load(source)
    imp = surrogate.importance(data)
    main = imp.table[imp.table["kind"] == "main"].sort_values("total")
    pairs = imp.table[imp.table["kind"] == "pair"].sort_values("first_order")
    cols = 2 if len(pairs) else 1
    fig, axes = _figure(height=max(3.0, 1.4 + 0.45 * max(len(main), len(pairs))), cols=cols)
    axes = np.atleast_1d(axes)
    pos = np.arange(len(main))
    axes[0].barh(pos - 0.2, main["first_order"], height=0.4, color="#0072B2", label="first order")
    axes[0].barh(pos + 0.2, main["total"], height=0.4, color="#56B4E9", label="total")
    axes[0].set_yticks(pos, main["parameter"])
    axes[0].set_title("main effects", fontsize=10)
    axes[0].legend(loc="lower right", fontsize=9)
    if len(pairs):
        axes[1].barh(np.arange(len(pairs)), pairs["first_order"], color="#CC79A7")
        axes[1].set_yticks(np.arange(len(pairs)), pairs["parameter"])
        axes[1].set_title("pair interactions", fontsize=10)
    # one scale for both panels: an interaction reads as large as it is next to the main effects
    values = np.concatenate([[0.0, 0.05], main["total"], main["first_order"], pairs["first_order"]])
    for ax in axes:
        ax.set_xlim(min(0.0, float(np.nanmin(values))), float(np.nanmax(values)) * 1.05)
        ax.set_xlabel("fraction of the score's variance")
        ax.grid(axis="x", alpha=0.3)
    _title(fig, "Hyperparameter importance", imp.source)
    return fig


def slot_timeline(source: Any, ax: Any = None) -> Figure:
    """The slot timeline; with ``ax`` (a matplotlib ``Axes``) drawn into it, untitled (several
    studies side by side: the caller titles the panels), and its figure returned."""
    data = load(source)
    tl = tables.timeline(data)
    slots = int(data.result.slots) or (int(tl["slot"].max()) + 1 if len(tl) else 1)
    if ax is None:
        fig, ax = _figure(height=min(16.0, max(3.2, 1.4 + 0.28 * slots)))
    else:
        fig = ax.figure
    for status in style.statuses_present(tl["status"]):
        g = tl[tl["status"] == status]
        ax.barh(g["slot"], g["end"] - g["start"], left=g["start"], height=0.8, color=style.status_color(status),
                edgecolor="white", lw=0.5, label=status, hatch=None)
        still = g[g["open"]]
        if len(still):
            ax.barh(still["slot"], still["end"] - still["start"], left=still["start"], height=0.8, fill=False,
                    hatch="//", edgecolor="white", lw=0)
    end_s, _ = tables.study_end(data)
    # a trial's id where its bar has room for it
    for r in tl.itertuples():
        if (r.end - r.start) > 0.03 * max(end_s, 1e-9) and slots <= 40:
            ax.text((r.start + r.end) / 2, r.slot, str(r.trial), ha="center", va="center", fontsize=7, color="white")
    ax.set_xlim(0, end_s * 1.01 if end_s > 0 else 1)
    ax.set_ylim(slots - 0.5, -0.5)
    if slots <= 40:
        ax.set_yticks(range(slots))
    ax.set_xlabel(style.SECONDS)
    ax.set_ylabel("slot")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=9)
    if fig.axes == [ax]:  # a figure of its own
        util = data.result.slot_utilization.get("overall")
        sub = f"{len(tl)} segments of {tl['trial'].nunique()} trials in {slots} slots"
        _title(fig, "Slot timeline",
               sub + (f"; slots busy {100 * util:.0f}% of the slot-ticks" if util is not None else ""))
    return fig


def pbt_lineage(source: Any) -> Figure:
    data = load(source)
    nodes, edges = tables.lineage(data)
    slots = int(data.result.slots) or 1
    fig, ax = _figure(height=min(16.0, max(3.5, 1.5 + 0.4 * slots)))
    for trial, g in nodes.groupby("trial", sort=False):
        ax.plot(g["phase"], g["slot"], color="#BBBBBB", lw=2, zorder=1)
        if slots <= 40:
            ax.annotate(f"#{trial}", (g["phase"].iloc[0], g["slot"].iloc[0]), xytext=(0, 7), textcoords="offset points",
                        ha="center", fontsize=8, color="#555555")
    for e in edges.itertuples():
        ax.annotate("", xy=(e.child_phase, e.child_slot), xytext=(e.phase, e.parent_slot),
                    arrowprops=dict(arrowstyle="->", color="#D55E00", lw=1.2, ls=":", shrinkA=5, shrinkB=5), zorder=2)
    finite = nodes[np.isfinite(nodes["score"].astype(float))]
    sc = ax.scatter(finite["phase"], finite["slot"], c=finite["score"], cmap="viridis", s=60, edgecolor="white",
                    zorder=3)
    if len(finite):
        fig.colorbar(sc, ax=ax, label="score")
    ax.set_ylim(slots - 0.5, -0.5)
    if slots <= 40:
        ax.set_yticks(range(slots))
    if len(nodes):
        ax.set_xticks(range(1, int(nodes["phase"].max()) + 1))
    ax.set_xlabel("phase")
    ax.set_ylabel("slot")
    ax.grid(alpha=0.3)
    _title(fig, "PBT lineage", f"{len(edges)} exploits over {nodes['trial'].nunique()} trials (arrows: parent -> child)")
    return fig


def surrogate_fit(source: Any) -> Figure:
    data = load(source)
    df, src = surrogate.predicted_vs_observed(data)
    fig, ax = _figure(height=5.4)
    lo = float(min(df["observed"].min(), df["predicted"].min()))
    hi = float(max(df["observed"].max(), df["predicted"].max()))
    ax.plot([lo, hi], [lo, hi], color="#888888", ls="--", lw=1, label="predicted = observed")
    vmin, vmax = float(df["env_steps"].min()), float(df["env_steps"].max())
    sc = None
    for flag, label in ((True, "fitted on"), (False, "after the fit")):
        g = df[df["in_fit"] == flag]
        if not len(g):
            continue
        ax.errorbar(g["observed"], g["predicted"], yerr=2 * g["std"], fmt="none", ecolor="#999999", elinewidth=0.8,
                    alpha=0.6, zorder=1)
        kw = (dict(c=g["env_steps"], cmap="viridis", vmin=vmin, vmax=vmax) if flag
              else dict(facecolors="none", edgecolors=_colors(g["env_steps"], vmin, vmax)))
        sc_ = ax.scatter(g["observed"], g["predicted"], s=30, label=label, zorder=2, **kw)
        sc = sc if sc is not None or not flag else sc_
    if sc is not None:
        fig.colorbar(sc, ax=ax, label=style.ENV_STEPS)
    ax.set_xlabel("observed score")
    ax.set_ylabel("predicted score (posterior mean \u00b1 2 sd)")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=9)
    _title(fig, "Surrogate: predicted vs observed", src + "\n" + surrogate.fit_summary(df))
    return fig


def _colors(values, vmin: float, vmax: float):
    from matplotlib import colormaps

    span = (vmax - vmin) or 1.0
    return colormaps["viridis"]((np.asarray(values, np.float64) - vmin) / span)
