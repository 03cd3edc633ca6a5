"""Watching trained agents: rollouts, frames, GIFs (reads the shared ``hypertrick_store``)."""

import sys

import jax
import numpy as np
import pytest
from PIL import Image

import hyperjax as hj
from hyperjax.render import (brax_html, caption, frame_plan, frames, minatar_frame, record, renderer, rollout, show,
                             watch, write_gif)
from hyperjax.study.reader import load_trial_params

POLE = np.array([202, 152, 101])  # Gymnasium's CartPole pole colour


def read_gif(path) -> list[np.ndarray]:
    with Image.open(path) as im:
        out = []
        for i in range(im.n_frames):
            im.seek(i)
            out.append(np.asarray(im.convert("RGB")).astype(np.int16))
    return out


def one(members, i=0):
    return jax.tree.map(lambda x: x[i], members)


@pytest.fixture(scope="module")
def best(hypertrick_store):
    study = hj.load_study(hypertrick_store, params=False)
    agent, members = load_trial_params(hypertrick_store, study.best.id)
    return study, agent, one(members)


def evaluate_one(agent, member, key) -> float:
    """``agent.evaluate(key, member, 1)``: the return of one greedy evaluation episode."""
    return float(jax.jit(agent.evaluate, static_argnums=2)(key, member, 1)[0])


def check_gif(rec, path):
    """The GIF holds one frame per recorded step plus the reset frame, as recorded."""
    gif = read_gif(path)
    n = int(rec.lengths.sum()) + len(rec.lengths)
    assert len(gif) == n == len(rec.frames)
    assert gif[0].shape == rec.frames[0].shape == (424, 600, 3)  # Gymnasium's 600x400 under a 24-pixel caption
    assert any(np.abs(g - gif[0]).max() > 0 for g in gif[1:])
    # a GIF has 256 colours per frame: close to what was drawn, not equal
    for i in (0, n // 2, n - 1):
        assert np.abs(gif[i] - rec.frames[i]).mean() < 3
    return gif


def test_watch_best_trial_writes_the_episode_as_a_gif(hypertrick_store, best, tmp_path):
    study, agent, _ = best
    rec = watch(hypertrick_store, out=tmp_path / "best.gif", max_steps=200)
    assert rec.path == tmp_path / "best.gif" and f"trial {study.best.id}" in rec.label
    gif = check_gif(rec, rec.path)
    r = rec.rollout
    length = int(rec.lengths[0])
    assert 1 <= length <= 200 and r.length == length
    assert rec.returns[0] == r.rewards[r.valid].sum() == length  # CartPole pays 1 per step
    # the first frame is the reset state: a reset observation, drawn as such
    assert np.all(np.abs(r.obs[0]) <= 0.05) and int(r.states.time[0]) == 0
    assert np.array_equal(rec.frames[0, 24:], frames("CartPole-v1", r.obs[:1])[0])
    assert np.abs(gif[0][24:] - frames("CartPole-v1", r.obs[1:2])[0]).mean() > 0  # not just any frame
    # the last frame is where the episode ended: terminal, or cut by max_steps
    last = r.final_obs[length - 1]
    terminal = abs(last[0]) > 2.4 or abs(last[2]) > 12 * 2 * np.pi / 360
    assert terminal == bool(r.dones[length - 1]) or length == 200
    assert np.array_equal(rec.frames[-1, 24:], frames("CartPole-v1", last[None])[0])


def test_watch_a_completed_trial_that_is_not_the_best(hypertrick_store, best, tmp_path):
    study, _, best_member = best
    other = next(t for t in study.trials if t.status == "completed" and t.id != study.best.id)
    rec = watch(hypertrick_store, other.id, tmp_path / "other.gif", seed=1, max_steps=200)
    check_gif(rec, rec.path)
    assert f"trial {other.id}" in rec.label
    agent, members = load_trial_params(hypertrick_store, other.id)
    m = one(members)
    assert not np.array_equal(jax.tree.leaves(m.params)[0], jax.tree.leaves(best_member.params)[0])
    assert rec.returns[0] == min(evaluate_one(agent, m, jax.random.key(1)), 200)


def test_greedy_rollout_plays_the_episode_the_evaluation_scores(hypertrick_store, best):
    study, agent, m = best
    evaluate = jax.jit(lambda k: agent.evaluate(k, m, 1)[0])
    for s in range(3):
        key = jax.random.key(s)
        r = rollout(agent, m, key, max_steps=500)
        assert r.episode_returns()[0] == float(evaluate(key))
    # and what the study's own (population) evaluation measures on that key
    full = hj.load_study(hypertrick_store)
    r = rollout(agent, m, jax.random.split(jax.random.key(5), 1)[0], max_steps=500)
    assert r.episode_returns()[0] == full.evaluate_best(episodes=1, seed=5)


def test_greedy_is_deterministic_and_stochastic_rollouts_vary(best):
    _, agent, m = best
    a = rollout(agent, m, jax.random.key(0), max_steps=64)
    b = rollout(agent, m, jax.random.key(0), max_steps=64)
    np.testing.assert_array_equal(a.actions, b.actions)
    np.testing.assert_array_equal(a.obs, b.obs)
    sto = [rollout(agent, m, jax.random.key(s), max_steps=64, greedy=False) for s in (0, 0, 1, 2)]
    np.testing.assert_array_equal(sto[0].actions, sto[1].actions)
    assert not np.array_equal(sto[0].actions, sto[2].actions)
    assert not np.array_equal(sto[2].actions, sto[3].actions)
    # same key, same environment stream: the same first state, other actions
    np.testing.assert_array_equal(sto[0].obs[0], a.obs[0])
    assert not np.array_equal(sto[0].actions, a.actions)


def test_several_episodes_and_frame_plan(best):
    _, agent, m = best
    r = rollout(agent, m, jax.random.key(3), max_steps=500, episodes=3, greedy=False)
    lengths, returns = r.episode_lengths(), r.episode_returns()
    assert len(lengths) <= 3 and lengths.sum() == r.length and np.array_equal(lengths, returns)
    plan = frame_plan(r)
    assert len(plan.obs) == r.length + len(lengths)
    starts = np.flatnonzero(plan.step == 0)
    assert len(starts) == len(lengths) and np.all(plan.ret[starts] == 0)
    ends = np.r_[starts[1:] - 1, len(plan.ret) - 1]
    np.testing.assert_array_equal(plan.ret[ends], returns)
    # an episode's last frame is the terminal observation, the next one a reset observation
    assert r.dones[: r.length].sum() >= 2  # a stochastic, barely trained policy soon drops the pole
    for e in ends[:-1]:
        x, theta = plan.obs[e][0], plan.obs[e][2]
        assert abs(x) > 2.4 or abs(theta) > 12 * 2 * np.pi / 360
        assert plan.state[e] == -1  # its env state was replaced by the reset
    assert np.all(np.abs(plan.obs[starts]) <= 0.05)


def test_trials_without_parameters_and_bad_arguments_fail_clearly(hypertrick_store, tmp_path):
    study = hj.load_study(hypertrick_store, params=False)
    evicted = next(t for t in study.trials if t.status == "evicted")
    with pytest.raises(ValueError, match=rf"trial {evicted.id} has no saved parameters \(status evicted"):
        watch(hypertrick_store, evicted.id)
    with pytest.raises(ValueError, match="trial_id=999"):
        watch(hypertrick_store, 999)
    with pytest.raises(ValueError, match="member=1"):
        watch(hypertrick_store, member=1)
    with pytest.raises(ValueError, match=r"renders to a GIF file; give a \.gif path"):
        watch(hypertrick_store, out=tmp_path / "x.html")
    with pytest.raises(ValueError, match="holds no hyperjax study"):
        watch(str(tmp_path))
    agent, members = load_trial_params(hypertrick_store, study.best.id)
    with pytest.raises(ValueError, match="leading axis"):
        rollout(agent, members, jax.random.key(0))
    with pytest.raises(ValueError, match="max_steps=0"):
        rollout(agent, one(members), jax.random.key(0), max_steps=0)


def test_minatar_frames_colour_each_channel():
    grid = np.zeros((10, 10, 4), bool)
    grid[2, 3, 0] = True
    grid[5, 5, 3] = True
    grid[7, 7, 1] = grid[7, 7, 2] = True  # overlapping objects: the highest channel is drawn
    img = minatar_frame(grid, cell=8)
    assert img.shape == (80, 80, 3) and img.dtype == np.uint8
    cell = lambda r, c: img[r * 8:(r + 1) * 8, c * 8:(c + 1) * 8].reshape(-1, 3)  # noqa: E731
    assert np.all(cell(0, 0) == 0)  # empty is black
    colours = [cell(2, 3)[0], cell(7, 7)[0], cell(5, 5)[0]]  # channels 0, 2, 3
    for r, c in [(2, 3), (5, 5), (7, 7)]:
        assert np.all(cell(r, c) == cell(r, c)[0]) and cell(r, c)[0].any()
    assert len({tuple(c) for c in colours}) == 3
    assert np.count_nonzero(img.any(-1)) == 3 * 64
    # the env's flat observation is the same grid
    seq = frames("Breakout-MinAtar", np.stack([grid.ravel(), np.zeros(400, bool)]))
    assert seq.shape == (2, 320, 320, 3)
    np.testing.assert_array_equal(seq[0], minatar_frame(grid))
    assert not seq[1].any()
    with pytest.raises(ValueError, match="do not hold"):
        frames("Breakout-MinAtar", np.zeros((1, 399)))


def test_cartpole_frames_show_the_pole_angle_and_cart_position():
    obs = np.zeros((4, 4), np.float32)
    obs[1, 2], obs[2, 2] = 0.2, -0.2  # pole leaning right, left
    obs[3, 0] = 1.0  # cart moved right
    f = frames("CartPole-v1", obs).astype(np.int16)
    assert f.shape == (4, 400, 600, 3)

    def centroid_x(img, colour):
        return np.nonzero(np.all(np.abs(img - colour) < 8, axis=-1))[1].mean()

    upright, right, left, moved = (centroid_x(x, POLE) for x in f)
    assert abs(upright - 300) < 3 and right > upright + 10 and left < upright - 10
    assert moved > upright + 50
    # leaning right is leaning left mirrored
    assert np.mean(np.any(f[1] != f[2][:, ::-1], axis=-1)) < 0.01
    assert np.any(f[1] != f[0])


def test_other_classic_control_envs_record():
    agent = hj.PPO(env="Pendulum-v1", num_envs=2, num_steps=8, hidden=(8,))
    m = agent.init(jax.random.key(0), agent.hparams())
    rec = record(agent, m, seed=0, max_steps=5)
    assert rec.frames.shape == (6, 524, 500, 3) and rec.lengths.tolist() == [5]
    np.testing.assert_allclose(rec.rollout.rewards[:5].sum(), rec.returns[0], rtol=1e-6)


def test_envs_without_a_renderer_and_without_brax_fail_clearly(monkeypatch):
    with pytest.raises(ValueError, match=r"'Catch-bsuite' has no renderer; renderable: CartPole-v1"):
        renderer("Catch-bsuite")
    with pytest.raises(ValueError, match="Catch-bsuite"):
        frames("Catch-bsuite", np.zeros((1, 50)))
    with pytest.raises(ValueError, match="HTML viewer"):
        frames("brax:ant", np.zeros((1, 27)))
    monkeypatch.setitem(sys.modules, "brax", None)  # as if brax were not installed
    with pytest.raises(ValueError, match=r"needs brax, which is not installed"):
        brax_html("brax:ant", None)


def test_gif_files_captions_and_notebook_display(tmp_path):
    colours = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255]], np.uint8)
    seq = np.broadcast_to(colours[:, None, None, :], (3, 20, 30, 3))
    path = write_gif(seq, tmp_path / "sub" / "rgb.gif", fps=10)
    gif = read_gif(path)
    assert len(gif) == 3 and all(np.array_equal(g[5, 5], c) for g, c in zip(gif, colours))
    with Image.open(path) as im:
        assert im.info["duration"] == 100 and im.info["loop"] == 0
    with pytest.raises(ValueError, match="must end with .gif"):
        write_gif(seq, tmp_path / "x.png")
    with pytest.raises(ValueError, match="fps=0"):
        write_gif(seq, tmp_path / "x.gif", fps=0)
    with pytest.raises(ValueError, match=r"must be \(N, H, W, 3\) uint8"):
        write_gif(seq.astype(np.float32), tmp_path / "x.gif")
    boxed = caption(seq, ["a", "b", "c"], height=16)
    assert boxed.shape == (3, 36, 30, 3) and np.array_equal(boxed[:, 16:], seq)
    assert (boxed[:, :16] < 128).any() and not np.array_equal(boxed[0, :16], boxed[1, :16])
    pytest.importorskip("IPython")
    shown = show(path)
    assert shown.data == path.read_bytes()


def test_recording_shows_itself_in_a_notebook(best):
    _, agent, m = best
    rec = record(agent, m, seed=2, max_steps=3)
    assert rec._repr_html_().startswith('<img src="data:image/gif;base64,')
    assert "4 frames" in repr(rec) and rec.frames.shape[0] == 4
    pytest.importorskip("IPython")
    assert show(rec).data == rec.gif_bytes()


def test_brax_recording_is_a_viewer_page():
    pytest.importorskip("brax")
    agent = hj.PPO(env="brax:inverted_pendulum", num_envs=2, num_steps=8, hidden=(8,))
    m = agent.init(jax.random.key(0), agent.hparams())
    rec = record(agent, m, seed=0, max_steps=20)
    assert rec.frames is None and "brax" in rec.html.lower()
    assert rec.returns[0] == evaluate_one(agent, m, jax.random.key(0)) or rec.lengths[0] == 20
