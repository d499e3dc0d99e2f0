"""``AutoML`` under scikit-learn's own machinery: clone, tags, grid search, cross-validation, pipelines."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone, is_classifier, is_regressor
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import (
    check_estimators_unfitted,
    check_get_params_invariance,
    check_no_attributes_set_in_init,
    check_parameters_default_constructible,
    check_set_params,
)

from automl import AutoML

FAST = {"task": "binary", "time_budget_s": 5, "max_trials": 2, "models": ["linear"], "verbose": False}


@pytest.fixture
def arrays(binary_frame):
    """Five numeric features as a plain ndarray, labels as another."""
    return binary_frame.drop(columns=["target"]).iloc[:, :5].to_numpy(), binary_frame["target"].to_numpy()


# scikit-learn's checks that need no fit. Left out, because every fit is a timed search: those
# fitting many times on tiny random data (check_estimator's fit-based checks, check_fit2d_1sample,
# check_classifiers_train, ...): a one-sample or one-feature table is refused as bad input (exit 2
# semantics, an InputError) by design, and a full check_estimator would take minutes.
@pytest.mark.parametrize("check", [check_no_attributes_set_in_init, check_get_params_invariance, check_set_params,
                                   check_parameters_default_constructible, check_estimators_unfitted])
def test_scikit_learn_checks_that_need_no_fit(check):
    check("AutoML", AutoML(**FAST))


def test_clone_and_tags_follow_the_task():
    model = AutoML(**FAST)
    assert clone(model).get_params() == model.get_params()
    assert is_classifier(model) and is_regressor(AutoML(task="regression"))
    assert not is_classifier(AutoML()) and not is_regressor(AutoML())  # task auto: not known before a fit


def test_grid_search_over_a_pipeline_on_arrays_picks_by_a_higher_is_better_score(arrays, tmp_path, monkeypatch):
    """Clones fitted two at a time (n_jobs=2, in joblib's worker processes) each get their own
    folder; the folds are stratified (AutoML says it is a classifier); the score is a negated
    loss, so the best is the highest."""
    monkeypatch.chdir(tmp_path)  # outputs default to runs/<name>-<time>-<id> under the working folder
    X, y = arrays
    pipeline = make_pipeline(StandardScaler(), AutoML(**{**FAST, "metric": "log_loss"}))
    search = GridSearchCV(pipeline, {"automl__models": [["linear"], ["knn"]]}, cv=2, n_jobs=2).fit(X, y)
    scores = search.cv_results_["mean_test_score"]
    assert (scores < 0).all() and search.best_score_ == scores.max()  # negated log losses
    assert isinstance(search.cv, int) and is_classifier(search.estimator)  # so GridSearchCV stratified
    best = search.best_estimator_[-1]
    assert best.n_features_in_ == 5 and list(best.feature_names_in_) == [f"x{i}" for i in range(5)]
    assert search.best_estimator_.predict_proba(X).shape == (len(y), 2) and set(best.classes_) == {0, 1}
    assert len(list((tmp_path / "runs").iterdir())) == 5  # 2 x 2 folds, then the refit


def test_cross_val_score_stratifies_and_scores_with_the_runs_metric(arrays, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    X, y = arrays
    scores = cross_val_score(AutoML(**FAST), X, y, cv=2)  # roc_auc, the binary default
    assert ((0.9 < scores) & (scores <= 1)).all()


def test_labels_given_as_y_never_overwrite_a_feature_called_target(binary_frame, tmp_path):
    X = binary_frame.drop(columns=["target"]).iloc[:, :4].assign(target=np.arange(len(binary_frame)) % 7)
    model = AutoML(**FAST, output=tmp_path / "run").fit(X, binary_frame["target"].to_numpy())
    assert "target" in model.feature_names_in_ and model.summary_["spec"]["data"]["target"] == "target_"
    assert model.predict(X).shape == (len(X),)
