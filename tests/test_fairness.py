"""Fairness values against a hand computation on a tiny table, and against fairlearn."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from automl.fairness import fairness_report
from automl.metrics import get_metric


def _as_proba(labels: list[int]) -> np.ndarray:
    positive = np.asarray(labels, dtype=float) * 0.8 + 0.1  # 0.9 for a positive label, 0.1 otherwise
    return np.column_stack([1 - positive, positive])


def test_binary_groups_match_a_hand_computation():
    #            group A (4 rows)   group B (4 rows)
    y =         [1, 1, 0, 0,        1, 1, 0, 0]
    predicted = [1, 0, 1, 0,        1, 1, 1, 1]
    sensitive = pd.DataFrame({"sex": ["A"] * 4 + ["B"] * 4})
    report = fairness_report(np.array(y), _as_proba(predicted), sensitive, "binary",
                             get_metric("accuracy", "binary"), "holdout")
    groups = report["columns"]["sex"]["groups"]
    # A: selection 2/4, TPR 1/2, FPR 1/2, accuracy 2/4.  B: selection 4/4, TPR 2/2, FPR 2/2, accuracy 2/4.
    assert groups["A"] == pytest.approx({"rows": 4, "accuracy": 0.5, "selection_rate": 0.5,
                                         "true_positive_rate": 0.5, "false_positive_rate": 0.5})
    assert groups["B"] == pytest.approx({"rows": 4, "accuracy": 0.5, "selection_rate": 1.0,
                                         "true_positive_rate": 1.0, "false_positive_rate": 1.0})
    assert report["columns"]["sex"]["demographic_parity_difference"] == pytest.approx(0.5)
    assert report["columns"]["sex"]["equalized_odds_difference"] == pytest.approx(0.5)
    assert report["source"] == "holdout" and report["rows"] == 8


def test_probability_metric_per_group_and_missing_group_values():
    y = np.array([1, 0, 1, 0, 1, 0])
    proba = np.column_stack([1 - np.array([0.9, 0.1, 0.4, 0.6, 0.8, 0.3]),
                             np.array([0.9, 0.1, 0.4, 0.6, 0.8, 0.3])])
    sensitive = pd.DataFrame({"race": ["x", "x", "y", "y", None, None]})
    report = fairness_report(y, proba, sensitive, "binary", get_metric("roc_auc", "binary"), "out-of-fold")
    groups = report["columns"]["race"]["groups"]
    assert groups["x"]["roc_auc"] == 1.0 and groups["y"]["roc_auc"] == 0.0  # y ranks its pair backwards
    assert groups["<missing>"]["rows"] == 2


def test_regression_reports_the_metric_per_group_only():
    y = np.array([1.0, 2.0, 3.0, 4.0])
    prediction = np.array([1.0, 2.0, 4.0, 6.0])
    report = fairness_report(y, prediction, pd.DataFrame({"g": ["a", "a", "b", "b"]}), "regression",
                             get_metric("mae", "regression"), "holdout")
    column = report["columns"]["g"]
    assert column["groups"] == {"a": {"rows": 2, "mae": 0.0}, "b": {"rows": 2, "mae": 1.5}}
    assert "demographic_parity_difference" not in column


def test_differences_agree_with_fairlearns_own_functions():
    from fairlearn.metrics import demographic_parity_difference, equalized_odds_difference

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    labels = np.where(rng.random(300) < 0.8, y, 1 - y)
    groups = rng.choice(["a", "b", "c"], 300, p=[0.5, 0.3, 0.2])
    column = fairness_report(y, _as_proba(labels), pd.DataFrame({"g": groups}), "binary",
                             get_metric("accuracy", "binary"), "holdout")["columns"]["g"]
    assert column["demographic_parity_difference"] == pytest.approx(
        demographic_parity_difference(y, labels, sensitive_features=groups))
    assert column["equalized_odds_difference"] == pytest.approx(
        equalized_odds_difference(y, labels, sensitive_features=groups))
