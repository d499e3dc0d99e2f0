"""The Python API: fit, predict, score, save/load round trip, determinism."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from automl import AutoML, InputError
from automl.errors import DataWarning

SCORE_COLUMNS = ["rank", "model", "family", "cv_score", "cv_std", "n_trials_family", "params"]


def test_round_trip_fit_save_load_same_predictions(tmp_path, multiclass_frame):
    train = multiclass_frame.sample(frac=0.8, random_state=0)
    test = multiclass_frame.drop(train.index)
    model = AutoML(target="target", time_budget_s=15, max_trials=8, seed=0, output=tmp_path / "run", verbose=False,
                   models=["lightgbm", "linear", "knn", "extra_trees"])  # no torch start-up: test_mlp has it
    model.fit(train)
    labels = model.predict(test)
    proba = model.predict_proba(test)
    assert isinstance(proba, np.ndarray) and list(model.classes_) == ["setosa", "versicolor", "virginica"]
    assert (model.classes_[proba.argmax(axis=1)] == labels).all()  # columns in classes_ order
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert model.n_features_in_ == 4 and list(model.feature_names_in_) == list(test.columns.drop("target"))
    assert (labels == test["target"].to_numpy()).mean() > 0.85
    assert model.score(test) > -0.5  # negated log_loss, the multiclass default: far better than chance (-1.1)
    board = model.leaderboard()
    assert set(SCORE_COLUMNS) <= set(board.columns) and board.loc[0, "rank"] == 1

    model.save(tmp_path / "saved")
    loaded = AutoML.load(tmp_path / "saved")
    np.testing.assert_array_equal(loaded.predict(test), labels)
    np.testing.assert_array_equal(loaded.predict_proba(test), proba)
    assert list(loaded.classes_) == list(model.classes_) and loaded.n_features_in_ == 4
    assert loaded.leaderboard()["model"].tolist() == board["model"].tolist()
    # the run folder itself loads too, and predicts from that folder alone
    np.testing.assert_array_equal(AutoML.load(tmp_path / "run").predict(test), labels)


def test_fit_X_y_regression(tmp_path, regression_frame):
    X, y = regression_frame.drop(columns=["target"]), regression_frame["target"]
    model = AutoML(time_budget_s=15, max_trials=6, models=["lightgbm", "linear"], output=tmp_path / "run",
                   verbose=False)
    model.fit(X, y)
    predictions = model.predict(X)
    assert predictions.shape == (len(X),) and np.isfinite(predictions).all()
    assert set(model.leaderboard()["family"]) <= {"lightgbm", "linear", "ensemble"}
    assert -y.std() < model.score(X, y) < 0  # negated rmse, better than predicting the mean
    assert not hasattr(model, "classes_") and model.n_features_in_ == X.shape[1]


def test_prediction_input_checked_against_schema(tmp_path, binary_frame):
    model = AutoML(target="target", time_budget_s=15, max_trials=4, models=["linear"], output=tmp_path / "run",
                   verbose=False).fit(binary_frame)
    with pytest.raises(InputError, match="mean_radius"):
        model.predict(binary_frame.drop(columns=["mean_radius", "target"]))
    # column order and extra columns do not matter (extra ones are named in a warning)
    shuffled = binary_frame[binary_frame.columns[::-1]].assign(extra=1)
    with pytest.warns(DataWarning, match="'extra'"):
        np.testing.assert_array_equal(model.predict(shuffled), model.predict(binary_frame))


def test_unfitted_model_and_bad_arguments(tmp_path, binary_frame):
    with pytest.raises(InputError, match="not fitted"):
        AutoML().predict(binary_frame)
    with pytest.raises(InputError, match="metric"):
        AutoML(target="target", metric="no_such_metric", output=tmp_path / "a").fit(binary_frame)
    with pytest.raises(InputError, match="not an automl model folder"):
        AutoML.load(tmp_path)


def _leaderboard(tmp_path, frame, name):
    model = AutoML(target="target", time_budget_s=150, max_trials=4, seed=3, output=tmp_path / name,
                   models=["lightgbm", "linear", "knn"],
                   spec={"hardware": {"cpus": 1, "backend": "local"}, "validation": {"folds": 3}}, verbose=False)
    return model.fit(frame).leaderboard()[SCORE_COLUMNS]


def test_same_spec_and_seed_give_the_same_leaderboard_on_one_worker(tmp_path, binary_frame):
    first = _leaderboard(tmp_path, binary_frame, "one")
    second = _leaderboard(tmp_path, binary_frame, "two")
    pd.testing.assert_frame_equal(first, second)
    assert len(first) >= 3  # the trials really ran (max_trials=4, some may be pruned)


def test_tiny_budget_still_returns_a_model_and_reports_the_overrun(tmp_path, binary_frame):
    model = AutoML(target="target", time_budget_s=0.1, models=["linear"], output=tmp_path / "run",
                   verbose=False).fit(binary_frame)
    timings = model.summary_["timings"]  # one trial and writing the outputs alone take longer
    assert model.summary_["over_budget_s"] > 0
    assert model.summary_["over_budget_s"] == pytest.approx(timings["total_s"] - 0.1, abs=1e-3)
    assert model.summary_["trials"]["complete"] >= 1
    assert (model.predict(binary_frame) == binary_frame["target"]).mean() > 0.9
