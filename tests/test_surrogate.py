"""The BNN surrogate: fit, uncertainty, heteroscedastic noise, batch proposals, robustness,
importance."""

import dataclasses

import numpy as np
import pytest

import hyperjax as hj
from hyperjax.space import Choice, Float, Int, SearchSpace
from hyperjax.surrogate import BNN, BNNConfig, BNNProposer, features, sobol_indices
from hyperjax.surrogate.proposer import Warp, spread_batch

# Compiling an SVI program (10-20 s on a CPU core) is what these tests cost, not running one
# (1500 steps on 64 rows: under a second). Programs are cached per (settings less the step
# counts, data capacity, feature count), so every fit here keeps the default net, ensemble and
# draws (only step counts differ, and they are traced): FAST, the defaults, the study test's
# surrogate and the extrapolation scheduler's own predictor share one program per capacity and
# feature count. Keep new fits on these settings, capacities (64, 128) and feature counts
# (1, 2, 3, 8). A fit of n > 32 observations also queues the next capacity's program on the
# surrogate's single compile thread (BNN.prepare): fits whose next capacity no test uses skip
# that (_FixedHistoryBNN, also as a proposer's surrogate); proposers are built with
# precompile=False so that their first program compiles in the test's thread beside that
# queue, not behind it; and the test order lets queued programs compile while the next test
# works (the uncertainty test before the warm-start one, the low-fidelity test after the study
# that compiles its programs).
FAST = BNNConfig(svi_steps=1500)


class _FixedHistoryBNN(BNN):
    """A BNN that does not compile the next data capacity's program ahead of need (``prepare``,
    which every fit of more than half its capacity calls): for fits whose history never grows
    and whose next capacity no other test here uses, that compile is pure cost. Fitting is
    :class:`BNN`'s own; the proposer and study tests still compile ahead."""

    def prepare(self, n: int, features: int) -> None:
        pass


def _fit(x, y, seed=0, config=FAST, cls=BNN):
    import jax

    return cls(config).fit(jax.random.key(seed), x, y)


def test_posterior_mean_fits_a_known_function():
    x = np.linspace(0, 1, 60)[:, None]
    y = np.sin(2 * np.pi * x[:, 0]) + 0.05 * np.random.default_rng(0).normal(size=60)
    post = _fit(x, y)  # a BNN: its fit compiles capacity 128 ahead, for the warm-start and noise tests
    grid = np.linspace(0.05, 0.95, 50)[:, None]
    mean, _ = post.predict(grid)
    err = np.abs(mean.mean(0) - np.sin(2 * np.pi * grid[:, 0]))
    assert err.mean() < 0.15, err.mean()


def test_uncertainty_grows_away_from_the_data():
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 0.4, size=(40, 1))
    y = np.cos(3 * x[:, 0]) + 0.05 * rng.normal(size=40)
    # a claim about the default surrogate: fit with the defaults (FAST's program, 3000 steps)
    points = np.array([[0.2], [1.0]])  # in the data, far from it
    mean, _ = _fit(x, y, config=BNNConfig(), cls=_FixedHistoryBNN).predict(points)
    std = mean.std(0)
    # one mean-field fit is overconfident away from the data; the ensemble with random prior
    # functions is what makes the far-out spread several times the in-data one
    assert std[1] > 2.5 * std[0], std
    mean, _ = _fit(x, y, config=BNNConfig(prior_functions=0.0), cls=_FixedHistoryBNN).predict(points)
    assert mean.std(0)[1] / mean.std(0)[0] < std[1] / std[0]


def test_warm_start_continues_the_last_fit():
    """A refit starts from the last guide parameters: one warm step keeps the fit, where one
    step from a fresh initialisation fits nothing."""
    import jax

    x = np.linspace(0, 1, 60)[:, None]
    y = np.sin(2 * np.pi * x[:, 0])
    grid = np.linspace(0.05, 0.95, 50)[:, None]
    truth = np.sin(2 * np.pi * grid[:, 0])
    bnn = _FixedHistoryBNN(dataclasses.replace(FAST, svi_warm_steps=1))  # its 100 points stop at capacity 128
    bnn.fit(jax.random.key(0), x, y)
    warm, _ = bnn.fit(jax.random.key(1), x, y).predict(grid)
    cold, _ = _fit(x, y, seed=1, config=dataclasses.replace(FAST, svi_steps=1)).predict(grid)
    assert np.abs(warm.mean(0) - truth).mean() < 0.15
    assert np.abs(cold.mean(0) - truth).mean() > 0.4
    # warm_start=False refits from a fresh start: the same single step fits nothing
    no_warm = BNN(dataclasses.replace(FAST, svi_steps=1, warm_start=False))
    no_warm._params, no_warm._anchors, no_warm._features = bnn._params, bnn._anchors, bnn._features  # had fit before
    refit, _ = no_warm.fit(jax.random.key(1), x, y).predict(grid)
    assert np.abs(refit.mean(0) - truth).mean() > 0.4
    # the warm start also carries over to a larger data capacity (more observations)
    x2 = np.linspace(0, 1, 100)[:, None]
    warm2, _ = bnn.fit(jax.random.key(2), x2, np.sin(2 * np.pi * x2[:, 0])).predict(grid)
    assert np.abs(warm2.mean(0) - truth).mean() < 0.15


def test_recommend_prefers_the_posterior_mean_to_a_lucky_draw():
    """A noisy region produces the single best observation; the surrogate's pick must come
    from the reliably good region instead."""
    rng = np.random.default_rng(5)
    space = SearchSpace({"a": Float(0, 1)})
    prop = BNNProposer(space, seed=5, config=FAST, precompile=False)
    prop.bnn = _FixedHistoryBNN(FAST)  # 80 observations, told at once: capacity 128 is their last
    u = rng.uniform(size=(80, 1))
    good = np.exp(-(((u[:, 0] - 0.3) / 0.1) ** 2))  # peak 1 at 0.3, noise-free
    noisy = np.where(u[:, 0] > 0.7, rng.normal(scale=0.4, size=80), 0.0)
    y = good + noisy
    y[np.argmax(u[:, 0])] = 3.0  # one lucky draw in the noisy region
    prop.tell(u, y, np.ones(80))
    assert u[np.argmax(y), 0] > 0.7
    rec = prop.recommend()
    assert rec.shape == (1,) and abs(rec[0] - 0.3) < 0.1, rec


def test_heteroscedastic_noise_is_recovered():
    rng = np.random.default_rng(2)
    # 128 observations: the data capacity (and compiled program) of the warm-start test's refit
    x = rng.uniform(0, 1, size=(128, 1))
    noise = np.where(x[:, 0] < 0.5, 0.05, 0.5)
    y = x[:, 0] + noise * rng.normal(size=128)
    post = _fit(x, y, cls=_FixedHistoryBNN)
    _, scale = post.predict(np.array([[0.25], [0.75]]))  # Student-t scales, ~0.78 x the std
    s = scale.mean(0)
    assert s[1] > 3 * s[0], s
    assert 0.02 < s[0] < 0.15 and 0.3 < s[1] < 0.8, s


SPACE = SearchSpace({"a": Float(0, 1), "b": Float(1e-3, 1, log=True), "c": Choice(("x", "y", "z")),
                     "d": Int(1, 8), "e": Choice((0.9, 0.99, 0.999), ordered=True)})


def _objective(u):
    return -np.sum((u - 0.3) ** 2, axis=1)


@pytest.mark.parametrize("acquisition", ["thompson", "qei"])
def test_batches_are_distinct_valid_and_new(acquisition):
    prop = BNNProposer(SPACE, seed=0, acquisition=acquisition, config=FAST, precompile=False)
    for _ in range(3):
        u = prop.ask(8)
        prop.tell(u, _objective(u), np.full(8, 1e5))
    assert prop.counts == {"surrogate": 8, "fallback": 16}  # 12 scores needed: the third ask had 16
    u = prop.ask(16)
    assert prop.posterior is not None  # the surrogate, not the Sobol fallback, proposed these
    assert prop.counts == {"surrogate": 24, "fallback": 16}
    assert u.shape == (16, SPACE.ndim) and np.all((u >= 0) & (u <= 1))
    rms = np.sqrt(((u[:, None] - u[None]) ** 2).mean(-1))[np.triu_indices(16, 1)]
    assert rms.min() >= prop.min_distance  # the batch is spread out
    keys = {tuple(sorted(c.items(), key=str)) for c in SPACE.configs(u)}
    assert len(keys) == 16
    told = {tuple(sorted(c.items(), key=str)) for c in SPACE.configs(np.asarray(prop.history_u))}
    assert not keys & told
    for cfg in SPACE.configs(u):
        assert cfg["c"] in ("x", "y", "z") and cfg["e"] in (0.9, 0.99, 0.999) and 1 <= cfg["d"] <= 8


def test_spread_batch_keeps_picks_apart():
    """A batch rated by one sharp optimum: without a minimum distance every pick crowds into
    the optimum's ball (the collapse seen in Thompson batches); with one, one pick lands there
    and the others keep their distance; an impossible distance is halved until the batch fills."""
    rng = np.random.default_rng(0)
    centre = np.full(4, 0.5)
    pool = np.concatenate([centre + rng.uniform(-0.005, 0.005, (100, 4)), rng.uniform(0, 1, (200, 4))])
    score = -np.abs(pool - centre).sum(1)

    def rms(picks):
        u = pool[picks]
        return np.sqrt(((u[:, None] - u[None]) ** 2).mean(-1))[np.triu_indices(len(u), 1)]

    crowded = spread_batch(lambda j, picks: score, pool, 8, 0.0)
    assert all(i < 100 for i in crowded) and len(set(crowded)) == 8
    spread = spread_batch(lambda j, picks: score, pool, 8, 0.1)
    assert sum(i < 100 for i in spread) == 1 and spread[0] == crowded[0] and rms(spread).min() >= 0.1
    full = spread_batch(lambda j, picks: score, pool, 300, 1.0)
    assert sorted(full) == list(range(300))


def test_fits_beside_training_give_the_same_proposals_whatever_their_timing():
    """In a study the fits run on a worker (``refit_async`` once per tick) and an ask uses the
    fit started one tick before the newest: the proposals do not depend on when fits finish (a
    fit slowed by 0.5 s proposes the same), and a proposer saved while its fits run resumes to
    the same proposals (the unfinished fits restart from the saved warm-start state)."""
    import time

    def slowed(prop):
        fit_on = prop._fit_on
        prop._fit_on = lambda key, told: (time.sleep(0.5), fit_on(key, told))[1]
        return prop

    def run(slow: bool, save_at: int | None = None):
        new = lambda: BNNProposer(SPACE, seed=0, config=FAST, precompile=False, min_observations=8)  # noqa: E731
        prop = slowed(new()) if slow else new()
        out = []
        for tick in range(5):
            u = prop.ask(4)
            out.append(u)
            prop.tell(u, _objective(u), np.full(4, 1e5))
            prop.refit_async()
            if tick == save_at:
                state = prop.state_dict()  # the fit just started is still running
                assert state["unfinished"]
                prop = slowed(new()) if slow else new()
                prop.load_state_dict(state)
        return np.concatenate(out), prop

    fast, prop = run(False)
    # tick 2 waited for the newest fit (the one before saw too few scores); ticks 3, 4 the lagged ones
    assert prop.counts == {"surrogate": 12, "fallback": 8}
    slow, _ = run(True)
    resumed, _ = run(True, save_at=2)
    np.testing.assert_array_equal(fast, slow)
    np.testing.assert_array_equal(fast, resumed)


def test_robust_to_what_studies_produce():
    prop = BNNProposer(SPACE, seed=1, config=FAST, precompile=False)
    assert prop.ask(4).shape == (4, 5)  # nothing told: Sobol fallback
    u = prop.ask(16)
    scores = np.full(16, 3.0)  # a constant objective
    scores[:3] = [np.nan, -np.inf, np.inf]  # failed trials
    prop.tell(u, scores, np.full(16, 1e5))
    prop.tell(u[:4], np.full(4, 3.0), np.full(4, 1e5))  # duplicate observations
    prop.tell(u[4:5], np.array([1e6]), np.array([1e5]))  # an outlier
    v = prop.ask(8)
    assert np.all(np.isfinite(v)) and prop.posterior is not None
    mean, std, noise = prop.predict(v)
    assert np.all(np.isfinite(mean)) and np.all(np.isfinite(std)) and np.all(np.isfinite(noise))


def test_warp_is_monotone_and_inverts():
    rng = np.random.default_rng(4)
    for y in (rng.exponential(size=300), -rng.exponential(size=300), 5 + 0.1 * rng.standard_t(2, size=300)):
        w = Warp.fit(y)
        np.testing.assert_allclose(w.inverse(w(y)), y, atol=1e-8 * np.abs(y).max())
        grid = np.linspace(-30, 30, 601)  # far past the data: still finite and ordered
        back = w.inverse(grid)
        assert np.all(np.isfinite(back)) and np.all(np.diff(back) >= 0)
        assert np.all(w.slope(grid[250:350]) > 0)
    assert Warp.fit(np.full(10, 3.0)) == Warp()  # a constant objective: the identity
    from scipy.stats import skew

    y = rng.exponential(size=2000)  # skewness 2
    assert abs(skew(Warp.fit(y)(y))) < 0.2


def test_predictions_come_back_in_score_units():
    """Fit on warped scores of a skewed objective; the proposer's predictions are scores (the
    warp's inverse is applied), as close to the truth as a fit to the raw scores up to 0.15.

    (This test used to also claim the warped fit beats the raw one here. With jax 0.10.2 /
    numpyro 0.22 it does not: relative errors 0.159 warped vs 0.061 raw, identical at the commit
    that introduced the warp; the warp's benefit was measured on Hartmann-6 in
    benchmarks/README.md, not on this 1-d function.)"""
    rng = np.random.default_rng(6)
    space = SearchSpace({"a": Float(0, 1)})
    f = lambda u: 10 + np.exp(4 * u[:, 0])  # noqa: E731
    u = rng.uniform(size=(80, 1))
    grid = np.linspace(0.05, 0.95, 19)[:, None]
    errors = []
    for warp in (True, False):
        prop = BNNProposer(space, seed=6, config=FAST, warp=warp, precompile=False)
        prop.bnn = _FixedHistoryBNN(FAST)  # 80 observations, told at once: capacity 128 is their last
        prop.tell(u, f(u), np.ones(80))
        mean, std, noise = prop.predict(grid)
        assert np.all(std >= 0) and np.all(noise > 0)
        errors.append(np.mean(np.abs(mean - f(grid)) / f(grid)))
        if warp:
            assert prop.warp.lam < 0.9, prop.warp  # the skew was warped away
    assert errors[1] < 0.1, errors  # the raw fit: the surrogate itself fits this function
    # warped: predictions in score units (a fit left on the warped scale would be off by ~100%)
    assert errors[0] < errors[1] + 0.15, errors


def test_features_one_hot_unordered_choices():
    x = features(SPACE, np.array([[0.1, 0.2, 0.5, 0.3, 0.9]]))
    assert x.shape == (1, 1 + 1 + 3 + 1 + 1)
    np.testing.assert_allclose(x[0, 2:5], [0, 1, 0])


def test_sobol_indices_of_known_functions():
    space = SearchSpace({"a": Float(0, 1), "b": Float(0, 1), "c": Float(0, 1)})
    df = sobol_indices(lambda u: u[:, 0] + 0.3 * u[:, 1], space, n=4096)
    main = df[df.kind == "main"].set_index("parameter")
    assert main.loc["a", "first_order"] > 0.85 and main.loc["c", "total"] < 0.02
    df = sobol_indices(lambda u: (u[:, 0] - 0.5) * (u[:, 1] - 0.5), space, n=4096)
    pairs = df[df.kind == "pair"].set_index("parameter")
    assert pairs.loc["a x b", "first_order"] > 0.8


def test_bnn_proposer_drives_a_study():
    agent = hj.PPO(env="CartPole-v1", num_envs=4, num_steps=16, num_minibatches=1, num_epochs=1, hidden=(16,))
    space = SearchSpace({"learning_rate": Float(1e-4, 1e-2, log=True), "gamma": Float(0.9, 0.999)})
    # FAST's program (net, ensemble, draws) with fewer steps: shared with the other 3-feature fits
    prop = BNNProposer(space, seed=0, config=dataclasses.replace(FAST, svi_steps=300, svi_warm_steps=100),
                       min_observations=6)
    asked_after = {}  # cube point -> scores told before it was asked for
    ask = prop.ask

    def recording_ask(k):
        u = ask(k)
        for row in u:
            asked_after[row.tobytes()] = len(prop.history_score)
        return u

    prop.ask = recording_ask
    told_by_tick = {0: 0}  # tick -> scores told by its end
    res = hj.tune(agent, space, budget=6 * 3 * 256 * 4, phase_steps=256, trial_steps=3 * 256, slots=6,
                  scheduler="asha", proposer=prop, eval_episodes=2, seed=0,
                  callbacks=[lambda study, changes: told_by_tick.setdefault(study.tick, len(prop.history_score))])
    assert len(res.trials) > 6 and prop.posterior is not None and prop.fit_seconds
    assert res.best is not None and res.proposer is prop and prop.counts["surrogate"] > 0
    # every refill was asked for after every score of the ticks before it was told
    for t in res.trials:
        assert asked_after[t.u.tobytes()] == told_by_tick[t.segments[0][3]], t.id


def test_pb2_explores_where_the_bnn_points():
    """PB2: once the BNN has a posterior, every exploiting member takes the model's pick near its
    source's values (``explore_near``), and those picks are exactly the children's
    configurations; before it, PBT's perturbation. The study ends with a best like PBT's."""
    agent = hj.PPO(env="CartPole-v1", num_envs=4, num_steps=16, num_minibatches=1, num_epochs=1, hidden=(16,))
    space = SearchSpace({"learning_rate": Float(1e-4, 1e-2, log=True), "gamma": Float(0.9, 0.999)})
    prop = BNNProposer(space, seed=0, config=dataclasses.replace(FAST, svi_steps=300, svi_warm_steps=100),
                       min_observations=6)
    picks = []
    near = prop.explore_near

    def recording(*args, **kwargs):
        out = near(*args, **kwargs)
        if out is not None:
            picks.extend(space.configs(out))
        return out

    prop.explore_near = recording
    res = hj.tune(agent, space, budget=6 * 8 * 256, phase_steps=256, trial_steps=8 * 256, slots=6,
                  scheduler=hj.schedulers.PB2(interval=1), proposer=prop, eval_episodes=2, seed=0)
    kids = [t for t in res.trials if t.origin == "pbt"]
    assert picks and prop.counts["explore"] == len(picks)
    chosen = [{n: t.config[n] for n in space.names} for t in kids]
    assert all(p in chosen for p in picks)  # every pick became a child
    guided = [t.start_phase for t, c in zip(kids, chosen) if c in picks]
    perturbed = [t.start_phase for t, c in zip(kids, chosen) if c not in picks]
    assert len(guided) == len(picks) and all(p < min(guided) for p in perturbed)  # only before a posterior
    assert res.best is not None and res.best.status == "completed"


def test_low_fidelity_scores_inform_the_target():
    """Every trial is observed at two fidelities; the high one is the low one plus 1: the
    posterior at the target must rank configurations seen only at low fidelity correctly."""
    rng = np.random.default_rng(3)
    space = SearchSpace({"a": Float(0, 1), "b": Float(0, 1)})
    prop = BNNProposer(space, seed=3, config=FAST, target_budget=8e5, precompile=False)
    u = rng.uniform(size=(60, 2))
    f = lambda u: np.sin(3 * u[:, 0]) + u[:, 1]  # noqa: E731
    prop.tell(u, f(u), np.full(60, 1e5))
    prop.tell(u[:30], f(u[:30]) + 1.0, np.full(30, 8e5))
    test = rng.uniform(size=(200, 2))
    mean, _, _ = prop.predict(test)
    assert np.corrcoef(mean, f(test))[0, 1] > 0.9
    assert abs(np.mean(mean - f(test)) - 1.0) < 0.3  # predicted at the target fidelity


def test_bad_settings():
    with pytest.raises(ValueError, match="inference='mcmc'"):
        BNNConfig(inference="mcmc")
    with pytest.raises(ValueError, match="ensemble=0"):
        BNNConfig(ensemble=0)
    with pytest.raises(ValueError, match="prior_functions=-1"):
        BNNConfig(prior_functions=-1.0)
    with pytest.raises(ValueError, match="warm_start=1"):
        BNNConfig(warm_start=1)
    with pytest.raises(ValueError, match="acquisition='ucb'"):
        BNNProposer(SPACE, acquisition="ucb")
    with pytest.raises(ValueError, match="finite"):
        BNN(FAST).fit(__import__("jax").random.key(0), np.zeros((3, 1)), np.array([0.0, np.nan, 1.0]))


def _bandit():
    """Observation [1]; action 0 pays 1, action 1 pays 0; episodes of 8 steps. A random policy
    earns 4 an episode; PPO's training return climbs towards 8 the faster the larger its
    learning rate, and with common random numbers every trial sees the same episodes: at these
    budgets a learning-rate's whole curve is a smooth, monotone function of it (measured:
    final training returns 3.75 for lr <= 1e-4, 4.5 at 2e-3, 6.8-7.1 for 8e-3 to 1e-2)."""
    import jax.numpy as jnp

    from hyperjax.envs import Env, Transition

    def reset(key):
        return jnp.ones((1,)), jnp.zeros((), jnp.int32)

    def step(key, t, action):
        t2 = t + 1
        end = t2 >= 8
        return Transition(jnp.ones((1,)), jnp.where(end, 0, t2), (action == 0).astype(jnp.float32), end,
                          jnp.zeros((), bool), jnp.ones((1,)))

    return Env("test/surrogate-bandit", 1, True, 2, None, None, 8, reset, step)


class _FixedProposer:
    """Proposes the rows of ``u`` in order; nothing left after them."""

    def __init__(self, u):
        self.u, self.i = np.asarray(u, np.float64), 0

    def ask(self, k):
        if self.i + k > len(self.u):
            raise ValueError("no proposals left")
        self.i += k
        return self.u[self.i - k : self.i]

    def tell(self, u, scores, budgets):
        pass


def test_extrapolation_scheduler_evicts_hopeless_trials():
    """Evictions checked against the truth: the same configurations trained to the end without
    stopping (bit for bit the same curves while they run: same slots' keys, same program).
    The first 6 trials (learning rates 1e-5 to 2e-3) complete and set the incumbent, the best
    final training score among them; of the next 10, those that end far below it (lr <= 1e-4)
    must be evicted at their first boundary, and those that end far above it (lr 8e-3 to 1e-2,
    the best of all) must be kept to the end, the very best among them."""
    from hyperjax.envs import register_env

    register_env("test/surrogate-bandit", _bandit)
    agent = hj.PPO(env="test/surrogate-bandit", num_envs=4, num_steps=16, num_minibatches=1, num_epochs=1, hidden=(16,))
    space = SearchSpace({"learning_rate": Float(1e-5, 1e-2, log=True), "gamma": Float(0.9, 0.999)})
    first = [1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 2e-3]  # complete before there is an incumbent
    then = [1e-5, 8e-3, 3e-5, 1e-4, 1e-2, 5e-5, 2e-5, 9e-3, 7e-5, 3e-5]  # the good ones start together
    rows = [[np.log(lr / 1e-5) / np.log(1e3), 0.5] for lr in first + then]
    kw = dict(phase_steps=256, trial_steps=4 * 256, slots=6, eval_episodes=2, seed=1)
    res = hj.tune(agent, space, budget=6 * 4 * 256 * 5, scheduler=hj.schedulers.Extrapolate(threshold=0.05),
                  proposer=_FixedProposer(rows), **kw)
    truth = hj.tune(agent, space, budget=2 * 16 * 4 * 256, scheduler="none", proposer=_FixedProposer(rows), **kw)
    assert len(res.trials) == len(truth.trials) == 16
    final = {}
    for t, ref in zip(res.trials, truth.trials):
        assert t.config == ref.config and ref.status == "completed"
        assert t.curve == ref.curve[: len(t.curve)]  # what ran, ran exactly as in the reference
        final[t.id] = ref.curve[-1]  # its training score at the full budget
    incumbent = max(final[i] for i in range(6))
    assert all(res.trials[i].status == "completed" for i in range(6))
    hopeless = [i for i in range(6, 16) if final[i] < incumbent - 0.5]
    promising = [i for i in range(6, 16) if final[i] > incumbent + 1.0]
    assert len(hopeless) == 7 and len(promising) == 3  # the design holds
    for i in hopeless:
        t = res.trials[i]
        assert t.status == "evicted" and t.end_reason == "extrapolate" and t.phases == 1, (i, t.status, t.phases)
    for i in promising:
        assert res.trials[i].status == "completed" and res.trials[i].phases == 4, (i, res.trials[i].status)
    best = max(final, key=final.get)
    assert best in promising and res.trials[best].status == "completed"
    assert max(t.curve[-1] for t in res.trials if t.status == "completed") == final[best]
    with pytest.raises(ValueError, match="threshold=1.5"):
        hj.schedulers.Extrapolate(threshold=1.5)


def test_nuts_exact_path_fits_a_small_history():
    x = np.linspace(0, 1, 24)[:, None]
    y = 2.0 * x[:, 0] + 0.05 * np.random.default_rng(4).normal(size=24)
    cfg = BNNConfig(hidden=(8,), inference="nuts", nuts_warmup=150, nuts_samples=32, num_draws=16)
    mean, scale = _fit(x, y, config=cfg).predict(np.array([[0.25], [0.75]]))
    assert mean.shape == (16, 2) and np.all(np.isfinite(mean)) and np.all(scale > 0)
    np.testing.assert_allclose(mean.mean(0), [0.5, 1.5], atol=0.25)


def test_fit_seconds_counts_until_the_draws_exist():
    """``fit_seconds`` stops when the posterior's draws are computed, not when the asynchronous
    dispatch returns."""
    import time

    import jax

    rng = np.random.default_rng(3)
    prop = BNNProposer(SearchSpace({"a": Float(0, 1)}), seed=3, config=FAST, min_observations=4, precompile=False)
    prop.bnn = _FixedHistoryBNN(FAST)
    u = rng.uniform(size=(40, 1))
    prop.tell(u, np.sin(6 * u[:, 0]), np.ones(40))
    prop.fit()  # compiles
    prop.tell(rng.uniform(size=(1, 1)), np.zeros(1), np.ones(1))
    t0 = time.perf_counter()
    post = prop.fit()
    jax.block_until_ready(post.draws)
    waited = time.perf_counter() - t0
    assert prop.fit_seconds[-1] >= 0.9 * waited, (prop.fit_seconds[-1], waited)


def test_asks_within_a_bucket_and_refits_as_the_scores_grow():
    """``ask(k, where=...)`` keeps the named dimensions at the given values (the engine asks so
    for a free slot of a structural bucket the batch missed); an unknown name is refused. In a
    study, ``refit_async`` starts a fit only once the scores grew by ``refit_growth``."""
    prop = BNNProposer(SPACE, seed=0, config=FAST, precompile=False, min_observations=8)
    u = prop.ask(12)
    prop.tell(u, _objective(u), np.full(12, 1e5))
    got = SPACE.configs(prop.ask(3, where={"c": "z", "d": 7}))
    assert prop.counts["surrogate"] == 3 and [(c["c"], c["d"]) for c in got] == [("z", 7)] * 3
    with pytest.raises(ValueError, match="'f', which is not a dimension"):
        prop.ask(1, where={"f": 1})

    prop = BNNProposer(SPACE, seed=0, config=FAST, precompile=False, min_observations=8)
    fits = []
    for n in (10, 1, 1, 2, 1, 1):  # 10 told: fit; 11: no (needs 12); 12: fit; 14: no (needs 15); 15: fit; 16: no
        u = prop.ask(n)
        prop.tell(u, _objective(u), np.full(n, 1e5))
        prop.refit_async()
        fits.append(prop.state_dict()["seq"])
    assert fits == [1, 1, 2, 2, 3, 3]
    assert BNNProposer(SPACE, seed=0, config=FAST, precompile=False, refit_growth=0).refit_growth == 0
    with pytest.raises(ValueError, match="refit_growth"):
        BNNProposer(SPACE, refit_growth=-1)
