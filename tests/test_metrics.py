"""The metric registry: names, directions, and scores that agree with scikit-learn."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn import metrics as skm

from automl.errors import InputError
from automl.metrics import Metric, all_scores, get_metric, metric_names, score_or_nan

EXPECTED = {
    # name: (higher_is_better, needs_proba, tasks)
    "roc_auc": (True, True, {"binary", "multiclass"}),
    "log_loss": (False, True, {"binary", "multiclass"}),
    "accuracy": (True, False, {"binary", "multiclass"}),
    "balanced_accuracy": (True, False, {"binary", "multiclass"}),
    "f1": (True, False, {"binary", "multiclass"}),
    "f1_macro": (True, False, {"binary", "multiclass"}),
    "rmse": (False, False, {"regression"}),
    "mae": (False, False, {"regression"}),
    "r2": (True, False, {"regression"}),
}

# binary: y and a probability matrix (n, 2) whose argmax differs from y on rows 2, 5 and 7
Y_BIN = np.array([0, 0, 1, 1, 0, 1, 1, 0, 1, 0])
P1_BIN = np.array([0.1, 0.3, 0.45, 0.8, 0.2, 0.35, 0.9, 0.6, 0.7, 0.05])
P_BIN = np.column_stack([1 - P1_BIN, P1_BIN])

# multiclass: three classes, rows sum to 1
Y_MC = np.array([0, 1, 2, 2, 1, 0, 2, 1, 0])
P_MC = np.array([
    [0.7, 0.2, 0.1],
    [0.2, 0.5, 0.3],
    [0.1, 0.3, 0.6],
    [0.3, 0.4, 0.3],
    [0.1, 0.8, 0.1],
    [0.4, 0.4, 0.2],
    [0.2, 0.2, 0.6],
    [0.5, 0.3, 0.2],
    [0.6, 0.3, 0.1],
])

Y_REG = np.array([3.0, -0.5, 2.0, 7.0, 4.2])
P_REG = np.array([2.5, 0.0, 2.0, 8.0, 3.9])


def test_registry_names_and_properties():
    assert set(EXPECTED) <= set(metric_names())
    assert metric_names() == sorted(metric_names())
    for name, (higher, proba, tasks) in EXPECTED.items():
        task = next(iter(tasks))
        metric = get_metric(name, task)
        assert metric.name == name
        assert metric.higher_is_better is higher, name
        assert metric.needs_proba is proba, name
        assert set(metric.tasks) == tasks, name
        assert metric.direction == ("maximize" if higher else "minimize")
        assert metric.worst() == (-math.inf if higher else math.inf)


@pytest.mark.parametrize("name, expected", [
    ("roc_auc", skm.roc_auc_score(Y_BIN, P1_BIN)),
    ("log_loss", skm.log_loss(Y_BIN, P_BIN)),
    ("accuracy", skm.accuracy_score(Y_BIN, (P1_BIN > 0.5).astype(int))),
    ("balanced_accuracy", skm.balanced_accuracy_score(Y_BIN, (P1_BIN > 0.5).astype(int))),
    ("f1", skm.f1_score(Y_BIN, (P1_BIN > 0.5).astype(int))),
    ("f1_macro", skm.f1_score(Y_BIN, (P1_BIN > 0.5).astype(int), average="macro")),
])
def test_binary_scores_match_sklearn(name, expected):
    score = get_metric(name, "binary").score(Y_BIN, P_BIN)
    assert isinstance(score, float)
    assert score == pytest.approx(expected)


def test_binary_hand_computed_values():
    # 7 of 10 right; positives 2, 5 missed out of 5, negative 7 wrong out of 5
    assert get_metric("accuracy", "binary").score(Y_BIN, P_BIN) == pytest.approx(0.7)
    assert get_metric("balanced_accuracy", "binary").score(Y_BIN, P_BIN) == pytest.approx(0.7)
    # precision 3/4, recall 3/5
    assert get_metric("f1", "binary").score(Y_BIN, P_BIN) == pytest.approx(2 * 0.75 * 0.6 / 1.35)


def test_binary_f1_scores_the_positive_class():
    y = np.array([1, 1, 1, 1, 0, 0, 0, 0])
    proba1 = np.array([0.9, 0.9, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1])
    proba = np.column_stack([1 - proba1, proba1])
    # positive class: precision 1, recall 1/2 -> 2/3; negative class: 4/6 and 1 -> 0.8
    assert get_metric("f1", "binary").score(y, proba) == pytest.approx(2 / 3)
    assert get_metric("f1_macro", "binary").score(y, proba) == pytest.approx((2 / 3 + 0.8) / 2)


MC_LABELS = P_MC.argmax(axis=1)


@pytest.mark.parametrize("name, expected", [
    ("roc_auc", skm.roc_auc_score(Y_MC, P_MC, multi_class="ovr")),
    ("log_loss", skm.log_loss(Y_MC, P_MC)),
    ("accuracy", skm.accuracy_score(Y_MC, MC_LABELS)),
    ("balanced_accuracy", skm.balanced_accuracy_score(Y_MC, MC_LABELS)),
    ("f1", skm.f1_score(Y_MC, MC_LABELS, average="macro")),
    ("f1_macro", skm.f1_score(Y_MC, MC_LABELS, average="macro")),
])
def test_multiclass_scores_match_sklearn(name, expected):
    assert get_metric(name, "multiclass").score(Y_MC, P_MC) == pytest.approx(expected)


def test_log_loss_with_a_class_absent_from_y_true():
    # a validation fold may hold only some classes; the column count says how many there are
    y = np.array([0, 0, 1, 1])
    proba = np.array([[0.7, 0.2, 0.1], [0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.1, 0.8, 0.1]])
    expected = skm.log_loss(y, proba, labels=[0, 1, 2])
    assert get_metric("log_loss", "multiclass").score(y, proba) == pytest.approx(expected)


@pytest.mark.parametrize("name, expected", [
    ("rmse", math.sqrt(np.mean((Y_REG - P_REG) ** 2))),
    ("mae", np.mean(np.abs(Y_REG - P_REG))),
    ("r2", skm.r2_score(Y_REG, P_REG)),
])
def test_regression_scores_match_sklearn(name, expected):
    assert get_metric(name, "regression").score(Y_REG, P_REG) == pytest.approx(expected)


def test_scores_accept_lists():
    assert get_metric("mae", "regression").score([1.0, 2.0], [2.0, 2.0]) == pytest.approx(0.5)


def test_perfect_predictions():
    onehot = np.eye(2)[Y_BIN]
    assert get_metric("roc_auc", "binary").score(Y_BIN, onehot) == 1.0
    assert get_metric("accuracy", "binary").score(Y_BIN, onehot) == 1.0
    assert get_metric("log_loss", "binary").score(Y_BIN, onehot) < 1e-6
    assert get_metric("rmse", "regression").score(Y_REG, Y_REG) == 0.0
    assert get_metric("r2", "regression").score(Y_REG, Y_REG) == 1.0


@pytest.mark.parametrize("task, name", [
    ("binary", "roc_auc"), ("multiclass", "log_loss"), ("regression", "rmse")])
def test_auto_metric(task, name):
    assert get_metric("auto", task).name == name


@pytest.mark.parametrize("name", ["roc_auc", "log_loss", "accuracy", "f1"])
def test_classification_metric_on_regression(name):
    with pytest.raises(InputError) as info:
        get_metric(name, "regression")
    assert name in str(info.value) and "regression" in str(info.value)


@pytest.mark.parametrize("task", ["binary", "multiclass"])
def test_regression_metric_on_classification(task):
    with pytest.raises(InputError, match="rmse"):
        get_metric("rmse", task)


def test_unknown_metric():
    with pytest.raises(InputError, match="'auc'"):
        get_metric("auc", "binary")


def test_is_better_respects_direction():
    auc = get_metric("roc_auc", "binary")
    loss = get_metric("log_loss", "binary")
    rmse = get_metric("rmse", "regression")
    assert auc.is_better(0.9, 0.8) and not auc.is_better(0.8, 0.9)
    assert loss.is_better(0.2, 0.3) and not loss.is_better(0.3, 0.2)
    assert rmse.is_better(1.0, 2.0) and not rmse.is_better(2.0, 1.0)
    # a tie is not an improvement, whichever way is up
    assert not auc.is_better(0.5, 0.5) and not loss.is_better(0.5, 0.5)
    # anything real beats the worst score
    assert auc.is_better(0.0, auc.worst()) and loss.is_better(100.0, loss.worst())


def test_all_scores_for_a_task():
    scores = all_scores("regression", Y_REG, P_REG)
    assert set(scores) == {"rmse", "mae", "r2"}
    assert scores["rmse"] == pytest.approx(get_metric("rmse", "regression").score(Y_REG, P_REG))
    binary = all_scores("binary", Y_BIN, P_BIN)
    assert set(binary) == {n for n, (_, _, tasks) in EXPECTED.items() if "binary" in tasks}


def test_all_scores_skips_undefined_metrics():
    y = np.zeros(4, dtype=int)  # one class only: roc_auc is undefined
    proba = np.array([[0.9, 0.1], [0.8, 0.2], [0.6, 0.4], [0.3, 0.7]])
    scores = all_scores("binary", y, proba)
    assert "roc_auc" not in scores
    assert all(math.isfinite(v) for v in scores.values())
    assert scores["accuracy"] == pytest.approx(0.75)


def test_an_undefined_score_is_nan_but_an_input_error_is_raised():
    y = np.zeros(10, dtype=int)
    proba = np.column_stack([np.full(10, 0.6), np.full(10, 0.4)])
    assert math.isnan(score_or_nan(get_metric("roc_auc", "binary"), y, proba))  # one class: undefined

    def refuses(y_true, prediction):
        raise InputError("a prediction column is missing")

    metric = Metric("strict", True, True, ("binary",), refuses)
    with pytest.raises(InputError, match="column is missing"):
        score_or_nan(metric, y, proba)


def test_binary_f1_scores_the_positive_class_it_is_given():
    y = np.array([0, 0, 0, 0, 1, 1])
    proba = np.array([[0.9, 0.1], [0.8, 0.2], [0.7, 0.3], [0.4, 0.6], [0.3, 0.7], [0.6, 0.4]])
    labels = proba.argmax(axis=1)
    for positive in (0, 1):
        f1 = get_metric("f1", "binary", positive)
        assert f1.score(y, proba) == pytest.approx(skm.f1_score(y, labels, pos_label=positive))
    assert get_metric("f1", "binary", 0).score(y, proba) != get_metric("f1", "binary", 1).score(y, proba)


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_lean_scores_equal_the_checked_ones(task):
    """The ensemble selection's lean scores give what the checked scikit-learn ones give,
    ties among the scores and probabilities of 0 and 1 included."""
    rng = np.random.default_rng(0)
    n, k = 500, 2 if task == "binary" else 4
    if task == "regression":
        y, prediction = rng.normal(size=n), rng.normal(size=n)
    else:
        y = rng.integers(0, k, size=n)
        prediction = rng.dirichlet(np.ones(k), size=n).round(2)  # ties
        prediction[:5] = np.eye(k)[(y[:5] + 1) % k]  # sure and wrong: log loss clips
        prediction /= prediction.sum(axis=1, keepdims=True)
    applicable = []
    for name in metric_names():
        try:
            applicable.append(get_metric(name, task))
        except InputError:  # not a metric of this task
            pass
    lean = [metric for metric in applicable if metric.lean_fn is not None]
    assert {m.name for m in lean} == ({"rmse", "mae"} if task == "regression" else {"roc_auc", "log_loss", "accuracy"})
    for metric in lean:
        assert metric.lean_score(y, prediction) == pytest.approx(metric.score(y, prediction), rel=1e-12), metric.name


def test_lean_roc_auc_is_nan_on_rows_of_one_class():
    metric = get_metric("roc_auc", "binary")
    assert np.isnan(metric.lean_score(np.zeros(4, dtype=int), np.full((4, 2), 0.5)))
