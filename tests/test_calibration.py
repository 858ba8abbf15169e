"""Admission-level calibration (readmission/calibration.py): each method against a known truth, the
prior-shift formula by hand, the population stability index."""

from __future__ import annotations

import numpy as np
import pytest

from clinical_ft.readmission import calibration


def _sample(n: int = 20000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 1.5, n)  # the true log-odds
    return z, (rng.random(n) < calibration.sigmoid(z)).astype(int)


def test_temperature_scaling_recovers_a_known_temperature() -> None:
    z, y = _sample()
    over_confident = calibration.sigmoid(2.5 * z)  # a model whose logits are 2.5x too large
    cal = calibration.fit("temperature", over_confident, y)
    assert cal.params["T"] == pytest.approx(2.5, rel=0.05)
    assert np.abs(cal.apply(over_confident) - calibration.sigmoid(z)).max() < 0.05


def test_platt_recovers_slope_and_intercept() -> None:
    z, _ = _sample(seed=1)
    rng = np.random.default_rng(2)
    y = (rng.random(len(z)) < calibration.sigmoid(2 * z - 1)).astype(int)
    cal = calibration.fit("platt", calibration.sigmoid(z), y)
    assert cal.params["a"] == pytest.approx(2.0, abs=0.1) and cal.params["b"] == pytest.approx(-1.0, abs=0.1)
    assert (cal.fitted_on, cal.positives) == (len(y), int(y.sum())) and cal.prevalence == pytest.approx(y.mean())


def test_isotonic_is_monotone_and_within_0_1() -> None:
    z, y = _sample(2000, seed=3)
    scores = calibration.sigmoid(0.5 * z + 0.3)
    cal = calibration.fit("isotonic", scores, y)
    grid = np.linspace(-0.5, 1.5, 500)  # beyond the fitted range too: clipped
    out = cal.apply(grid)
    assert np.all(np.diff(out) >= 0) and out.min() >= 0 and out.max() <= 1


def test_none_and_one_class_keep_the_scores() -> None:
    s = np.array([0.2, 0.4, 0.9])
    assert np.array_equal(calibration.fit("none", s, [0, 1, 1]).apply(s), s)
    one = calibration.fit("platt", s, [1, 1, 1])
    assert one.method == "none" and "both classes" in one.params["why"] and np.array_equal(one.apply(s), s)


def test_prior_shift_by_hand() -> None:
    # p = 0.3 calibrated at prevalence 0.2, moved to 0.1:
    # odds 0.3/0.7 = 0.428571 times (0.1/0.9)/(0.2/0.8) = 0.444444 -> 0.190476 -> p' = 0.16
    assert calibration.prior_shift([0.3], 0.2, 0.1)[0] == pytest.approx(0.16)
    assert calibration.prior_shift([0.5], 0.5, 0.1)[0] == pytest.approx(0.1)
    assert calibration.prior_shift([0.3], 0.2, 0.2)[0] == pytest.approx(0.3)  # the same prevalence: unchanged


def test_psi_is_zero_for_the_reference_and_large_for_a_shift(tmp_path) -> None:
    rng = np.random.default_rng(4)
    ref = rng.random(10000)
    cal = calibration.fit("none", ref, (rng.random(10000) < ref).astype(int))
    assert calibration.psi(cal.score_deciles, rng.random(10000)) < 0.01
    assert calibration.psi(cal.score_deciles, rng.random(10000) ** 4) > 0.25
    calibration.save(cal, tmp_path)
    again = calibration.load(tmp_path)
    assert again == cal and calibration.load(tmp_path / "nowhere") is None
