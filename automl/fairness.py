"""Fairness by group of a sensitive column (``data.sensitive``), with fairlearn.

For each sensitive column and each of its groups: the rows, the run's metric
and, for a binary task, the selection rate (share predicted positive) and the
true and false positive rates; across the groups, the demographic parity
difference (largest gap in selection rate) and the equalised odds difference
(the larger of the gaps in true and in false positive rate). The positive class
is the second of the sorted classes, as in scikit-learn.

The run's metric may need probabilities (roc_auc, log_loss) while fairlearn's
MetricFrame hands each metric ``(y_true, y_pred)`` split by group; it is given
row positions as ``y_pred``, so every metric can look up what it needs.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd
from fairlearn.metrics import (
    MetricFrame,
    count,
    false_positive_rate,
    selection_rate,
    true_positive_rate,
)

from automl.errors import InputError
from automl.metrics import Metric

MISSING_GROUP = "<missing>"


def group_labels(values: pd.Series) -> np.ndarray:
    return values.astype(str).where(values.notna(), MISSING_GROUP).to_numpy()


def _safe(score_fn):
    """A metric that is undefined for a group (one class only) is NaN there, not an error."""
    def scored(*args) -> float:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return float(score_fn(*args))
        except InputError:
            raise
        except ValueError:
            return float("nan")
    return scored


def fairness_report(y: np.ndarray, prediction: np.ndarray, sensitive: pd.DataFrame, task: str,
                    metric: Metric, source: str) -> dict[str, Any]:
    """Per group of each column of ``sensitive`` (aligned with ``y``): the metric and,
    for a binary task, the rates and the two differences. ``prediction`` is the
    probability matrix (classification) or the values (regression); ``source`` says
    which rows these are (holdout or out-of-fold)."""
    y = np.asarray(y)
    prediction = np.asarray(prediction)
    labels = np.argmax(prediction, axis=1) if task != "regression" else None
    positions = np.arange(len(y))
    metrics = {"rows": lambda yt, idx: count(yt, idx),
               metric.name: _safe(lambda yt, idx: metric.score(yt, prediction[idx]))}
    if task == "binary":
        metrics |= {"selection_rate": lambda yt, idx: selection_rate(yt, labels[idx]),
                    "true_positive_rate": _safe(lambda yt, idx: true_positive_rate(yt, labels[idx])),
                    "false_positive_rate": _safe(lambda yt, idx: false_positive_rate(yt, labels[idx]))}
    columns = {}
    for name in sensitive.columns:
        groups = group_labels(sensitive[name])
        frame = MetricFrame(metrics=metrics, y_true=y, y_pred=positions, sensitive_features=groups)
        by_group = frame.by_group
        column = {"groups": {str(g): {k: _plain(v) for k, v in row.items()} for g, row in by_group.iterrows()}}
        if task == "binary":  # fairlearn's two differences, read off this frame instead of two more
            gaps = frame.difference(method="between_groups")
            column["demographic_parity_difference"] = _plain(gaps["selection_rate"])
            column["equalized_odds_difference"] = _plain(max(gaps["true_positive_rate"], gaps["false_positive_rate"]))
        columns[name] = column
    return {"source": source, "metric": metric.name, "rows": len(y), "columns": columns}


def _plain(value: Any) -> Any:
    if isinstance(value, (np.integer, int)):
        return int(value)
    value = float(value)
    return value if np.isfinite(value) else None
