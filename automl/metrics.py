"""Metric registry: a name, a direction, and whether it scores probabilities.

Every scorer takes ``(y_true, prediction)`` where ``y_true`` holds encoded
labels (0..k-1) for classification, and ``prediction`` is the probability
matrix (n, k) for classification or the predicted values for regression.
Scores stay in the metric's own sign; ``higher_is_better`` tells which way is up.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial

import numpy as np
from scipy.stats import rankdata
from sklearn import metrics as skm

from automl.errors import InputError

CLASSIFICATION = ("binary", "multiclass")
REGRESSION = ("regression",)


@dataclass(frozen=True)
class Metric:
    name: str
    higher_is_better: bool
    needs_proba: bool
    tasks: tuple[str, ...]
    score_fn: Callable[[np.ndarray, np.ndarray], float]
    lean_fn: Callable[[np.ndarray, np.ndarray], float] | None = None
    """``score_fn`` without scikit-learn's input checks, for predictions known to be finite
    and well formed: the ensemble selection scores thousands of blends, and with the checks
    its 25 rounds over 12 candidates took 3.5 s on wine_white, 8.8 s on adult (it stopped
    at its 1 s limit after a few rounds)."""

    @property
    def direction(self) -> str:
        """Optuna's name for the direction."""
        return "maximize" if self.higher_is_better else "minimize"

    def score(self, y_true: np.ndarray, prediction: np.ndarray) -> float:
        return float(self.score_fn(np.asarray(y_true), np.asarray(prediction)))

    def lean_score(self, y_true: np.ndarray, prediction: np.ndarray) -> float:
        """The score, computed as ``lean_fn`` does where the metric has one (see there)."""
        if self.lean_fn is None:
            return self.score(y_true, prediction)
        return float(self.lean_fn(y_true, prediction))

    def is_better(self, a: float, b: float) -> bool:
        """Whether score ``a`` beats score ``b``."""
        return a > b if self.higher_is_better else a < b

    def worst(self) -> float:
        return -np.inf if self.higher_is_better else np.inf


def _labels(proba: np.ndarray) -> np.ndarray:
    return np.argmax(proba, axis=1)


def _roc_auc(y: np.ndarray, proba: np.ndarray) -> float:
    if proba.shape[1] == 2:
        return skm.roc_auc_score(y, proba[:, 1])
    return skm.roc_auc_score(y, proba, multi_class="ovr", labels=np.arange(proba.shape[1]))


def _log_loss(y: np.ndarray, proba: np.ndarray) -> float:
    return skm.log_loss(y, proba, labels=np.arange(proba.shape[1]))


def _lean_roc_auc(y: np.ndarray, proba: np.ndarray) -> float:
    """Binary AUC from the ranks of the scores (ties share their mean rank), as the
    Mann-Whitney statistic: what roc_auc_score computes; NaN on rows of one class."""
    if proba.shape[1] != 2:
        return _roc_auc(y, proba)
    positive = y == 1
    n_positive = int(positive.sum())
    n_negative = len(y) - n_positive
    if n_positive == 0 or n_negative == 0:
        return float("nan")
    ranks = rankdata(proba[:, 1])
    return (ranks[positive].sum() - n_positive * (n_positive + 1) / 2) / (n_positive * n_negative)


def _lean_log_loss(y: np.ndarray, proba: np.ndarray) -> float:
    """Each row's true-class probability, clipped to [eps, 1 - eps] as log_loss clips it."""
    eps = np.finfo(proba.dtype).eps
    return float(-np.mean(np.log(np.clip(proba[np.arange(len(y)), y], eps, 1 - eps))))


def _f1(y: np.ndarray, proba: np.ndarray, positive: int = 1) -> float:
    """Binary: f1 of the ``positive`` class (its code); otherwise the macro average."""
    if proba.shape[1] == 2:
        return skm.f1_score(y, _labels(proba), pos_label=positive, labels=[0, 1])
    return skm.f1_score(y, _labels(proba), average="macro")


_REGISTRY: dict[str, Metric] = {}


def register(metric: Metric) -> Metric:
    _REGISTRY[metric.name] = metric
    return metric


register(Metric("roc_auc", True, True, CLASSIFICATION, _roc_auc, _lean_roc_auc))
register(Metric("log_loss", False, True, CLASSIFICATION, _log_loss, _lean_log_loss))
register(Metric("accuracy", True, False, CLASSIFICATION,
                lambda y, p: skm.accuracy_score(y, _labels(p)), lambda y, p: float(np.mean(_labels(p) == y))))
register(Metric("balanced_accuracy", True, False, CLASSIFICATION,
                lambda y, p: skm.balanced_accuracy_score(y, _labels(p))))
register(Metric("f1", True, False, CLASSIFICATION, _f1))
register(Metric("f1_macro", True, False, CLASSIFICATION,
                lambda y, p: skm.f1_score(y, _labels(p), average="macro")))
register(Metric("rmse", False, False, REGRESSION,
                lambda y, p: skm.root_mean_squared_error(y, p), lambda y, p: float(np.sqrt(np.mean((y - p) ** 2)))))
register(Metric("mae", False, False, REGRESSION, skm.mean_absolute_error, lambda y, p: float(np.mean(np.abs(y - p)))))
register(Metric("r2", True, False, REGRESSION, skm.r2_score))

DEFAULT_METRIC = {"binary": "roc_auc", "multiclass": "log_loss", "regression": "rmse"}


def metric_names() -> list[str]:
    return sorted(_REGISTRY)


POSITIVE_CLASS_METRICS = ("f1",)
"""Metrics that score one class of a binary task as the positive one."""


def get_metric(name: str, task: str, positive: int | None = None) -> Metric:
    """The metric called ``name`` (``auto``: the task's default), checked against the task;
    for a binary task, one that scores the class coded ``positive`` as positive."""
    if name == "auto":
        name = DEFAULT_METRIC[task]
    if name not in _REGISTRY:
        raise InputError(f"unknown metric {name!r}; known: {', '.join(metric_names())}")
    metric = _REGISTRY[name]
    if task not in metric.tasks:
        raise InputError(f"metric {name!r} does not apply to a {task} task")
    if task == "binary" and positive is not None and name in POSITIVE_CLASS_METRICS:
        return replace(metric, score_fn=partial(metric.score_fn, positive=positive))
    return metric


def score_or_nan(metric: Metric, y: np.ndarray, prediction: np.ndarray) -> float:
    """``metric`` on these rows, or NaN where it is undefined on them (roc_auc on rows of
    one class). An InputError (a ValueError too) is the user's to see: it is raised."""
    try:
        return metric.score(y, prediction)
    except InputError:
        raise
    except ValueError:
        return float("nan")


def all_scores(task: str, y_true: np.ndarray, prediction: np.ndarray) -> dict[str, float]:
    """Every registered metric that applies to ``task``, for reports and holdout scoring."""
    scores = {}
    for metric in _REGISTRY.values():
        if task in metric.tasks:
            value = score_or_nan(metric, y_true, prediction)
            if np.isfinite(value):  # roc_auc on rows of one class only is undefined (NaN)
                scores[metric.name] = value
    return scores
