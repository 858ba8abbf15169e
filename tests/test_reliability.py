"""Readmission reliability: calibration metrics, operating points, decision curve, patient-grouped
bootstrap and subgroups against values computed by hand on small fixed vectors (no model)."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from clinical_ft.readmission.operating import decision_curve, decision_curve_png, operating_points
from clinical_ft.readmission.reliability import (
    auroc,
    bootstrap_intervals,
    calibration_metrics,
    ece,
    grouped_resample_indices,
    reliability_png,
    subgroup_table,
)

PNG = b"\x89PNG\r\n\x1a\n"
# 10 admissions ranked by risk, 4 readmitted (the 1st, 2nd, 4th and 7th)
RANKED_Y = [1, 1, 0, 1, 0, 0, 1, 0, 0, 0]
RANKED_R = [0.95, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1]


def test_brier_and_ece_by_hand() -> None:
    m = calibration_metrics([0, 1, 1, 0], [0.1, 0.9, 0.6, 0.4])
    assert m["brier"] == pytest.approx((0.1**2 + 0.1**2 + 0.4**2 + 0.4**2) / 4)  # 0.085
    assert m["mean_risk"] == pytest.approx(0.5) and m["prevalence"] == 0.5 and m["ece_bins"] == 10.0
    # 2 bins: [0, 0.5] holds 0.2 (0), 0.5 (1): |0.5 - 0.35| = 0.15, weight 2/5;
    # (0.5, 1] holds 0.7 (0), 0.8 (1), 0.9 (1): |2/3 - 0.8|, weight 3/5
    y, r = [0, 1, 0, 1, 1], [0.2, 0.5, 0.7, 0.8, 0.9]
    assert ece(y, r, bins=2) == pytest.approx(2 / 5 * 0.15 + 3 / 5 * abs(2 / 3 - 0.8))
    assert calibration_metrics(y, r, bins=2)["ece"] == pytest.approx(0.14)
    assert calibration_metrics(y, r, bins=2)["ece_bins"] == 2.0
    # 10 bins: every risk alone in its bin, so ECE = mean |y - r|
    assert ece(y, r, bins=10) == pytest.approx(np.mean(np.abs(np.array(y) - np.array(r))))


def test_recalibration_slope_and_intercept() -> None:
    rng = np.random.default_rng(0)
    p = rng.uniform(0.02, 0.98, 20000)
    y = (rng.uniform(size=p.size) < p).astype(int)
    m = calibration_metrics(y, p)
    assert m["calibration_slope"] == pytest.approx(1.0, abs=0.06)
    assert m["calibration_intercept"] == pytest.approx(0.0, abs=0.06)
    assert m["ece"] < 0.02
    z = np.log(p / (1 - p))
    overconfident = 1 / (1 + np.exp(-2 * z))  # pushed toward 0 and 1
    m2 = calibration_metrics(y, overconfident)
    assert m2["calibration_slope"] < 0.7 and m2["calibration_slope"] == pytest.approx(0.5, abs=0.06)
    assert m2["ece"] > m["ece"] and m2["brier"] > m["brier"]


def test_one_class_and_empty_are_nan_not_errors() -> None:
    m = calibration_metrics([0, 0, 0], [0.1, 0.2, 0.3])
    assert m["brier"] == pytest.approx((0.01 + 0.04 + 0.09) / 3)
    assert math.isnan(m["calibration_slope"]) and math.isnan(m["calibration_intercept"])
    assert all(type(v) is float for v in m.values())
    json.dumps(m)
    e = calibration_metrics([], [])
    assert math.isnan(e["brier"]) and math.isnan(e["ece"]) and e["admissions"] == 0.0
    assert math.isnan(auroc([1, 1], [0.2, 0.3]))
    assert all(r["threshold"] is None for r in operating_points([], []))
    with pytest.raises(ValueError):
        calibration_metrics([0, 1], [0.5, 1.5])


def test_operating_points_by_hand() -> None:
    rows = {r["name"]: r for r in operating_points(RANKED_Y, RANKED_R)}
    assert list(rows) == ["precision_0.8", "sensitivity_0.8", "top_10pct"]
    # precision down the ranking: 1, 1, 2/3, 3/4, 3/5, ... -> only the top 2 reach 0.8 (recall 2/4)
    p80 = rows["precision_0.8"]
    assert p80["threshold"] == 0.9 and p80["note"] is None
    assert (p80["tp"], p80["fp"], p80["tn"], p80["fn"]) == (2.0, 0.0, 6.0, 2.0)
    assert p80["sensitivity"] == 0.5 and p80["specificity"] == 1.0 and p80["ppv"] == 1.0
    assert p80["npv"] == pytest.approx(6 / 8) and p80["alerts_per_100"] == pytest.approx(20.0)
    # sensitivity >= 0.8 needs all 4 readmissions: the top 7, threshold 0.4
    s80 = rows["sensitivity_0.8"]
    assert s80["threshold"] == 0.4 and (s80["tp"], s80["fp"], s80["tn"], s80["fn"]) == (4.0, 3.0, 3.0, 0.0)
    assert s80["sensitivity"] == 1.0 and s80["specificity"] == 0.5
    assert s80["ppv"] == pytest.approx(4 / 7) and s80["npv"] == 1.0 and s80["alerts_per_100"] == pytest.approx(70.0)
    # 90th percentile (linear): 0.9 + 0.1 * (0.95 - 0.9) = 0.905 -> only the top admission alerts
    top = rows["top_10pct"]
    assert top["threshold"] == pytest.approx(0.905) and top["alerts_per_100"] == pytest.approx(10.0)
    assert top["sensitivity"] == 0.25 and top["npv"] == pytest.approx(6 / 9)
    json.dumps(list(rows.values()))


def test_operating_points_without_a_precision_08_threshold() -> None:
    rows = operating_points([0, 1, 0, 1], [0.9, 0.8, 0.7, 0.6])  # precision 0, 1/2, 1/3, 1/2
    assert rows[0]["threshold"] is None and "precision 0.8" in rows[0]["note"] and math.isnan(rows[0]["ppv"])
    assert rows[1]["threshold"] == 0.6  # sensitivity 1/2 at 0.8, 1 at 0.6
    negatives = operating_points([0, 0, 0], [0.1, 0.5, 0.9])
    assert [r["threshold"] is None for r in negatives] == [True, True, False]
    assert negatives[1]["note"] == "no readmitted admissions" and math.isnan(negatives[2]["sensitivity"])


def test_decision_curve_by_hand() -> None:
    d = decision_curve(RANKED_Y, RANKED_R, thresholds=[0.25, 0.5])
    # pt 0.25 (odds 1/3): the 8 risks >= 0.25 hold 4 readmissions, 4 not: 4/10 - 4/10 * 1/3
    assert d["model"][0] == pytest.approx(0.4 - 0.4 / 3)
    assert d["treat_all"][0] == pytest.approx(0.4 - 0.6 / 3)
    # pt 0.5 (odds 1): risks >= 0.5 are 3 readmitted, 3 not -> 0
    assert d["model"][1] == pytest.approx(0.0) and d["treat_all"][1] == pytest.approx(-0.2)
    assert d["treat_none"] == [0.0, 0.0]
    full = decision_curve(RANKED_Y, RANKED_R)
    assert len(full["thresholds"]) == 99 and full["thresholds"][0] == pytest.approx(0.01)
    json.dumps(full)
    with pytest.raises(ValueError):
        decision_curve(RANKED_Y, RANKED_R, thresholds=[0.5, 1.0])


def test_grouped_resamples_draw_a_patients_admissions_together() -> None:
    groups = ["a", "a", "b", "b", None, None, 0]  # None: own group; the subject 0 is not admission 0
    draws = list(grouped_resample_indices(groups, 200, seed=3))
    for idx in draws:
        c = Counter(idx.tolist())
        assert c[0] == c[1] and c[2] == c[3]
        assert len(idx) - c[0] - c[2] == 5  # 5 groups drawn in all, patients a and b with 2 admissions
    assert any(Counter(i.tolist())[4] != Counter(i.tolist())[6] for i in draws)
    again = list(grouped_resample_indices(groups, 200, seed=3))
    assert all(np.array_equal(a, b) for a, b in zip(draws, again))

    # through bootstrap_intervals: risks encode the admission, a metric_fn records each resample
    seen: list[Counter] = []

    def record(y: np.ndarray, r: np.ndarray) -> float:
        seen.append(Counter(np.round(r * 10).astype(int).tolist()))
        return float(r.mean())

    labels, risks = [0, 0, 1, 1, 0, 1, 0], [i / 10 for i in range(7)]
    ci = bootstrap_intervals(labels, risks, groups, {"mean": record}, resamples=200, seed=3)
    assert len(seen) == 200 and all(c[0] == c[1] and c[2] == c[3] for c in seen)
    means = [float(np.asarray(risks)[i].mean()) for i in draws]
    assert ci["mean"] == pytest.approx(tuple(np.percentile(means, [2.5, 97.5])))
    assert ci["resamples_used"] == {"mean": 200.0}


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.UndefinedMetricWarning")  # raw roc_auc_score, one class
def test_bootstrap_skips_undefined_resamples_and_is_deterministic() -> None:
    y = [1, 0, 0, 0, 0, 0]  # one readmission: resamples without it have no AUROC
    r = [0.9, 0.1, 0.2, 0.3, 0.4, 0.5]
    fns = {"auroc": auroc, "raw": roc_auc_score, "one": lambda y, r: 1.0}
    ci = bootstrap_intervals(y, r, list(range(6)), fns, resamples=100, seed=1)
    used = ci["resamples_used"]
    assert 0 < used["auroc"] == used["raw"] < 100 and used["one"] == 100.0
    assert ci["auroc"] == (1.0, 1.0) and ci["one"] == (1.0, 1.0)
    assert bootstrap_intervals(y, r, [None] * 6, fns, resamples=100, seed=1) == ci
    other = bootstrap_intervals(y, r, [None] * 6, fns, resamples=100, seed=2)
    assert other["resamples_used"]["auroc"] != used["auroc"]
    none = bootstrap_intervals([0, 0], [0.1, 0.2], ["p", "q"], {"auroc": auroc}, resamples=20)
    assert all(math.isnan(v) for v in none["auroc"]) and none["resamples_used"]["auroc"] == 0.0


def test_subgroups_perfect_inverted_and_too_small() -> None:
    y = [0, 0, 0, 1, 1, 1] + [1, 1, 1, 0, 0, 0]
    r = [0.1, 0.2, 0.3, 0.7, 0.8, 0.9] + [0.15, 0.25, 0.35, 0.65, 0.75, 0.85]
    sex = ["A"] * 6 + ["B"] * 6  # A ranks perfectly, B is inverted
    site = ["x"] * 10 + [None] * 2  # the last two: a group of 2 with no readmission
    subjects = [f"s{i // 2}" for i in range(12)]  # two admissions per patient
    overall = {"auroc": auroc(y, r), **calibration_metrics(y, r)}
    assert 0.0 < overall["auroc"] < 1.0
    rows = subgroup_table(y, r, {"sex": sex, "site": site}, subjects, overall, resamples=100, seed=0,
                          min_size=4, min_events=2)
    by = {(row["attribute"], row["value"]): row for row in rows}
    assert list(by) == [("sex", "A"), ("sex", "B"), ("site", "x"), ("site", "unknown")]
    a, b, unknown = by["sex", "A"], by["sex", "B"], by["site", "unknown"]
    assert a["auroc"] == 1.0 and (a["auroc_low"], a["auroc_high"]) == (1.0, 1.0)
    assert b["auroc"] == 0.0 and (b["auroc_low"], b["auroc_high"]) == (0.0, 0.0)
    assert "auroc" in a["differs"] and "auroc" in b["differs"]
    assert not a["too_small"] and not b["too_small"] and a["n"] == 6.0 and a["events"] == 3.0
    assert a["prevalence"] == 0.5 and a["brier"] == pytest.approx(calibration_metrics(y[:6], r[:6])["brier"])
    assert unknown["too_small"] and unknown["n"] == 2.0 and math.isnan(unknown["auroc"])
    assert unknown["resamples_used"]["auroc"] == 0.0 and "auroc" not in unknown["differs"]
    json.dumps(rows)
    # the defaults (30 admissions, 5 events) make every group here too small
    small = subgroup_table(y, r, {"sex": sex}, subjects, overall, resamples=20)
    assert all(row["too_small"] for row in small)


def test_pngs_are_written_atomically(tmp_path: Path) -> None:
    paths = [
        reliability_png(RANKED_Y, RANKED_R, tmp_path / "reliability.png", "test"),
        reliability_png([0, 0, 0], [0.1, 0.2, 0.3], tmp_path / "one_class.png", "one class"),
        decision_curve_png(RANKED_Y, RANKED_R, tmp_path / "decision.png", "test"),
    ]
    for path in paths:
        assert path.read_bytes()[:8] == PNG
    assert sorted(p.name for p in tmp_path.iterdir()) == ["decision.png", "one_class.png", "reliability.png"]
