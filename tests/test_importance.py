"""Permutation importance holds its time limit: the rows and repeats it uses come from what a
prediction costs, and where even one pass over the features would not fit, it is skipped."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

from automl.assess import IMPORTANCE_REPEATS, IMPORTANCE_ROWS, FittedMembers, feature_importance
from automl.metrics import get_metric


class _SlowModel:
    """Predicts the first column as the probability, after sleeping ``fixed_s`` plus
    ``per_row_s`` for each row: a prediction's cost, made known."""

    def __init__(self, fixed_s: float, per_row_s: float):
        self.fixed_s, self.per_row_s = fixed_s, per_row_s

    def fit(self, X, y):
        return self

    def predict_matrix(self, X: pd.DataFrame) -> np.ndarray:
        time.sleep(self.fixed_s + self.per_row_s * len(X))
        p = 1 / (1 + np.exp(-X.iloc[:, 0].to_numpy()))
        return np.column_stack([1 - p, p])


def _table(n_rows: int = 2000, n_features: int = 4, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(n_rows, n_features)), columns=[f"f{i}" for i in range(n_features)])
    y = (X["f0"] + 0.1 * rng.normal(size=n_rows) > 0).astype(int).to_numpy()
    return X, y


def test_a_cheap_model_gets_every_row_and_repeat_and_finds_the_signal():
    X, y = _table()
    model = FittedMembers([LogisticRegression().fit(X, y)], [1.0], "binary", 2)
    importance = feature_importance(model, X, y, "holdout", get_metric("roc_auc", "binary"), time_limit_s=30.0)
    assert importance.note == f"{IMPORTANCE_ROWS} rows, {IMPORTANCE_REPEATS} repeat(s)"
    assert importance.rows[0]["feature"] == "f0"


def test_a_prediction_costly_per_row_gets_fewer_rows():
    X, y = _table()
    model = _SlowModel(fixed_s=0.0, per_row_s=0.0002)  # 0.2 s for 1,000 rows: 5 of them do not fit in 1 s
    importance = feature_importance(model, X, y, "holdout", get_metric("roc_auc", "binary"), time_limit_s=1.0)
    rows = int(importance.note.split(" rows")[0])
    assert 200 <= rows < IMPORTANCE_ROWS and importance.note.endswith("1 repeat(s)")
    assert importance.rows[0]["feature"] == "f0"


def test_a_prediction_with_a_fixed_cost_is_not_sized_as_if_rows_made_it_cheaper():
    """Forests pay per tree whatever the rows: fewer rows would not bring 5 predictions
    of 0.1 s each within 0.4 s, so importance is skipped rather than overrunning."""
    X, y = _table()
    model = _SlowModel(fixed_s=0.1, per_row_s=0.0)
    importance = feature_importance(model, X, y, "holdout", get_metric("roc_auc", "binary"), time_limit_s=0.4)
    assert importance.rows == [] and importance.note.startswith("skipped: 4 permutations")
