import pytest

from hyperjax.schedulers.hyperband import hyperband_brackets, s_max


def test_hyperband_table_R81_eta3():
    """Li et al. 2016, Table 1 (R = 81, eta = 3): (n_i, r_i) per bracket."""
    expected = [
        [(81, 1), (27, 3), (9, 9), (3, 27), (1, 81)],
        [(34, 3), (11, 9), (3, 27), (1, 81)],
        [(15, 9), (5, 27), (1, 81)],
        [(8, 27), (2, 81)],
        [(5, 81)],
    ]
    got = [[(rung.n, round(rung.r)) for rung in b] for b in hyperband_brackets(81, 3)]
    assert got == expected


def test_s_max_and_bad_eta():
    assert s_max(81, 3) == 4 and s_max(27, 3) == 3 and s_max(100, 3) == 4
    with pytest.raises(ValueError, match=r"eta=1.5 must be >= 2"):
        hyperband_brackets(81, 1.5)
