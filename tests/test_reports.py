"""Study reports: every figure's content checked against the store it was drawn from (trace
counts, axis ranges, the timeline row for row against ``segments``, best-so-far against ``ticks``,
PBT edges against the trials' parents), the HTML page and the PNGs, a store read while another
connection writes it, and the BNN figures on a surrogate state built by hand.

The BNN figures are not tested on a real BNN study: fitting the surrogate compiles an SVI program
(~15 s) and a study that reaches a fit takes ~50 s on two cores. Instead a store copy gets a
snapshot whose proposer state carries a hand-made posterior (random weights, one hidden layer):
the report must restore it, never refit it, and its predictions must equal a plain numpy forward
pass of those weights, which checks the whole restore path at no compile cost.
"""

import dataclasses
import itertools
import json
import math
import os
import shutil
import sqlite3

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import hyperjax as hj
from hyperjax.reports import (
    NotApplicable,
    exploration,
    figures,
    importance,
    learning_curves,
    load,
    optimization_history,
    parallel_coordinates,
    pbt_lineage,
    report,
    slot_timeline,
    static,
    surrogate_fit,
    tables,
)
from hyperjax.store import StudyStore, serialize
from hyperjax.surrogate.bnn import Posterior
from hyperjax.surrogate.proposer import BNNProposer, features


def _sql(store, query):
    conn = sqlite3.connect(f"file:{os.path.join(store, 'study.sqlite')}?mode=ro", uri=True)
    try:
        return conn.execute(query).fetchall()
    finally:
        conn.close()


@pytest.fixture(scope="module")
def ht(hypertrick_store):
    return load(hypertrick_store)


# -- figures ------------------------------------------------------------------------------------------
def test_history_best_so_far_is_monotone_and_matches_the_ticks_table(ht, hypertrick_store):
    res = ht.result
    points, best = tables.history(ht)
    done = [t for t in res.trials if t.status == "completed" and math.isfinite(t.final_score)]
    assert sorted(points["trial"]) == sorted(t.id for t in done)
    assert np.all(np.diff(best["score"]) > -1e-12) and np.all(np.diff(best["seconds"]) >= 0)
    assert np.all(np.diff(best["env_steps"]) >= 0)
    assert best["score"].iloc[-1] == max(t.final_score for t in done)  # the incumbent by first evaluation
    # the store's own record of the best at every tick agrees with the step function
    for tick, steps, best_score in _sql(hypertrick_store, "SELECT tick, env_steps, best_score FROM ticks"):
        so_far = best[best["env_steps"] <= steps]["score"]
        assert (best_score is None and so_far.empty) or so_far.iloc[-1] == pytest.approx(best_score)
    fig = optimization_history(ht)
    assert len(fig.data) == 4  # (points, best) against time and against env steps
    assert list(fig.data[0].y) == list(points["score"]) and list(fig.data[2].x) == list(points["env_steps"])
    mpl = static.optimization_history(ht)
    for ax, col in zip(mpl.axes, ("seconds", "env_steps")):
        lo, hi = ax.get_xlim()
        assert lo <= points[col].min() and hi >= best[col].max()
        lo, hi = ax.get_ylim()
        assert lo <= points["score"].min() and hi >= points["score"].max()


def test_top_trials_and_summary_follow_the_studys_choice(ht):
    """The report ranks the re-evaluated leaders first, by their re-evaluation (the best on top),
    then the other evaluated trials by final score; the summary gives the best's re-evaluation."""
    res = ht.result
    top = tables.top_trials(ht, n=12)
    leaders = sorted((t for t in res.trials if math.isfinite(t.reeval_score)), key=lambda t: -t.reeval_score)
    assert len(leaders) == 8 and top["trial"].iloc[0] == res.best.id == leaders[0].id
    assert list(top["trial"][:8]) == [t.id for t in leaders]
    assert list(top["re-evaluated"][:8]) == [round(t.reeval_score, 4) for t in leaders]
    assert top["re-evaluated"][8:].isna().all() and list(top["final score"][8:]) == sorted(top["final score"][8:])[::-1]
    rows = dict(tables.summary_rows(ht))
    assert f"{res.best.reeval_score:.4g} re-evaluated on fresh episodes, the highest of the 8 leaders" in rows["best score"]
    assert "final choice" not in rows  # said only when the default's retraining was dropped for time
    dropped = load(dataclasses.replace(res, selection={"reevaluate": 0, "reevaluate_seeds": 0, "retrain_dropped": True}))
    assert "retraining the leaders on fresh seeds was dropped" in dict(tables.summary_rows(dropped))["final choice"]


def test_clock_rebuilt_from_trials_equals_the_ticks_table(ht):
    """A StudyResult with no store (tune's own) gets its env-step axis from the trials."""
    live = load(dataclasses.replace(ht.result))
    assert live.status == "live"
    np.testing.assert_array_equal(live.clock["env_steps"], ht.clock["env_steps"])
    # a tick records its observations before it evaluates and commits
    seconds, committed = live.clock["seconds"].to_numpy(), ht.clock["seconds"].to_numpy()
    assert np.all(seconds <= committed) and np.all(seconds[1:] > committed[:-1])
    pd.testing.assert_frame_equal(tables.history(live)[0], tables.history(ht)[0])


def test_learning_curves_one_line_per_trial_evictions_marked(ht, hypertrick_store):
    res = ht.result
    fig = learning_curves(ht)
    lines = {tr.legendgroup: tr for tr in fig.data if tr.mode == "lines+markers" and tr.name != "best trial"}
    for status, tr in lines.items():
        trials = [t for t in res.trials if t.status == status and t.curve]
        # None separates trials: one run of points per trial, in order
        runs = [list(g) for k, g in itertools.groupby(tr.y, key=lambda v: v is None) if not k]
        assert len(runs) == len(trials)
        assert [len(r) for r in runs] == [len(t.curve) for t in trials]
        assert tr.name == f"{status} ({len(trials)})"
    n_obs = _sql(hypertrick_store, "SELECT count(*) FROM observations")[0][0]
    assert sum(sum(v is not None for v in tr.y) for tr in lines.values()) == n_obs
    ends = [tr for tr in fig.data if tr.mode == "markers"]
    evicted = {t.id: t for t in res.trials if t.status == "evicted"}
    assert len(evicted) > 0 and ends[0].name == "evicted here"
    assert sorted(ends[0].customdata[:, 0]) == sorted(evicted)
    for (tid, _), x, y in zip(ends[0].customdata, ends[0].x, ends[0].y):
        assert (x, y) == (evicted[tid].curve_steps[-1], evicted[tid].curve[-1])
    best = [tr for tr in fig.data if tr.name == "best trial"][0]
    np.testing.assert_array_equal(best.x, res.best_curve[0])
    ax = static.learning_curves(ht).axes[0]
    steps = [s for t in res.trials for s in t.curve_steps]
    assert ax.get_xlim()[1] >= max(steps) and ax.get_xlim()[0] <= min(steps)


def test_exploration_draws_every_recorded_entropy(ht, hypertrick_store):
    res = ht.result
    fig = exploration(ht)
    lines = {tr.name.split(" (")[0]: tr for tr in fig.data if tr.name != "best trial"}
    for status, tr in lines.items():
        trials = [t for t in res.trials if t.status == status and t.entropy_curve]
        runs = [list(g) for k, g in itertools.groupby(tr.y, key=lambda v: v is None) if not k]
        assert runs == [t.entropy_curve for t in trials]
    stored = sorted(v for (v,) in _sql(hypertrick_store, "SELECT entropy FROM observations"))
    drawn = sorted(v for tr in lines.values() for v in tr.y if v is not None)
    assert drawn == stored and len(stored) == sum(len(t.curve) for t in res.trials)
    best = [tr for tr in fig.data if tr.name == "best trial"][0]
    np.testing.assert_array_equal(best.y, res.best.entropy_curve)  # not PBT: its own curve
    assert static.exploration(ht).axes[0].get_ylabel() == "policy entropy (nats)"
    # a store written before entropies were recorded has none: nothing to show, said so
    old = dataclasses.replace(res, trials=[dataclasses.replace(t, entropy_curve=[math.nan] * len(t.curve))
                                           for t in res.trials])
    with pytest.raises(NotApplicable, match="no policy entropy") as e:
        exploration(old)
    assert not e.value.kind


def test_parallel_coordinates_log_and_categorical_axes(ht):
    res = ht.result
    fig = parallel_coordinates(ht)
    (pc,) = fig.data
    dims = {d.label: d for d in pc.dimensions}
    assert list(dims) == ["learning_rate (log)", "gamma", "score"]
    scored = [t for t in res.trials if math.isfinite(tables.trial_score(t))]
    lr = dims["learning_rate (log)"]
    np.testing.assert_allclose(lr.values, [math.log10(t.config["learning_rate"]) for t in scored])
    assert lr.range[0] <= min(lr.values) and lr.range[1] >= max(lr.values)
    assert lr.range == (math.log10(1e-4), math.log10(1e-2))
    assert "0.001" in lr.ticktext  # labelled in the hyperparameter's own units
    gamma = dims["gamma"]
    assert list(gamma.ticktext) == ["0.9", "0.99", "0.999"]
    assert [gamma.ticktext[int(v)] for v in gamma.values] == [str(t.config["gamma"]) for t in scored]
    np.testing.assert_allclose(pc.line.color, [tables.trial_score(t) for t in scored])
    assert dims["score"].range[0] <= min(pc.line.color) and dims["score"].range[1] >= max(pc.line.color)


def test_slot_timeline_bars_are_the_segments_table(ht, hypertrick_store):
    fig = slot_timeline(ht)
    bars = []
    for tr in fig.data:
        assert tr.orientation == "h"
        for tid, slot, base, width in zip(tr.customdata[:, 0], tr.y, tr.base, tr.x):
            bars.append((int(tid), int(slot), float(base), float(base + width)))
    rows = _sql(hypertrick_store, 'SELECT trial, slot, start, "end" FROM segments ORDER BY trial, idx')
    assert len(bars) == len(rows)
    for got, want in zip(sorted(bars), rows):
        assert got[:2] == tuple(want[:2]) and got[2:] == pytest.approx(want[2:], abs=1e-9)
    status = dict(_sql(hypertrick_store, "SELECT id, status FROM trials"))
    for tr in fig.data:
        assert all(status[int(t)] == tr.name for t in tr.customdata[:, 0])
    end = max(r[3] for r in rows)
    assert fig.layout.xaxis.range[0] <= min(r[2] for r in rows) and fig.layout.xaxis.range[1] >= end
    assert set(range(ht.result.slots)) >= {r[1] for r in rows}
    ax = static.slot_timeline(ht).axes[0]
    assert ax.get_xlim()[1] >= end and len(ax.patches) >= len(rows)


def test_pbt_lineage_edges_are_the_parent_links(pbt_store):
    data = load(pbt_store)
    fig = pbt_lineage(data)
    edges = [tr for tr in fig.data if tr.name.startswith("exploit")][0]
    got = {tuple(int(v) for v in cd) for cd in edges.customdata if cd[0] is not None}
    want = set(_sql(pbt_store, "SELECT parent, id FROM trials WHERE parent IS NOT NULL"))
    assert got == want and len(want) > 0
    nodes = [tr for tr in fig.data if tr.name == "score at a phase"][0]
    n_obs = _sql(pbt_store, "SELECT count(*) FROM observations WHERE score IS NOT NULL")[0][0]
    assert len(nodes.x) == n_obs
    # an edge leaves the parent at the phase the child started from, in the parent's lane
    by_id = {t.id: t for t in data.result.trials}
    for e in tables.lineage(data)[1].itertuples():
        assert e.phase == by_id[e.child].start_phase and e.parent_slot == by_id[e.parent].slot
    labels = [t.get_text() for t in static.pbt_lineage(data).axes[0].texts if t.get_text()]
    assert sorted(labels) == sorted(f"#{t.id}" for t in data.result.trials)  # a label per trial


def test_figures_that_do_not_apply_are_left_out(ht, pbt_store):
    assert list(figures(ht)) == ["history", "curves", "exploration", "parallel", "importance", "timeline"]
    assert "lineage" in figures(pbt_store) and "surrogate" not in figures(pbt_store)
    with pytest.raises(NotApplicable, match="not a PBT study") as e:
        pbt_lineage(ht)
    assert e.value.kind
    with pytest.raises(ValueError, match="no BNN surrogate"):
        surrogate_fit(ht)


# -- importance from the trials ------------------------------------------------------------------
def _with_scores(data, fn, keep=None):
    """The study with every curve point replaced by ``fn(config)`` (and only ``keep`` trials)."""
    trials = []
    for t in data.result.trials[:keep]:
        t = dataclasses.replace(t, curve=[fn(t.config)] * len(t.curve))
        trials.append(t)
    return load(dataclasses.replace(data.result, trials=trials))


def test_regression_importance_finds_the_parameter_that_matters(ht):
    rng = np.random.default_rng(0)
    data = _with_scores(ht, lambda c: 100 * math.log10(c["learning_rate"]) + rng.normal(0, 1.0))
    fig = importance(data)
    assert "RBF regression" in fig.layout.title.text
    first, total = fig.data[0], fig.data[1]
    by = dict(zip(total.y, total.x))
    assert by["learning_rate"] > 0.8 and by["gamma"] < 0.1
    assert dict(zip(first.y, first.x))["learning_rate"] > 0.8


def test_importance_says_when_it_cannot_tell(ht):
    with pytest.raises(NotApplicable, match="too few trials"):
        importance(_with_scores(ht, lambda c: c["learning_rate"], keep=5))
    rng = np.random.default_rng(1)
    with pytest.raises(NotApplicable, match="do not explain"):
        importance(_with_scores(ht, lambda c: rng.normal()))


# -- the BNN figures on a hand-made posterior ------------------------------------------------------
HIDDEN, DRAWS = 8, 16


def _bnn_store(src, dst):
    """A copy of ``src`` whose config says ``proposer: bnn`` and whose newest snapshot and final
    host state hold a BNN proposer state told every observation, with a random posterior "fit"
    on the first half."""
    shutil.copytree(src, dst)
    res = hj.load_study(dst, params=False)
    target = float(max(s for t in res.trials for s in t.curve_steps))
    proposer = BNNProposer(res.space, seed=0, target_budget=target, precompile=False)
    proposer.ask(8)  # a study's first proposals (Sobol points: no fit)
    obs = [(t.u, c, s) for t in res.trials for s, c in zip(t.curve_steps, t.curve) if math.isfinite(c)]
    for u, c, s in obs:
        proposer.tell(u[None], np.asarray([c]), np.asarray([s]))
    f = features(res.space, res.trials[0].u[None]).shape[1] + 1
    rng = np.random.default_rng(0)
    w = {"w0": rng.normal(size=(DRAWS, f, HIDDEN)) / math.sqrt(f), "b0": rng.normal(size=(DRAWS, HIDDEN)),
         "w_out": rng.normal(size=(DRAWS, HIDDEN, 2)) / math.sqrt(HIDDEN), "b_out": rng.normal(size=(DRAWS, 2))}
    w = {k: v.astype(np.float32) for k, v in w.items()}
    state = proposer.state_dict()
    state["posterior"] = Posterior(w, 20.0, 5.0, 1).state_dict()
    state["fitted_on"] = len(obs) // 2
    conn = sqlite3.connect(os.path.join(dst, "study.sqlite"))
    with conn:
        config = json.loads(conn.execute("SELECT value FROM study WHERE key = 'config'").fetchone()[0])
        conn.execute("UPDATE study SET value = ? WHERE key = 'config'", (json.dumps({**config, "proposer": "bnn"}),))
        tick = conn.execute("SELECT max(tick) FROM ticks").fetchone()[0]
        host = serialize.dumps({"proposer": state, "observers": []})
        conn.execute("INSERT OR REPLACE INTO snapshots VALUES (?, ?)", (tick, host))
        conn.execute("INSERT OR REPLACE INTO final VALUES ('host', ?)", (host,))  # what a finished study reads
    conn.close()
    return res, w, obs, target


def test_bnn_figures_use_the_stored_posterior(hypertrick_store, tmp_path):
    res, w, obs, target = _bnn_store(hypertrick_store, str(tmp_path / "bnn"))
    data = load(str(tmp_path / "bnn"))
    assert data.surrogate is not None and data.uses_surrogate
    fig = surrogate_fit(data)
    fitted, after = [tr for tr in fig.data if tr.name in ("fitted on", "after the fit")]
    assert len(fitted.x) == len(obs) // 2 and len(after.x) == len(obs) - len(obs) // 2
    # the posterior mean by hand: warp is the identity (never fitted), one tanh layer per draw
    lo = min(s for _, _, s in obs)
    by_point = {}
    for u, c, s in obs:
        x = np.concatenate([features(res.space, u[None])[0], [(math.log(s) - math.log(lo)) / (math.log(target) - math.log(lo))]])
        h = np.tanh(np.einsum("f,sfh->sh", x, w["w0"]) + w["b0"])
        mean = (np.einsum("sh,sh->s", h, w["w_out"][:, :, 0]) + w["b_out"][:, 0]) * 5.0 + 20.0
        by_point.setdefault((round(c, 6)), []).append((mean.mean(), mean.std()))
    for tr in (fitted, after):
        for c, p, sd in zip(tr.x, tr.y, tr.error_y.array / 2):
            assert any(abs(p - m) < 1e-3 * max(1, abs(m)) and abs(sd - s) < 1e-3 * max(1, s)
                       for m, s in by_point[round(c, 6)])
    imp = importance(data)
    assert imp.layout.title.text.startswith("Hyperparameter importance<br><sup>BNN posterior mean")
    assert all(np.isfinite(tr.x).all() for tr in imp.data)
    out = report(str(tmp_path / "bnn"), out=str(tmp_path / "out"))
    assert "surrogate.png" in out and "importance.png" in out
    # a finished study's surrogate is its final state, which may be newer than any snapshot (a
    # short study's BNN fits after the last rate-limited snapshot); a running one has only those
    conn = sqlite3.connect(os.path.join(tmp_path, "bnn", "study.sqlite"))
    with conn:
        conn.execute("DELETE FROM snapshots")
    assert load(str(tmp_path / "bnn")).surrogate is not None
    with conn:
        conn.execute("UPDATE study SET value = '\"running\"' WHERE key = 'status'")
    conn.close()
    assert load(str(tmp_path / "bnn")).surrogate is None


# -- the report ------------------------------------------------------------------------------------
def _check_png(path):
    with Image.open(path) as im:
        assert im.format == "PNG"
        w, h = im.size
        assert 900 <= w <= 2000 and 250 <= h <= 2000, (path, im.size)
        colours = im.convert("RGB").getcolors(maxcolors=1 << 16)
        assert colours is None or len(colours) > 20  # drawn on, not a blank canvas


def test_report_writes_every_figure(hypertrick_store, pbt_store, tmp_path):
    from plotly.offline import get_plotlyjs

    for store in (hypertrick_store, pbt_store):
        names = list(figures(store))
        out = report(store, out=str(tmp_path / os.path.basename(os.path.dirname(store))))
        assert sorted(out) == sorted(["report.html", *(f"{n}.png" for n in names)])
        page = open(out["report.html"], encoding="utf-8").read()
        assert page.count(get_plotlyjs()[:2000]) == 1  # plotly.js embedded once
        assert page.count("Plotly.newPlot(") == len(names)
        for n in names:
            assert page.count(f'id="figure-{n}"') == 1
            _check_png(out[f"{n}.png"])
        res = hj.load_study(store, params=False)
        assert f"{res.best_score:.4g} (trial {res.best.id}" in page  # the summary table
        assert "finished" in page
    assert "PBT lineage" in page and "Not shown: too few trials for importance" in page


def test_report_on_a_store_being_written(hypertrick_store, tmp_path):
    store = str(tmp_path / "store")
    shutil.copytree(hypertrick_store, store)
    writer = StudyStore(store)  # holds the store's lock, as a running study does
    try:
        writer.conn.execute("BEGIN IMMEDIATE")  # and an open write transaction
        writer.conn.execute("INSERT INTO ticks VALUES (999, 1.0, 1, 1, 1, -1, NULL, 0)")
        data = load(store)
        assert data.status == "finished" and len(data.clock) == len(_sql(hypertrick_store, "SELECT * FROM ticks"))
        out = report(store, out=str(tmp_path / "out"))
        assert os.path.getsize(out["report.html"]) > 100_000
        writer.conn.rollback()
        # as a running study leaves it: its last trial holds its slot (an open segment)
        last = _sql(store, "SELECT max(id) FROM trials")[0][0]
        with writer.conn:
            writer.conn.execute("UPDATE study SET value = '\"running\"' WHERE key = 'status'")
            writer.conn.execute("UPDATE trials SET status = 'running', final_score = NULL WHERE id = ?", (last,))
            writer.conn.execute('UPDATE segments SET "end" = NULL, end_tick = -1 WHERE trial = ?', (last,))
        data = load(store)
        assert data.status == "running"
        fig = slot_timeline(data)
        (running,) = [tr for tr in fig.data if tr.name == "running"]
        assert list(running.customdata[:, 0]) == [last] and running.marker.pattern.shape == ("/",)
        assert running.base[0] + running.x[0] == pytest.approx(data.result.seconds)  # open until now
        report(data, out=str(tmp_path / "out2"))  # the static timeline draws it too
    finally:
        writer.close()
    assert load(store).status == "interrupted"  # nobody writes it any more


def test_report_default_out_and_bad_arguments(hypertrick_store, tmp_path):
    store = str(tmp_path / "store")
    shutil.copytree(hypertrick_store, store)
    out = report(store)
    assert os.path.dirname(out["report.html"]) == store
    with pytest.raises(ValueError, match="holds no hyperjax study"):
        report(str(tmp_path / "nothing"))
    with pytest.raises(ValueError, match="source=3"):
        figures(3)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is not a directory"):
        report(store, out=str(tmp_path / "file"))
    with pytest.raises(ValueError, match="out=None"):
        report(hj.load_study(store, params=False))
