"""Model families (spaces, defaults, fit/predict on every task) and one cross-validated trial."""

from __future__ import annotations

import json
import math
from functools import cache

import numpy as np
import pandas as pd
import pytest
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from sklearn.datasets import make_classification, make_regression
from sklearn.metrics import r2_score, roc_auc_score
from threadpoolctl import threadpool_limits

from automl.data import prepare_training
from automl.errors import InputError
from automl.metrics import get_metric
from automl.models import ModelFamily, family_names, get_family
from automl.models.base import ALL_TASKS
from automl.prediction import predict_matrix
from automl.preprocessing import category_codes
from automl.trial import COMPLETE, FAILED, PRUNED, TrialSpec, Workload, run_trial
from automl.validation import make_folds

N_TRAIN = 160
N_CLASSES = {"binary": 2, "multiclass": 3, "regression": 0}


@pytest.fixture(autouse=True)
def one_thread():
    """As in a worker (see run_trial): OpenMP pools of LightGBM and scikit-learn, left to
    their defaults side by side, can spin against each other and slow small fits a lot."""
    with threadpool_limits(limits=1):
        yield


@cache
def task_data(task: str) -> tuple[pd.DataFrame, np.ndarray]:
    """Model-ready features like FeatureSchema makes them: floats with some NaN,
    and a pandas categorical with fixed levels (some missing)."""
    if task == "regression":
        X, y = make_regression(n_samples=220, n_features=6, n_informative=4, noise=5.0,
                               random_state=0)
    else:
        X, y = make_classification(n_samples=220, n_features=6, n_informative=4,
                                   n_redundant=0, n_classes=N_CLASSES[task],
                                   class_sep=1.5, random_state=0)
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(X.shape[1])])
    frame.loc[rng.random(len(frame)) < 0.15, "x5"] = np.nan
    levels = np.where(X[:, 0] > 0, "hi", "lo").astype(object)
    levels[rng.random(len(frame)) < 0.3] = "mid"
    levels[rng.random(len(frame)) < 0.1] = None
    frame["cat"] = pd.Categorical(levels, categories=["hi", "lo", "mid", "never"])
    return frame, y


def family_tasks() -> list[tuple[str, str]]:
    return [(name, task) for name in family_names() for task in get_family(name).tasks]


def fit_default(name: str, task: str):
    """A freshly fitted estimator with the family's default configuration."""
    X, y = task_data(task)
    family = get_family(name)
    estimator = family.build(family.default_params(task), task, n_jobs=1, seed=0)
    estimator.fit(X.iloc[:N_TRAIN], y[:N_TRAIN])
    return estimator, X.iloc[N_TRAIN:], y[N_TRAIN:]


@cache
def fitted_default(name: str, task: str):
    """Shared between tests that only predict (none of them refits or changes it)."""
    return fit_default(name, task)


def contains(dist: BaseDistribution, value) -> bool:
    if isinstance(dist, CategoricalDistribution):
        return value in dist.choices
    assert isinstance(dist, (IntDistribution, FloatDistribution))
    if isinstance(dist, IntDistribution) and not isinstance(value, (int, np.integer)):
        return False
    return dist.low <= value <= dist.high and dist._contains(dist.to_internal_repr(value))


# --- the registry ---------------------------------------------------------------------------------

def test_registry():
    names = family_names()
    assert names[0] == "lightgbm"
    assert {"lightgbm", "hist_gradient_boosting", "linear", "extra_trees", "random_forest",
            "knn"} <= set(names)
    assert len(names) == len(set(names))
    for name in names:
        family = get_family(name)
        assert isinstance(family, ModelFamily)
        assert family.name == name
        assert family.relative_cost > 0
        assert set(family.tasks) <= set(ALL_TASKS) and family.tasks
        assert family.supports(family.tasks[0])
        assert not family.supports("ranking")
    with pytest.raises(KeyError):
        get_family("no-such-family")


@pytest.mark.parametrize("name, task", family_tasks())
def test_portfolio_lies_in_search_space(name, task):
    family = get_family(name)
    space = family.search_space(task)
    portfolio = family.portfolio(task)
    assert space and portfolio and family.default_params(task) == portfolio[0]
    assert len({json.dumps(config, sort_keys=True) for config in portfolio}) == len(portfolio), "a repeat"
    for config in portfolio:
        assert set(config) == set(space), set(config) ^ set(space)
        for key, value in config.items():
            assert isinstance(space[key], BaseDistribution)
            assert contains(space[key], value), (key, value, space[key])


@pytest.mark.parametrize("name, task", family_tasks())
def test_every_portfolio_config_fits_and_predicts(name, task):
    family = get_family(name)
    X, y = task_data(task)
    for config in family.portfolio(task):
        params = {**config, "n_estimators": min(config["n_estimators"], 20)} if "n_estimators" in config else config
        estimator = family.build(params, task, n_jobs=1, seed=0).fit(X, y)
        assert np.isfinite(predict_matrix(estimator, X, task, len(np.unique(y)) if task != "regression" else 0)).all()


@pytest.mark.parametrize("name, task", family_tasks())
def test_space_is_buildable_at_its_corners(name, task):
    """Every parameter of the space is one the estimator accepts."""
    family = get_family(name)
    params = dict(family.default_params(task))
    for key, dist in family.search_space(task).items():
        if isinstance(dist, CategoricalDistribution):
            params[key] = dist.choices[-1]
        else:  # the small integers and the large rates, which keep the fit short
            params[key] = dist.low if isinstance(dist, IntDistribution) else dist.high
    if "n_estimators" in params:
        params["n_estimators"] = min(params["n_estimators"], 10)
    X, y = task_data(task)
    estimator = family.build(params, task, n_jobs=1, seed=0)
    estimator.fit(X.iloc[:N_TRAIN], y[:N_TRAIN])
    assert len(estimator.predict(X.iloc[N_TRAIN:])) == len(X) - N_TRAIN


# --- fit and predict with the defaults --------------------------------------------------------------

@pytest.mark.parametrize("name, task", family_tasks())
def test_default_fit_predict(name, task):
    estimator, X_test, y_test = fitted_default(name, task)
    n = len(X_test)
    k = N_CLASSES[task]
    labels = estimator.predict(X_test)
    assert labels.shape == (n,)
    matrix = predict_matrix(estimator, X_test, task, k)
    if task == "regression":
        assert matrix.shape == (n,) and np.isfinite(matrix).all()
        # better than predicting the mean
        assert r2_score(y_test, matrix) > 0.3
    else:
        assert set(np.unique(labels)) <= set(range(k))
        assert matrix.shape == (n, k)
        assert np.isfinite(matrix).all() and (matrix >= 0).all() and (matrix <= 1).all()
        np.testing.assert_allclose(matrix.sum(axis=1), 1.0, atol=1e-6)
        # better than the majority class
        majority = np.bincount(y_test).max() / n
        assert (matrix.argmax(axis=1) == y_test).mean() > majority
        assert np.array_equal(labels, matrix.argmax(axis=1))


@pytest.mark.parametrize("name, task", family_tasks())
def test_predicts_rows_with_unusual_values(name, task):
    """Missing numbers, missing categories, and a level never seen in training."""
    estimator, X_test, _ = fitted_default(name, task)
    odd = X_test.head(4).copy()
    odd["x5"] = np.nan
    odd["cat"] = pd.Categorical([None, "never", "hi", None], categories=odd["cat"].cat.categories)
    matrix = predict_matrix(estimator, odd, task, N_CLASSES[task])
    assert len(matrix) == 4 and np.isfinite(matrix).all()


@pytest.mark.parametrize("name", family_names())
def test_same_seed_same_predictions(name):
    first, X_test, _ = fitted_default(name, "binary")
    second, _, _ = fit_default(name, "binary")
    np.testing.assert_allclose(predict_matrix(first, X_test, "binary", 2),
                               predict_matrix(second, X_test, "binary", 2))


def single_kind_frames():
    rng = np.random.default_rng(3)
    numeric = pd.DataFrame({"n": rng.normal(size=120)})
    labels = (numeric["n"] > 0).to_numpy().astype(int)
    few = pd.DataFrame({"c": pd.Categorical(np.where(labels == 1, "a", rng.choice(["b", "c"], 120)),
                                            categories=["a", "b", "c"])})
    levels = [f"l{i:03d}" for i in range(300)]  # more levels than HistGradientBoosting takes
    many = pd.DataFrame({"c": pd.Categorical(
        [levels[2 * i + label] for i, label in enumerate(labels)], categories=levels)})
    return {"numeric only": numeric, "categorical only": few, "300 levels": many}, labels


@pytest.mark.parametrize("kind", ["numeric only", "categorical only", "300 levels"])
@pytest.mark.parametrize("name", family_names())
def test_single_kind_feature_frames(name, kind):
    frames, y = single_kind_frames()
    X = frames[kind]
    family = get_family(name)
    params = {**family.default_params("binary"), **FAST.get(name, {})}
    estimator = family.build(params, "binary", n_jobs=1, seed=0).fit(X, y)
    matrix = predict_matrix(estimator, X, "binary", 2)
    assert matrix.shape == (len(X), 2)
    np.testing.assert_allclose(matrix.sum(axis=1), 1.0, atol=1e-6)


def test_default_lightgbm_beats_trivial_baseline():
    X, y = make_classification(n_samples=400, n_features=8, n_informative=5, n_redundant=0,
                               random_state=1)
    X = pd.DataFrame(X, columns=[f"f{i}" for i in range(8)])
    family = get_family("lightgbm")
    estimator = family.build(family.default_params("binary"), "binary", n_jobs=1, seed=0)
    estimator.fit(X.iloc[:300], y[:300])
    auc = roc_auc_score(y[300:], predict_matrix(estimator, X.iloc[300:], "binary", 2)[:, 1])
    assert auc > 0.85


def test_only_the_mlp_asks_for_a_gpu():
    assert [name for name in family_names() if get_family(name).uses_gpu] == ["mlp"]


def test_predict_matrix_places_columns_by_class_code():
    """A fold that lacks a class still yields k columns, each in its class's place."""
    X, y = task_data("multiclass")
    keep = y != 1
    family = get_family("linear")
    estimator = family.build(family.default_params("multiclass"), "multiclass", 1, 0)
    estimator.fit(X[keep], y[keep])
    matrix = predict_matrix(estimator, X, "multiclass", 3)
    assert matrix.shape == (len(X), 3)
    assert (matrix[:, 1] == 0).all()
    np.testing.assert_allclose(matrix[:, [0, 2]], estimator.predict_proba(X))


# --- one trial ---------------------------------------------------------------------------------------

@cache
def training_data(task: str):
    rng = np.random.default_rng(0)
    if task == "regression":
        X, y = make_regression(n_samples=150, n_features=5, noise=1.0, random_state=0)
        target = y
    else:
        X, y = make_classification(n_samples=150, n_features=5, n_informative=3,
                                   n_classes=N_CLASSES[task], class_sep=1.5, random_state=0)
        target = np.array(["ant", "bee", "cow"], dtype=object)[y]
    frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(5)])
    frame["color"] = rng.choice(["red", "green", "blue"], size=len(frame))
    frame["target"] = target
    data = prepare_training(frame, "target")
    assert data.task == task
    return data, make_folds(data.task, data.y, 5, seed=0)


FAST = {"lightgbm": {"n_estimators": 50}, "random_forest": {"n_estimators": 30},
        "extra_trees": {"n_estimators": 30}}


def trial_spec(name: str, task: str, **params) -> TrialSpec:
    base = {**get_family(name).default_params(task), **FAST.get(name, {}), **params}
    return TrialSpec(number=3, family=name, params=base, metric="auto", seed=0, pruning=None)


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_run_trial_complete(task):
    data, folds = training_data(task)
    spec = trial_spec("lightgbm", task)
    outcome = run_trial(Workload(data, folds), spec)
    assert outcome.status == COMPLETE, outcome.error
    assert outcome.error is None
    assert outcome.number == 3 and outcome.family == "lightgbm" and outcome.params == spec.params
    assert len(outcome.fold_scores) == 5
    assert all(math.isfinite(s) for s in outcome.fold_scores)
    assert outcome.cv_score == pytest.approx(np.mean(outcome.fold_scores))
    assert outcome.cv_std == pytest.approx(np.std(outcome.fold_scores))
    k = data.target.n_classes
    assert outcome.oof.shape == ((len(data.y),) if task == "regression" else (len(data.y), k))
    assert not np.isnan(outcome.oof).any()
    # the fold scores are the metric on the out-of-fold predictions
    metric = get_metric("auto", task)
    for (_, valid), score in zip(folds.splits, outcome.fold_scores, strict=True):
        assert metric.score(data.y[valid], outcome.oof[valid]) == pytest.approx(score)
    assert outcome.fit_time_s > 0 and outcome.predict_time_s > 0
    assert outcome.ended_at >= outcome.started_at > 0


def test_run_trial_learns_something():
    data, folds = training_data("binary")
    outcome = run_trial(Workload(data, folds), trial_spec("linear", "binary"))
    assert outcome.status == COMPLETE
    assert outcome.cv_score > 0.8  # roc_auc


def test_run_trial_time_folds_leave_uncovered_rows_nan():
    data, _ = training_data("regression")
    times = np.arange(len(data.y))
    folds = make_folds("regression", data.y, 3, seed=0, times=times)
    outcome = run_trial(Workload(data, folds), trial_spec("linear", "regression"))
    assert outcome.status == COMPLETE
    assert len(outcome.fold_scores) == 3
    assert np.isnan(outcome.oof[~folds.covered]).all()
    assert not np.isnan(outcome.oof[folds.covered]).any()


@pytest.mark.parametrize("name, params, message", [
    ("knn", {"n_neighbors": 0}, "n_neighbors"),
    ("linear", {"C": -1.0}, "C"),
    ("random_forest", {"no_such_parameter": 1}, "no_such_parameter"),
])
def test_run_trial_failure_is_recorded_not_raised(name, params, message):
    data, folds = training_data("binary")
    outcome = run_trial(Workload(data, folds), trial_spec(name, "binary", **params))
    assert outcome.status == FAILED
    assert outcome.error and message in outcome.error
    assert "\n" not in outcome.error and len(outcome.error) <= 500
    assert outcome.traceback.startswith("Traceback") and outcome.traceback.endswith(outcome.error)
    assert outcome.oof is None
    assert outcome.fold_scores == [] and math.isnan(outcome.cv_score)  # fails on the first fold


def test_run_trial_wrong_metric_for_task_fails_cleanly():
    data, folds = training_data("regression")
    spec = TrialSpec(number=0, family="linear", params={"alpha": 1.0}, metric="roc_auc", seed=0)
    outcome = run_trial(Workload(data, folds), spec)
    assert outcome.status == FAILED
    assert InputError.__name__ in outcome.error and "roc_auc" in outcome.error


class StopAfterFirstFold:
    """A stand-in for the search's pruning link: records reports, and prunes at step 1
    (after the second fold: the first report is answered "go on")."""

    def __init__(self):
        self.reports: list[tuple[int, float]] = []

    def connect(self):
        def report(step: int, value: float) -> bool:
            self.reports.append((step, value))
            return step >= 1

        return report


def test_run_trial_pruned():
    data, folds = training_data("binary")
    link = StopAfterFirstFold()
    spec = TrialSpec(number=1, family="linear", params={"C": 1.0}, metric="roc_auc", seed=0,
                     pruning=link)
    outcome = run_trial(Workload(data, folds), spec)
    assert outcome.status == PRUNED
    assert len(outcome.fold_scores) == 2
    assert [step for step, _ in link.reports] == [0, 1]
    assert link.reports[0][1] == pytest.approx(outcome.fold_scores[0])
    assert link.reports[1][1] == pytest.approx(np.mean(outcome.fold_scores))
    assert outcome.oof is None


def test_category_codes_replace_categories_and_share_the_other_columns():
    X = pd.DataFrame({"a": np.arange(4.0), "b": pd.Categorical(["x", None, "y", "x"])})
    out = category_codes(X)
    np.testing.assert_array_equal(out["b"].to_numpy(), [0.0, np.nan, 1.0, 0.0])
    assert isinstance(X["b"].dtype, pd.CategoricalDtype)  # the input is left as it was
    assert np.shares_memory(out["a"].to_numpy(), X["a"].to_numpy())  # not copied: a fold's rows are large
