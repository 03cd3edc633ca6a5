"""The vectorised/sharded population equals its unvectorised twin; no needless recompiles."""

import json
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

import hyperjax as hj
from hyperjax.train import as_key, member_keys

# Tiny budgets: 4 envs x 8 steps, 2 epochs x 2 minibatches.
AGENT = hj.PPO(env="CartPole-v1", num_envs=4, num_steps=8, num_epochs=2, num_minibatches=2, hidden=(16, 16))
STEPS = AGENT.steps_per_update * 6


def _hp(k):
    return AGENT.hparams(learning_rate=np.geomspace(1e-3, 3e-2, k), gamma=np.linspace(0.9, 0.99, k))


def test_vmap_equals_one_by_one():
    k = 3
    pop = hj.train(AGENT, _hp(k), total_timesteps=STEPS, num_seeds=2, seed=7, eval_episodes=4)
    hp = _hp(k)
    for i in range(k):
        one = jax.tree.map(lambda x: x[i : i + 1], hp)
        alone = hj.train(AGENT, one, total_timesteps=STEPS, num_seeds=2, seed=7, eval_episodes=4)
        np.testing.assert_allclose(alone.curves[0], pop.curves[i], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(alone.eval_returns[0], pop.eval_returns[i], rtol=1e-5)
        a = jax.tree.leaves(alone.member_state(0, 1).params)
        b = jax.tree.leaves(pop.member_state(i, 1).params)
        for x, y in zip(a, b):
            np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-5)


def test_member_is_bit_identical_in_any_position_at_the_same_shape():
    """What is exact: with the same device count and population shape, a member's whole
    training (300 updates, every parameter, every curve point) does not depend on its position
    or on the other members' hyperparameters. (Across population sizes or device counts XLA
    batches differently; results agree to float rounding at first and then diverge chaotically,
    as RL training amplifies 1e-7 differences: only this stronger claim is made.)"""
    k, steps = 4, AGENT.steps_per_update * 300
    hp = _hp(k)
    perm = np.array([2, 0, 3, 1])
    a = hj.train(AGENT, hp, total_timesteps=steps, seed=4, eval_episodes=2)
    b = hj.train(AGENT, jax.tree.map(lambda x: x[perm], hp), total_timesteps=steps, seed=4, eval_episodes=2)
    np.testing.assert_array_equal(a.curves[perm], b.curves)
    np.testing.assert_array_equal(a.eval_returns[perm], b.eval_returns)
    for j, i in enumerate(perm):
        for x, y in zip(jax.tree.leaves(a.member_state(int(i)).params), jax.tree.leaves(b.member_state(j).params)):
            np.testing.assert_array_equal(x, y)
    assert len(np.unique(a.eval_returns)) > 1  # the members did differ


def test_unvectorised_agent_matches_population():
    """The population runner equals calling agent.update by hand on one member, unbatched."""
    hp = _hp(2)
    keys, _ = member_keys(as_key(3), 2, 1)
    runner = hj.get_runner(AGENT)
    state = runner.init(keys, hp)
    state, metrics = runner.advance(state, hp, 3)
    h1 = jax.tree.map(lambda x: x[1], hp)
    s1 = jax.jit(AGENT.init)(keys[1], h1)
    step = jax.jit(AGENT.update)
    for _ in range(3):
        s1, m1 = step(s1, h1)
    for x, y in zip(jax.tree.leaves(s1.params), jax.tree.leaves(jax.tree.map(lambda x: x[1], state.params))):
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-5)
    assert float(m1.return_sum) == pytest.approx(float(metrics.return_sum[1, -1]), rel=1e-5)


def test_no_recompile_when_values_change():
    runner = hj.get_runner(AGENT)
    hj.train(AGENT, _hp(4), total_timesteps=STEPS, seed=0, eval_episodes=2)
    before = runner.trace_count
    hp2 = AGENT.hparams(learning_rate=np.geomspace(1e-4, 1e-2, 4), clip_eps=[0.1, 0.2, 0.3, 0.25], ent_coef=0.0)
    hj.train(AGENT, hp2, total_timesteps=STEPS, seed=123, eval_episodes=2)
    assert runner.trace_count == before


def test_uneven_population_is_padded():
    """3 members on 2 devices are padded to 4 with a copy of the last; the padding neither shows
    in the results nor changes them: they equal, bit for bit, those of a population whose 4th
    member is a real, different configuration (the same padded shape)."""
    r = hj.train(AGENT, _hp(3), total_timesteps=STEPS, seed=1, eval_episodes=2)
    assert r.curves.shape == (3, 1, 6) and r.eval_returns.shape == (3, 1)
    assert np.all(np.isfinite(r.eval_returns))
    hp4 = AGENT.hparams(learning_rate=np.append(np.geomspace(1e-3, 3e-2, 3), 5e-4),
                        gamma=np.append(np.linspace(0.9, 0.99, 3), 0.95))
    full = hj.train(AGENT, hp4, total_timesteps=STEPS, seed=1, eval_episodes=2)
    np.testing.assert_array_equal(full.curves[:3], r.curves)
    np.testing.assert_array_equal(full.eval_returns[:3], r.eval_returns)
    for i in range(3):
        for x, y in zip(jax.tree.leaves(full.member_state(i).params), jax.tree.leaves(r.member_state(i).params)):
            np.testing.assert_array_equal(x, y)


def test_diverging_member_is_flagged_and_frozen():
    hp = AGENT.hparams(learning_rate=[3e-3, 1e30, 3e-3])
    r = hj.train(AGENT, hp, total_timesteps=STEPS, seed=2, eval_episodes=2)
    assert r.failed[:, 0].tolist() == [False, True, False]
    assert np.isnan(r.eval_returns[1, 0]) and np.all(np.isfinite(r.eval_returns[[0, 2], 0]))
    assert r.score[1] == -np.inf and int(np.argmax(r.score)) != 1
    for leaf in jax.tree.leaves(r.member_state(1).params):
        assert np.all(np.isfinite(leaf))  # frozen at its last finite state
    # The healthy members are exactly what they would be without the bad one.
    ok = hj.train(AGENT, jax.tree.map(lambda x: x[::2], hp), total_timesteps=STEPS, seed=2, eval_episodes=2)
    np.testing.assert_allclose(ok.curves[:, 0], r.curves[[0, 2], 0], rtol=1e-5)


def test_same_seed_same_result():
    a = hj.train(AGENT, _hp(2), total_timesteps=STEPS, seed=11, eval_episodes=3)
    b = hj.train(AGENT, _hp(2), total_timesteps=STEPS, seed=11, eval_episodes=3)
    c = hj.train(AGENT, _hp(2), total_timesteps=STEPS, seed=12, eval_episodes=3)
    np.testing.assert_array_equal(a.curves, b.curves)
    np.testing.assert_array_equal(a.eval_returns, b.eval_returns)
    assert not np.array_equal(np.nan_to_num(a.curves), np.nan_to_num(c.curves))


_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import hyperjax as hj, jax
    agent = hj.PPO(env="CartPole-v1", num_envs=4, num_steps=8, num_epochs=2, num_minibatches=2, hidden=(16, 16))
    hp = agent.hparams(learning_rate=np.geomspace(1e-3, 3e-2, 5))
    r = hj.train(agent, hp, total_timesteps=agent.steps_per_update * 4, num_seeds=2, seed=5, eval_episodes=4)
    p = jax.tree.leaves(r.state.params)[0]
    print(json.dumps({"devices": jax.device_count(), "curves": np.nan_to_num(r.curves).tolist(),
                      "eval": r.eval_returns.tolist(), "param": np.asarray(p).tolist()}))
    """
)


def _run(devices):
    env = {**os.environ, "HYPERJAX_HOST_DEVICES": str(devices), "JAX_PLATFORMS": "cpu"}
    env.pop("XLA_FLAGS", None)
    out = subprocess.run([sys.executable, "-c", _SCRIPT], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_sharded_equals_single_device():
    one, four = _run(1), _run(4)
    assert one["devices"] == 1 and four["devices"] == 4
    np.testing.assert_allclose(four["curves"], one["curves"], rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(four["eval"], one["eval"], rtol=1e-5)
    np.testing.assert_allclose(four["param"], one["param"], rtol=1e-4, atol=1e-5)


def test_progress_fn_called_per_chunk():
    seen = []
    hj.train(AGENT, _hp(2), total_timesteps=STEPS, seed=0, eval_episodes=2, chunk_updates=2,
             progress_fn=lambda step, m: seen.append((step, m["train/episode_return"].shape)))
    assert [s for s, _ in seen] == [64, 128, 192] and seen[0][1] == (2, 1)


def test_refill_and_copy_from():
    runner = hj.get_runner(AGENT)
    hp = _hp(4)
    keys, _ = member_keys(as_key(9), 4, 1)
    state = runner.init(keys, hp)
    state, _ = runner.advance(state, hp, 2)
    new_keys, _ = member_keys(as_key(10), 4, 1)
    mask = np.array([False, True, False, True])
    before = runner.trace_count
    refilled = runner.refill(state, mask, new_keys, hp)
    fresh = runner.init(new_keys, hp)
    for a, b, f in zip(jax.tree.leaves(state), jax.tree.leaves(refilled), jax.tree.leaves(fresh)):
        a, b, f = (np.asarray(jax.random.key_data(x)) if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key) else np.asarray(x) for x in (a, b, f))
        np.testing.assert_array_equal(b[mask], f[mask])
        np.testing.assert_array_equal(b[~mask], a[~mask])
    runner.refill(refilled, ~mask, keys, hp)
    assert runner.trace_count == before + 1  # one trace, then reused
    copied = runner.copy_from(state, np.array([2, 2, 0, 3]))
    for a, c in zip(jax.tree.leaves(state.params), jax.tree.leaves(copied.params)):
        np.testing.assert_array_equal(np.asarray(c), np.asarray(a)[[2, 2, 0, 3]])


def test_take_and_put_round_trip():
    """A paused trial's members (take) come back bit for bit when it resumes (put), into any slot."""
    runner = hj.get_runner(AGENT)
    hp = _hp(4)
    keys, _ = member_keys(as_key(5), 4, 1)
    state, _ = runner.advance(runner.init(keys, hp), hp, 2)
    saved = runner.take(state, np.array([1, 3]))
    other, _ = runner.advance(state, hp, 1)  # the population moves on meanwhile
    back = runner.put(other, np.array([2, 0]), saved)

    def host(x):
        return np.asarray(jax.random.key_data(x)) if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key) else np.asarray(x)

    for s, o, b in zip(jax.tree.leaves(state), jax.tree.leaves(other), jax.tree.leaves(back)):
        s, o, b = host(s), host(o), host(b)
        np.testing.assert_array_equal(b[[2, 0]], s[[1, 3]])
        np.testing.assert_array_equal(b[[1, 3]], o[[1, 3]])
