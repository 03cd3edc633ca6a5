"""Bad input fails on the host, before tracing, with the field and value named."""

import numpy as np
import pytest

import hyperjax as hj
from hyperjax.space import Choice, Float, Int, SearchSpace


def test_unknown_env_lists_allowed():
    with pytest.raises(ValueError, match=r"'CartPol-v1' is unknown; allowed: CartPole-v1"):
        hj.PPO(env="CartPol-v1")


def test_brax_env_named_in_error():
    with pytest.raises(ValueError, match="brax:nope"):
        hj.make_env("brax:nope")


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        (dict(num_envs=0), r"num_envs=0 must be an integer >= 1"),
        (dict(num_steps=2.5), r"num_steps=2.5 must be an integer"),
        (dict(num_minibatches=3), r"num_minibatches=3 must divide num_envs \* num_steps = 2048"),
        (dict(activation="sigmoidish"), r"activation='sigmoidish' is unknown; allowed: tanh"),
        (dict(hidden=(64, 0)), r"hidden=\(64, 0\)"),
    ],
)
def test_bad_static_settings(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        hj.PPO(env="CartPole-v1", **kwargs)


def test_a2c_optimizer_checked():
    with pytest.raises(ValueError, match=r"optimizer='sgdx' is unknown; allowed: rmsprop, adam"):
        hj.A2C(optimizer="sgdx")


@pytest.mark.parametrize(
    "values, pattern",
    [
        (dict(learning_rate=-1e-3), r"learning_rate=-0.001 is invalid; allowed: finite and > 0"),
        (dict(gamma=[0.99, 1.5]), r"gamma=1.5 is invalid; allowed: finite and in \(0, 1\]"),
        (dict(gae_lambda=float("nan")), r"gae_lambda=nan is invalid"),
        (dict(clip_eps="big"), r"clip_eps='big' is not a number"),
        (dict(learning_rat=1e-3), r"unknown hyperparameter 'learning_rat'; allowed: learning_rate"),
    ],
)
def test_bad_hparams(values, pattern):
    with pytest.raises(ValueError, match=pattern):
        hj.PPO().hparams(**values)


def test_a2c_has_no_clip_eps():
    with pytest.raises(ValueError, match="a2c: unknown hyperparameter 'clip_eps'"):
        hj.A2C().hparams(clip_eps=0.2)


def test_train_rejects_budget_below_one_update():
    agent = hj.PPO(num_envs=4, num_steps=8, num_minibatches=2)
    with pytest.raises(ValueError, match=r"total_timesteps=10 must be an integer >= one update \(num_envs \* num_steps = 32\)"):
        hj.train(agent, total_timesteps=10)
    with pytest.raises(ValueError, match=r"num_seeds=0"):
        hj.train(agent, total_timesteps=64, num_seeds=0)


def test_hparams_broadcast():
    hp = hj.PPO().hparams(learning_rate=[1e-3, 3e-4], gamma=0.9)
    assert hp.learning_rate.shape == (2,) and hp.gamma.shape == (2,) and float(hp.clip_eps[0]) == pytest.approx(0.2)


@pytest.mark.parametrize(
    "dims, pattern",
    [
        ({"learning_rate": Float(1e-2, 1e-5, log=True)}, r"learning_rate has low=0.01 > high=1e-05"),
        ({"learning_rate": Float(0.0, 1e-2, log=True)}, r"learning_rate is log-scaled, so low=0.0 must be > 0"),
        ({"gamma": Choice(())}, r"gamma has empty choices=\(\)"),
        ({"num_steps": Int(2, 100, q=0)}, r"num_steps.q=0 must be >= 1"),
        ({"num_steps": Int(2.5, 100)}, r"num_steps.low=2.5 must be an integer"),
    ],
)
def test_bad_spaces(dims, pattern):
    with pytest.raises(ValueError, match=pattern):
        SearchSpace(dims)


def test_space_unknown_name_for_agent():
    space = SearchSpace({"learning_rate": Float(1e-5, 1e-2, log=True), "clip_eps": Float(0.1, 0.3)})
    space.validate_for(hj.PPO)
    with pytest.raises(ValueError, match=r"'clip_eps' is not a hyperparameter of a2c; allowed: .*t_max"):
        space.validate_for(hj.A2C)


def test_space_roundtrip_and_ranges():
    import jax

    space = SearchSpace(
        {
            "learning_rate": Float(1e-5, 1e-2, log=True),
            "t_max": Int(2, 100, log=True),
            "gamma": Choice((0.9, 0.95, 0.99, 0.995, 0.999, 0.9995, 0.9999), ordered=True),
            "activation": Choice(("tanh", "relu")),
            "clip_eps": Float(0.1, 0.3),
        }
    )
    u = space.sample(jax.random.key(0), 2000)
    cfg = space.decode(u)
    assert cfg["learning_rate"].min() >= 1e-5 and cfg["learning_rate"].max() <= 1e-2
    # log-uniform: about half the mass below the geometric midpoint
    assert abs(np.mean(cfg["learning_rate"] < np.sqrt(1e-5 * 1e-2)) - 0.5) < 0.05
    assert cfg["t_max"].dtype.kind == "i" and cfg["t_max"].min() == 2 and cfg["t_max"].max() == 100
    assert set(cfg["gamma"]) == {0.9, 0.95, 0.99, 0.995, 0.999, 0.9995, 0.9999}
    assert set(cfg["activation"]) == {"tanh", "relu"}
    again = space.decode(space.encode(cfg))
    for name in space.names:
        assert list(again[name]) == pytest.approx(list(cfg[name])) if name != "activation" else list(again[name]) == list(cfg[name])
    assert len(space.configs(u[:3])) == 3


def test_int_quantized():
    dim = Int(2, 100, log=True, q=2)
    v = dim.decode(np.linspace(0, 1, 101))
    assert np.all(v % 2 == 0) and v.min() == 2 and v.max() == 100
    assert np.array_equal(dim.decode(dim.encode(v)), v)


def test_sobol_is_stratified():
    space = SearchSpace({"a": Float(0, 1), "b": Float(0, 1)})
    u = space.sobol(64, seed=1)
    counts = np.histogram(u[:, 0], bins=8, range=(0, 1))[0]
    assert np.all(counts == 8)
