"""Bias mitigation (``fairness.mitigate``): fairlearn's ThresholdOptimizer on the final model.

Post-processing needs no extra data: the thresholds are fitted on the final blend's
out-of-fold probabilities of the positive class, per group of the ``data.sensitive``
columns (their combinations, when there are several), to maximise accuracy under the
constraint: equal selection rates across groups (``demographic_parity``) or equal true
and false positive rates (``equalized_odds``). It applies to binary tasks only.

The mitigated model's probability of the positive class is the threshold rule's: the
chance fairlearn's randomised rule says positive for that row and group (its
``_pmf_predict``); a label is the likelier class, so one row gets the same answer
whatever else is predicted with it. Those probabilities take a few values per group,
so a ranking metric (AUC) pays more than accuracy does.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from fairlearn.postprocessing import ThresholdOptimizer
from sklearn.base import BaseEstimator, ClassifierMixin

from automl.errors import InputError
from automl.fairness import group_labels
from automl.metrics import Metric


class _Scores(ClassifierMixin, BaseEstimator):
    """An estimator whose input is its own score (the blend's positive probability): what
    ThresholdOptimizer thresholds, already computed."""

    def fit(self, X, y) -> _Scores:
        self.classes_ = np.array([0, 1])
        return self

    def predict(self, X) -> np.ndarray:
        return np.asarray(X, dtype=float)[:, 0]


class GroupThresholds:
    """Per-group thresholds on the positive probability, as fairlearn fitted them."""

    def __init__(self, constraint: str, columns: list[str], optimizer: ThresholdOptimizer):
        self.constraint = constraint
        self.columns = columns
        self.optimizer = optimizer

    @classmethod
    def fit(cls, constraint: str, positive: np.ndarray, y: np.ndarray, sensitive: pd.DataFrame) -> GroupThresholds:
        """Thresholds for ``positive`` (the blend's probability of class 1) and labels ``y``,
        by the groups of ``sensitive``."""
        scores = positive.reshape(-1, 1)
        optimizer = ThresholdOptimizer(estimator=_Scores().fit(scores, y), constraints=constraint,
                                       objective="accuracy_score", prefit=True, predict_method="predict")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # fairlearn's notes on degenerate groups
            optimizer.fit(scores, y, sensitive_features=_groups(sensitive))
        return cls(constraint, list(sensitive.columns), optimizer)

    def apply(self, matrix: np.ndarray, sensitive: pd.DataFrame) -> np.ndarray:
        """The mitigated probabilities [P(0), P(1)] for the blend's ``matrix`` and the rows' groups."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            positive = self.optimizer._pmf_predict(matrix[:, 1:2], sensitive_features=_groups(sensitive))[:, 1]
        return np.column_stack([1.0 - positive, positive])

    def sensitive_of(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The sensitive columns of rows to predict; their absence is an input error."""
        missing = [name for name in self.columns if name not in frame.columns]
        if missing:
            raise InputError(f"the model mitigates bias by column '{missing[0]}' (fairness.mitigate: "
                             f"{self.constraint}): the data to predict must have it")
        return frame[self.columns]


def _groups(sensitive: pd.DataFrame) -> np.ndarray:
    """One group label per row: the columns' values (missing ones as their own group), joined."""
    labels = [group_labels(sensitive[name]) for name in sensitive.columns]
    return np.array(["|".join(parts) for parts in zip(*labels, strict=True)], dtype=object)


def mitigation_effect(constraint: str, before: dict, after: dict, y: np.ndarray, unmitigated: np.ndarray,
                      mitigated: np.ndarray, metric: Metric) -> dict:
    """What the mitigation changed, on the rows the fairness report is on: each sensitive
    column's two differences, and the accuracy and the run's metric, before and after."""
    def accuracy(matrix: np.ndarray) -> float:
        return float(np.mean(np.argmax(matrix, axis=1) == y))

    columns = {name: {gap: {"before": before["columns"][name][gap], "after": after["columns"][name][gap]}
                      for gap in ("demographic_parity_difference", "equalized_odds_difference")}
               for name in after["columns"]}
    return {"constraint": constraint, "source": after["source"], "columns": columns,
            "accuracy": {"before": accuracy(unmitigated), "after": accuracy(mitigated)},
            metric.name: {"before": float(metric.score(y, unmitigated)), "after": float(metric.score(y, mitigated))}}
