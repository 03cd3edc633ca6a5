"""Truncation bootstraps from the state reached; termination does not."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hyperjax as hj
from hyperjax.agents.common import gae
from tests.toy_envs import register_toys

GAMMA = 0.9


def test_gae_bootstraps_only_where_not_terminal():
    r = jnp.ones((3, 1))
    v = jnp.zeros((3, 1))
    dones = jnp.array([[0.0], [0.0], [1.0]])
    # V of each reached state: 0 inside the window (= v), 10 for the state the cut reached.
    trunc_next = jnp.array([[0.0], [0.0], [10.0]])  # truncated: V(final_obs) kept
    term_next = jnp.zeros((3, 1))  # terminated: nothing after the last step
    _, ret_trunc = gae(r, v, trunc_next, dones, GAMMA, 1.0)
    _, ret_term = gae(r, v, term_next, dones, GAMMA, 1.0)
    assert float(ret_term[2, 0]) == pytest.approx(1.0)
    assert float(ret_trunc[2, 0]) == pytest.approx(1.0 + GAMMA * 10.0)
    assert float(ret_term[0, 0]) == pytest.approx(1 + GAMMA + GAMMA**2)
    assert float(ret_trunc[0, 0]) == pytest.approx(1 + GAMMA + GAMMA**2 * (1 + GAMMA * 10.0))


def test_gymnax_separates_truncation():
    env = hj.make_env("CartPole-v1")
    assert env.max_episode_steps == 500
    key = jax.random.key(0)
    obs, state = env.reset(key)
    state = state.replace(time=499)  # one step before the time limit, far from failure
    tr = env.step(key, state, jnp.int32(0))
    assert bool(tr.truncated) and not bool(tr.terminated)
    assert not np.allclose(tr.final_obs, tr.obs)  # obs is the reset one, final_obs is not
    state = state.replace(time=3, theta=jnp.float32(0.5))  # past the angle threshold
    tr = env.step(key, state, jnp.int32(0))
    assert bool(tr.terminated) and not bool(tr.truncated)


@pytest.mark.parametrize("env, expected", [("test/const-trunc", 1 / (1 - GAMMA)), ("test/const-term", None)])
def test_critic_learns_known_value(env, expected):
    """Reward 1 forever, cut every 5 steps. With bootstrapping the critic must find
    1/(1-gamma) = 10; if the cut is a true termination it must find the episode average
    mean_t (1 - gamma^(5-t)) / (1 - gamma) = 2.63."""
    register_toys()
    if expected is None:
        expected = np.mean([(1 - GAMMA ** (5 - t)) / (1 - GAMMA) for t in range(5)])
    agent = hj.A2C(env=env, num_envs=8, t_max=5, hidden=(8,), optimizer="adam")
    hp = agent.hparams(learning_rate=0.05, gamma=GAMMA, vf_coef=1.0, ent_coef=0.0)
    r = hj.train(agent, hp, total_timesteps=agent.steps_per_update * 300, seed=0, eval_episodes=1)
    value = agent.critic.apply(r.member_state(0).params["critic"], jnp.ones((1,)))
    assert float(value) == pytest.approx(expected, rel=0.05)
