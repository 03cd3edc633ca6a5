"""Bad input fails on the host, before tracing, with the field and value named."""

import contextlib

import jax
import numpy as np
import pytest

import hyperjax as hj
from hyperjax.space import Choice, Float, Int, SearchSpace
from tests.compile_events import nothing_compiled


# An environment is built once per process (make_env caches it), and building a gymnax one runs a
# few eager JAX ops (importing gymnax, its observation-space bounds). Build the default one here,
# so that the checks below see what validation itself does; that building it comes before the
# agent's own checks is test_static_settings_are_checked_before_the_environment_is_built.
hj.make_env("CartPole-v1")


def raises_first(pattern: str):
    """``pytest.raises(ValueError, match=pattern)`` around a block that must trace and compile
    nothing: the error comes from host-side checks, before any JAX program exists."""
    stack = contextlib.ExitStack()
    stack.enter_context(nothing_compiled())
    stack.enter_context(pytest.raises(ValueError, match=pattern))
    return stack


def test_the_compile_check_sees_a_compile():
    """The check itself: a jitted call inside the block is reported, even if an earlier test
    compiled the same program."""
    inc = jax.jit(lambda x: x + 1)
    inc(np.float32(1))  # compiled and cached
    with pytest.raises(AssertionError, match="traced or compiled before the error"):
        with nothing_compiled():
            inc(np.float32(1))


def test_static_settings_are_checked_before_the_environment_is_built():
    from hyperjax.envs import _make_env

    _make_env.cache_clear()  # as in a fresh process: CartPole is built inside the call
    try:
        with raises_first(r"num_envs=0 must be an integer >= 1"):
            hj.PPO(env="CartPole-v1", num_envs=0)
    finally:
        hj.make_env("CartPole-v1")  # cached again (it may have been built inside the call)


def test_unknown_env_lists_allowed():
    with raises_first(r"'CartPol-v1' is unknown; allowed: CartPole-v1"):
        hj.PPO(env="CartPol-v1")


def test_brax_env_named_in_error():
    with raises_first("brax:nope"):
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
    with raises_first(pattern):
        hj.PPO(env="CartPole-v1", **kwargs)


def test_a2c_optimizer_checked():
    with raises_first(r"optimizer='sgdx' is unknown; allowed: rmsprop, adam"):
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
    with raises_first(pattern):
        hj.PPO().hparams(**values)


def test_a2c_has_no_clip_eps():
    with raises_first("a2c: unknown hyperparameter 'clip_eps'"):
        hj.A2C().hparams(clip_eps=0.2)


def test_train_rejects_budget_below_one_update():
    agent = hj.PPO(num_envs=4, num_steps=8, num_minibatches=2)
    with raises_first(r"total_timesteps=10 must be an integer >= one update \(num_envs \* num_steps = 32\)"):
        hj.train(agent, total_timesteps=10)
    with raises_first(r"num_seeds=0"):
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
    with raises_first(pattern):
        SearchSpace(dims)


def test_space_unknown_name_for_agent():
    space = SearchSpace({"learning_rate": Float(1e-5, 1e-2, log=True), "clip_eps": Float(0.1, 0.3)})
    space.validate_for(hj.PPO)
    with raises_first(r"'clip_eps' is not a hyperparameter of a2c; allowed: .*t_max"):
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
