import pytest

from clinical_ft.aggregation import aggregate, clinicalbert, max_score, mean_score


def test_clinicalbert_formula_by_hand() -> None:
    p = [0.2, 0.9, 0.4]  # n=3, max .9, sum 1.5
    # run_readmission.py vote_score: (max + sum/2) / (1 + n/2) = (0.9 + 0.75) / 2.5
    assert clinicalbert(p) == pytest.approx(0.66)
    # general c: (max + mean*n/c)/(1+n/c), c=1: (0.9 + 0.5*3) / 4
    assert clinicalbert(p, c=1.0) == pytest.approx(0.6)
    assert clinicalbert([0.7]) == pytest.approx(0.7)  # one window: its own score


def test_max_mean_and_grouping() -> None:
    ids = ["a", "b", "a", "a", "b"]
    probs = [0.1, 0.5, 0.8, 0.3, 0.2]
    out = aggregate(ids, probs, "max")
    assert out["a"] == (0.8, 3, 2) and out["b"] == (0.5, 2, 1)
    assert aggregate(ids, probs, "mean")["a"][0] == pytest.approx(0.4)
    assert max_score([1, 2]) == 2 and mean_score([1, 2]) == 1.5
    with pytest.raises(ValueError):
        aggregate(ids, probs, "median")
    with pytest.raises(ValueError):
        clinicalbert([])
