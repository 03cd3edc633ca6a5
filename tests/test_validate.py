"""Host-side validation: each bad input raises ValueError naming the argument and its value,
before anything is traced or compiled."""

import contextlib
import dataclasses
import re

import jax
import numpy as np
import pytest

import hyperjax as hj
from hyperjax import rng, validate
from hyperjax.schedulers import HyperTrick, Median, PBT
from hyperjax.space import Choice, Float, Int, SearchSpace
from tests.compile_events import nothing_compiled


# An environment is built once per process (make_env caches it), and building a gymnax one runs a
# few eager JAX ops; build the default one here so that the checks below see what validation
# itself does (tests/test_validation.py::test_static_settings_are_checked_before_the_environment_is_built
# is the check of the order).
hj.make_env("CartPole-v1")


def raises(pattern_text: str):
    """``pytest.raises(ValueError)`` matching ``pattern_text`` literally, around a block that
    must trace and compile nothing (:func:`no_compiles`): every bad input below fails on the
    host, before any JAX program exists."""
    stack = contextlib.ExitStack()
    stack.enter_context(nothing_compiled())
    stack.enter_context(pytest.raises(ValueError, match=re.escape(pattern_text)))
    return stack


def test_no_compiles_sees_a_cached_compile():
    """The check itself: a jitted call in the block is reported even if it was compiled before."""
    inc = jax.jit(lambda x: x + 1)
    inc(np.float32(1))
    with pytest.raises(AssertionError, match="traced or compiled before the error"):
        with nothing_compiled():
            inc(np.float32(1))


@pytest.fixture(scope="module")
def agent():
    return hj.PPO(num_envs=4, num_steps=8, num_minibatches=2)


# -- 1. validate ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(value=0, low=1), "train: chunk_updates=0 must be an integer >= 1"),
        (dict(value=11, low=1, high=10), "train: chunk_updates=11 must be an integer >= 1 and <= 10"),
        (dict(value=6, high=5), "train: chunk_updates=6 must be an integer <= 5"),
        (dict(value=2.0), "train: chunk_updates=2.0 must be an integer"),
        (dict(value=True, low=0), "train: chunk_updates=True must be an integer >= 0"),
        (dict(value="3", low=1), "train: chunk_updates='3' must be an integer >= 1"),
        (dict(value=np.float64(3.0), low=1), f"train: chunk_updates={np.float64(3.0)!r} must be an integer >= 1"),
    ],
)
def test_integer_rejects(kwargs, message):
    with raises(message):
        validate.integer("train", "chunk_updates", **kwargs)


def test_integer_accepts_numpy_ints():
    out = validate.integer("train", "n", np.int32(3), 1, 3)
    assert out == 3 and type(out) is int


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(value=-1, low=0, low_open=True), "tune: max_seconds=-1 must be a number > 0"),
        (dict(value=1, low=0, high=1, low_open=True, high_open=True), "tune: max_seconds=1 must be a number > 0 and < 1"),  # noqa: E501
        (dict(value=float("nan")), "tune: max_seconds=nan must be a number"),
        (dict(value=float("inf"), low=0), "tune: max_seconds=inf must be a number >= 0"),
        (dict(value=True, low=0), "tune: max_seconds=True must be a number >= 0"),
        (dict(value="1", low=0), "tune: max_seconds='1' must be a number >= 0"),
        (dict(value=5, high=4), "tune: max_seconds=5 must be a number <= 4"),
    ],
)
def test_number_rejects(kwargs, message):
    with raises(message):
        validate.number("tune", "max_seconds", **kwargs)


def test_number_accepts_ints_and_numpy():
    assert validate.number("tune", "x", 2, 0) == 2.0 and type(validate.number("tune", "x", 2)) is float
    assert validate.number("tune", "x", np.float32(0.5), 0, 1, True, True) == 0.5


@pytest.mark.parametrize("value", ["no", 1, 0, None, "True"])
def test_boolean_rejects(value):
    with raises(f"PPO: normalize_obs={value!r} must be True or False"):
        validate.boolean("PPO", "normalize_obs", value)


def test_boolean_accepts_numpy_bool():
    assert validate.boolean("PPO", "normalize_obs", np.bool_(True)) is True
    assert validate.boolean("PPO", "normalize_obs", False) is False


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: HyperTrick(r=1.5), "scheduler hypertrick: r=1.5 must be a number > 0 and < 1"),
        (lambda: HyperTrick(r="0.2"), "scheduler hypertrick: r='0.2' must be a number > 0 and < 1"),
        (lambda: Median(min_recorded=2.5), "scheduler median: min_recorded=2.5 must be an integer >= 0"),
        (lambda: Median(min_recorded=True), "scheduler median: min_recorded=True must be an integer >= 0"),
        (lambda: PBT(interval=0), "scheduler pbt: interval=0 must be an integer >= 1"),
        (lambda: PBT(perturb=(0.8, True)), "scheduler pbt: perturb[1]=True must be a number > 0"),
        (lambda: PBT(perturb=(0.8, 1.2, 1.5)), "scheduler pbt: perturb=(0.8, 1.2, 1.5) must be two positive factors"),
        (lambda: PBT(perturb=0.8), "scheduler pbt: perturb=0.8 must be two positive factors"),
    ],
)
def test_scheduler_specs(make, message):
    with raises(message):
        make()


# -- 2. rng --------------------------------------------------------------------------------------
def _data(key):
    return np.asarray(jax.random.key_data(key))


def test_as_key_accepts_seeds_and_keys():
    assert np.array_equal(_data(rng.as_key(3)), _data(jax.random.key(3)))
    assert np.array_equal(_data(rng.as_key(np.int64(3))), _data(jax.random.key(3)))
    typed = jax.random.key(7)
    assert rng.as_key(typed) is typed
    assert np.array_equal(_data(rng.as_key(jax.random.PRNGKey(7))), _data(typed))
    from hyperjax.train import as_key  # re-exported for callers that import it from there

    assert as_key is rng.as_key


@pytest.mark.parametrize("seed", ["0", 1.5, True, -1, None, np.zeros(2, np.int32)])
def test_as_key_rejects(seed):
    with raises(f"train: seed={seed!r} must be an integer >= 0 or a JAX PRNG key"):
        rng.as_key(seed, "train: seed")


def test_as_key_rejects_a_batch_of_keys():
    keys = jax.random.split(jax.random.key(0), 2)
    pattern = r"(?s)^seed=Array.* must be an integer >= 0 or a JAX PRNG key$"
    with nothing_compiled(), pytest.raises(ValueError, match=pattern):
        rng.as_key(keys)


def test_seed_int_and_numpy_rng_are_deterministic():
    key = jax.random.key(5)
    s = rng.seed_int(key)
    assert type(s) is int and 0 <= s < 2**31 - 1 and s == rng.seed_int(jax.random.key(5))
    # the expression the study has always used, so that existing studies draw the same numbers
    expected = np.random.default_rng(np.asarray(jax.random.key_data(key)).astype(np.uint64))
    assert np.array_equal(rng.numpy_rng(key).random(4), expected.random(4))


def test_key_and_generator_state_roundtrip():
    import json

    keys = jax.random.split(jax.random.key(1), 3)
    assert np.array_equal(_data(rng.load_key(json.loads(json.dumps(rng.key_state(keys))))), _data(keys))
    gen = np.random.default_rng(4)
    gen.random(3)
    state = json.loads(json.dumps(rng.generator_state(gen)))
    assert np.array_equal(rng.load_generator(state).random(5), gen.random(5))


@pytest.mark.parametrize("seed", ["0", 1.5])
def test_train_rejects_bad_seed(agent, seed):
    with raises(f"train: seed={seed!r} must be an integer >= 0 or a JAX PRNG key"):
        hj.train(agent, total_timesteps=64, seed=seed)


# -- 3. train: hyperparameter list lengths, chunk_updates ---------------------------------------
def test_hparams_lists_of_different_lengths(agent):
    values = dict(learning_rate=[1e-4, 3e-4], clip_eps=[0.1, 0.2, 0.3])
    message = "learning_rate has 2 values, clip_eps has 3 values"
    with raises(message):
        agent.hparams(**values)
    with raises(message):
        hj.train(agent, values, total_timesteps=64)


def test_train_struct_with_scalars_broadcasts_like_a_dict(agent):
    # A hand-built struct is validated and broadcast by name, as a dict is.
    with raises("ppo: hyperparameter gamma=1.5 is invalid"):
        hj.train(agent, agent.HParams(learning_rate=np.asarray([1e-3, 3e-4]), gamma=1.5), total_timesteps=64)


@pytest.mark.parametrize("chunk", [0, -3, 2.0, True])
def test_train_rejects_bad_chunk_updates(agent, chunk):
    with raises(f"train: chunk_updates={chunk!r} must be an integer >= 1"):
        hj.train(agent, total_timesteps=64, chunk_updates=chunk)


def test_train_rejects_bad_hparams_type(agent):
    with raises("train: hparams=[0.001] must be None, a dict of values or a PPOHParams"):
        hj.train(agent, [1e-3], total_timesteps=64)


# -- 4. static agent settings ---------------------------------------------------------------------
@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: hj.PPO(normalize_obs="no"), "ppo: normalize_obs='no' must be True or False"),
        (lambda: hj.A2C(normalize_obs=1), "a2c: normalize_obs=1 must be True or False"),
        (lambda: hj.PPO(num_epochs=True), "ppo: num_epochs=True must be an integer >= 1"),
        (lambda: hj.PPO(num_minibatches=2.0), "ppo: num_minibatches=2.0 must be an integer >= 1"),
        (lambda: hj.A2C(t_max="5"), "a2c: t_max='5' must be an integer >= 1"),
        (lambda: hj.PPO(num_envs=-2), "ppo: num_envs=-2 must be an integer >= 1"),
        (lambda: hj.PPO(hidden=(True, 4)), "ppo: hidden=(True, 4) must be a non-empty tuple of positive ints"),
        (lambda: hj.PPO(hidden=64), "ppo: hidden=64 must be a non-empty tuple of positive ints"),
        (lambda: hj.PPO(activation=["tanh"]), "ppo: activation=['tanh'] is unknown"),
        (lambda: hj.A2C(optimizer=None), "a2c: optimizer=None is unknown"),
    ],
)
def test_static_settings_typed(agent, make, message):
    with raises(message):
        make()


def test_static_settings_normalised_to_python_types():
    a = hj.PPO(num_envs=np.int64(8), hidden=[np.int64(32), 32], normalize_obs=np.bool_(True))
    assert type(a.num_envs) is int and a.hidden == (32, 32) and type(a.hidden[0]) is int
    assert a.normalize_obs is True
    assert a == hj.PPO(num_envs=8, hidden=(32, 32), normalize_obs=True)


# -- 5. search space: Choice -----------------------------------------------------------------------
def test_choice_of_a_string():
    with raises(
        "search space: activation choices='relu' must be a sequence of values (a tuple or list), not a string"
    ):
        SearchSpace({"activation": Choice("relu")})
    with raises("search space: activation choices=3 must be a sequence of values (a tuple or list)"):
        SearchSpace({"activation": Choice(3)})


def test_space_flags_are_bools():
    with raises("search space: lr.log='yes' must be True or False"):
        SearchSpace({"lr": Float(1e-4, 1e-2, log="yes")})
    with raises("search space: t.log=1 must be True or False"):
        SearchSpace({"t": Int(2, 8, log=1)})
    with raises("search space: g.ordered='yes' must be True or False"):
        SearchSpace({"g": Choice((0.9, 0.99), ordered="yes")})


def test_tuple_valued_choice_roundtrip(agent):
    space = SearchSpace(
        {"hidden": Choice(((32, 32), (64, 64))), "learning_rate": Float(1e-4, 1e-2, log=True)}
    )
    u = np.asarray([[0.1, 0.5], [0.9, 0.5], [0.6, 0.0]])
    dec = space.decode(u)
    assert dec["hidden"].shape == (3,) and list(dec["hidden"]) == [(32, 32), (64, 64), (64, 64)]
    configs = space.configs(u)
    assert [c["hidden"] for c in configs] == [(32, 32), (64, 64), (64, 64)]
    assert all(type(c["hidden"]) is tuple and type(c["hidden"][0]) is int for c in configs)
    assert len({c["hidden"] for c in configs}) == 2  # hashable: they can name a structural bucket
    # encode takes decoded columns, config lists and single-config columns alike
    centres = np.asarray([0.25, 0.75, 0.75])
    np.testing.assert_allclose(space.encode(dec)[:, 0], centres)
    np.testing.assert_allclose(space.encode(configs)[:, 0], centres)
    np.testing.assert_allclose(space.encode({k: [v] for k, v in configs[0].items()})[0], [0.25, 0.5])
    np.testing.assert_allclose(space.decode(space.encode(configs))["learning_rate"], dec["learning_rate"])
    assert space.dims["hidden"].encode((64, 64)) == 0.75  # one value, not two
    assert Choice((0.9, 0.99)).encode(np.asarray(0.99)) == 0.75
    # a decoded value is a valid static setting
    assert agent.replace(hidden=configs[0]["hidden"]).hidden == (32, 32)


def test_list_valued_choices_become_tuples():
    dim = Choice([[32], [64, 64]])
    assert dim.choices == ((32,), (64, 64))
    assert dim.encode([[64, 64]]).tolist() == [0.75]


# -- 6. static settings passed as hyperparameters -----------------------------------------------------
def test_static_setting_as_hparam(agent):
    with raises(
        "PPO.hparams: num_envs=8 is a static (shape-fixing) setting, not a traced hyperparameter; "
        "set it on the agent (hj.PPO(num_envs=8)) or tune it as a structural dimension of the search space"
    ):
        agent.hparams(num_envs=8)
    with raises("A2C.hparams: optimizer='adam' is a static (compile-time) setting"):
        hj.A2C().hparams(optimizer="adam")
    with raises("A2C.hparams: t_max=[5, 10] is a static (shape-fixing) setting"):
        hj.A2C().hparams(t_max=[5, 10])
    with raises("PPO.hparams: num_steps=16 is a static (shape-fixing) setting"):
        hj.train(agent, {"num_steps": 16}, total_timesteps=64)


def test_dataclass_fields_all_validated():
    # Every static setting has a check: a string where a number or flag belongs is refused.
    for cls in (hj.PPO, hj.A2C):
        for f in dataclasses.fields(cls):
            if f.name == "env":
                continue
            with raises(f"{f.name}="):
                cls(**{f.name: object()})
