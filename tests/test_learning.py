"""Does the engine learn at all? Seconds-scale learning checks that run in every CI run.

Each test trains a tiny population with ``hj.train`` and compares it with the *same members
untrained*: fresh ``runner.init`` states evaluated on the same evaluation episodes through the
same compiled programs (what the initial random policy gets). The thresholds come from
measurements on a 2-core CPU over seeds 0-7 of each setting; the tests use seed 0 (results are
deterministic for a seed and device count, so a failure means the numbers changed):

- PPO, CartPole-v1, 20,480 env steps per member, 6 seeds: trained median 192-500 (192 at seed 0),
  best member 477-500; untrained median 10-64, the mean training return grew 8.5-16.5x.
  Asserted: median >= 120 and >= untrained median + 100, best >= 300, training return >= 3x.
- A2C, CartPole-v1, 20,480 env steps, 3 x 2 seeds: trained median 250-493 (493 at seed 0), all
  48 members >= 121; untrained median 10-107 (a greedy untrained policy sometimes balances for a
  while: single members reached 500). Asserted: median >= 150 and >= untrained median + 100,
  5 of 6 members >= 100.
- PPO, Pendulum-v1 (continuous actions, ``normalize_obs=True``), 102,400 env steps, 2 seeds:
  untrained -1005 to -1488; the mean greedy return improved by 424-916 (624 at seed 0), the
  training return by 483-804; best member -685 to -217. Asserted: improvement >= 250 (both),
  best member >= -800, untrained < -900.

The minutes-long versions (CartPole solved, brax) are in test_learning_slow.py
(``python -m pytest -m slow``).
"""

import jax
import numpy as np

import hyperjax as hj
from hyperjax.agents.common import RunningStats
from hyperjax.train import member_keys

# The agent of tests/conftest.py's SMALL_STUDY (and of test_study/test_store): with 6 members,
# 4 updates per call and 2 evaluation episodes, its init/advance/evaluate programs are the ones
# the rest of the suite compiles already (JAX's in-process cache is hit).
TINY_PPO = hj.PPO(env="CartPole-v1", num_envs=4, num_steps=16, num_minibatches=1, num_epochs=1, hidden=(16,))


def _untrained(agent, hparams: dict, num_seeds: int, seed: int, eval_episodes: int) -> np.ndarray:
    """Mean greedy return per seed ``(S,)`` of the members ``hj.train(..., seed=seed)`` starts
    from, on the evaluation episodes it ends with (same keys, same compiled programs)."""
    runner = hj.get_runner(agent)  # the Runner hj.train uses
    train_keys, eval_keys = member_keys(jax.random.key(seed), 1, num_seeds)
    hp = jax.tree.map(lambda x: np.repeat(np.atleast_1d(np.asarray(x, np.float32)), num_seeds),
                      agent.hparams(**hparams))
    returns = runner.evaluate(eval_keys, runner.init(train_keys, hp), eval_episodes)
    return np.asarray(jax.device_get(returns))[:num_seeds].mean(axis=1)


def _check_result(res, seeds: int):
    assert res.eval_returns.shape == (1, seeds) and not res.failed.any()
    assert np.isfinite(res.eval_returns).all()
    assert np.isfinite(res.metrics["entropy"]).all()


def test_ppo_learns_cartpole():
    hp = dict(learning_rate=5e-3)
    seeds, steps = 6, 20_480
    res = hj.train(TINY_PPO, hp, total_timesteps=steps, num_seeds=seeds, seed=0, eval_episodes=2, chunk_updates=4)
    _check_result(res, seeds)
    trained = res.eval_returns[0]
    before = _untrained(TINY_PPO, hp, seeds, seed=0, eval_episodes=2)
    assert np.median(before) < 120, before  # the threshold sits above the untrained members
    assert np.median(trained) >= max(120, np.median(before) + 100) and trained.max() >= 300, (trained, before)
    # the training episodes got longer too (CartPole: return = episode length)
    first = np.nanmean(res.curves[0, :, :10])
    assert np.nanmean(res.curves[0, :, -10:]) >= 3 * first, res.curves[0, :, -10:]
    assert res.env_steps[-1] == steps


def test_a2c_learns_cartpole():
    # the t_max=4 bucket of test_study's A2C study (2 members, 4 updates per call, 2 episodes):
    # its programs are compiled once for both; three populations of 2 seeds give 6 members
    agent = hj.A2C(env="CartPole-v1", num_envs=4, hidden=(16,), t_max=4)
    hp = dict(learning_rate=3e-3, ent_coef=0.01)
    trained, before = [], []
    for seed in range(3):
        res = hj.train(agent, hp, total_timesteps=20_480, num_seeds=2, seed=seed, eval_episodes=2, chunk_updates=4)
        _check_result(res, 2)
        trained.extend(res.eval_returns[0])
        before.extend(_untrained(agent, hp, 2, seed=seed, eval_episodes=2))
    assert np.median(before) < 150, before
    assert np.median(trained) >= max(150, np.median(before) + 100), (trained, before)
    assert sum(r >= 100 for r in trained) >= 5, (trained, before)


def test_ppo_improves_on_pendulum_with_normalized_observations():
    agent = hj.PPO(env="Pendulum-v1", num_envs=16, num_steps=64, num_epochs=10, num_minibatches=8,
                   hidden=(32, 32), normalize_obs=True)
    assert not agent.env_obj.discrete
    hp = dict(learning_rate=3e-3, gamma=0.9, ent_coef=0.0)
    seeds, steps = 2, 102_400
    res = hj.train(agent, hp, total_timesteps=steps, num_seeds=seeds, seed=0, eval_episodes=8)
    _check_result(res, seeds)
    trained = res.eval_returns[0]
    before = _untrained(agent, hp, seeds, seed=0, eval_episodes=8)
    assert before.max() < -900, before  # an untrained policy swings nowhere near upright
    assert trained.mean() >= before.mean() + 250 and trained.max() >= -800, (trained, before)
    # the training episodes improved as well (the first ones end at update 4: 200-step episodes)
    curve = res.curves[0]
    assert np.isfinite(curve[:, 3]).all()
    assert curve[:, -5:].mean() >= curve[:, 3:8].mean() + 250, curve[:, [3, -1]]
    # normalize_obs=True really normalised: the running statistics saw every observation
    # (num_envs at reset, then every step's) ...
    stats = res.state.obs_stats
    expected = 1e-4 + agent.num_envs * (1 + steps // agent.num_envs)
    np.testing.assert_allclose(np.asarray(stats.count), expected, rtol=1e-6)
    assert np.asarray(stats.var).shape == (seeds, agent.env_obj.obs_dim)
    assert (np.asarray(stats.var) > 1e-3).all() and (np.asarray(stats.var) != 1.0).all()
    # ... and the policy acts on normalised observations: with the statistics reset to the
    # identity (mean 0, variance 1), the trained policy's actions change
    member = res.member_state(0)
    identity = member.replace(obs_stats=RunningStats.create(agent.env_obj.obs_dim))
    obs = member.obs  # the member's last observations, (num_envs, 3)
    assert np.abs(np.asarray(agent.act_greedy(member, obs)) - np.asarray(agent.act_greedy(identity, obs))).max() > 0.1

