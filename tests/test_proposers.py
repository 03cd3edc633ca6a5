import numpy as np
import pytest

from hyperjax.proposers import RandomProposer, SobolProposer, config_key, make_proposer
from hyperjax.space import Choice, Float, Int, SearchSpace

SPACE = SearchSpace({"learning_rate": Float(1e-5, 1e-2, log=True), "t_max": Int(2, 100, log=True)})
SMALL = SearchSpace({"gamma": Choice((0.9, 0.99)), "t_max": Int(4, 6)})


@pytest.mark.parametrize("cls", [RandomProposer, SobolProposer])
def test_ask_is_in_cube_and_distinct(cls):
    p = cls(SPACE, 0)
    u = np.concatenate([p.ask(16), p.ask(16)])
    assert u.shape == (32, 2) and np.all((u >= 0) & (u <= 1))
    assert len({config_key(SPACE, r) for r in u}) == 32


@pytest.mark.parametrize("cls", [RandomProposer, SobolProposer])
def test_discrete_space_never_repeats_then_reports_exhaustion(cls):
    p = cls(SMALL, 1)
    u = p.ask(6)  # all 2 x 3 configurations
    assert len({config_key(SMALL, r) for r in u}) == 6
    with pytest.raises(ValueError, match="exhausted: 6 distinct configurations proposed, 1 more"):
        p.ask(1)


def test_running_trials_are_not_reproposed():
    p = RandomProposer(SMALL, 2)
    p.mark_seen(SMALL.encode({"gamma": [0.9, 0.9, 0.99], "t_max": [4, 5, 6]}))
    got = {config_key(SMALL, r) for r in p.ask(3)}
    assert got == {(0.9, 6), (0.99, 4), (0.99, 5)}


def test_tell_records_history_and_unknown_name():
    p = make_proposer("sobol", SPACE)
    u = p.ask(4)
    p.tell(u, np.arange(4.0), 1000)
    assert len(p.history_score) == 4 and p.history_budget == [1000.0] * 4
    with pytest.raises(ValueError, match="proposer 'tpe' is unknown; allowed: random, sobol"):
        make_proposer("tpe", SPACE)
