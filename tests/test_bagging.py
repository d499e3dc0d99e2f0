"""Bagged fold models: packing under a size limit, averaging, and the final model a fit chooses."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from sklearn.compose import make_column_transformer
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import make_pipeline

from automl import AutoML, bagging, budget
from automl.bagging import FoldModelPacker
from automl.prediction import BaggedModel, predict_matrix, with_threads


def _packed(models, limit):
    packer = FoldModelPacker(limit)
    for model in models:
        packer.add(model)
    return packer.packed


def test_pack_keeps_models_under_the_limit_only():
    models = [LinearRegression().fit([[0.0], [1.0]], [0.0, 2.0]) for _ in range(3)]
    packed = _packed(models, bagging.MAX_FOLD_MODELS_BYTES)
    assert len(packed) == 3 and all(isinstance(blob, bytes) for blob in packed)
    assert _packed(models, limit=len(packed[0]) * 3) == packed  # exactly at the limit
    assert _packed(models, limit=len(packed[0]) * 3 - 1) is None  # the third passes the limit
    assert _packed(models, limit=0) is None  # no limit: none kept
    restored = BaggedModel.from_packed(packed, "regression", 0)
    np.testing.assert_allclose(restored.predict([[3.0]]), [6.0])


def test_a_bagged_model_pickles_as_the_bytes_it_came_as_and_loads_whole(monkeypatch):
    models = [LinearRegression().fit([[0.0], [1.0]], [0.0, 2.0 + i]) for i in range(3)]
    bagged = BaggedModel.from_packed(_packed(models, bagging.MAX_FOLD_MODELS_BYTES), "regression", 0)
    monkeypatch.setattr(LinearRegression, "__reduce_ex__", lambda *_: pytest.fail("a fold model was pickled again"))
    blob = pickle.dumps(bagged)
    monkeypatch.undo()
    loaded = pickle.loads(blob)
    np.testing.assert_allclose(loaded.predict([[1.0]]), bagged.predict([[1.0]]))
    assert loaded._packed is None and len(loaded.models) == 3  # the bytes are let go once unpacked
    np.testing.assert_allclose(pickle.loads(pickle.dumps(loaded)).predict([[1.0]]), [3.0])


def test_with_threads_raises_numeric_thread_counts_only():
    pipeline = make_pipeline(make_column_transformer(("passthrough", [0])), RandomForestClassifier(n_jobs=1))
    with_threads(pipeline, 4)
    params = pipeline.get_params(deep=True)
    assert params["columntransformer__n_jobs"] is None  # a number here would start a pool of processes
    assert [v for k, v in params.items() if k.endswith("n_jobs") and v is not None] == [4]


def test_bagged_probabilities_average_the_folds_and_keep_every_class():
    X, y = make_classification(n_samples=300, n_classes=3, n_informative=4, random_state=0)
    full = LogisticRegression(max_iter=500).fit(X, y)
    no_class_2 = LogisticRegression(max_iter=500).fit(X[y != 2], y[y != 2])  # a fold that never saw class 2
    bagged = BaggedModel([full, no_class_2], "multiclass", n_classes=3)
    proba = predict_matrix(bagged, X, "multiclass", 3)
    expected = (predict_matrix(full, X, "multiclass", 3) + predict_matrix(no_class_2, X, "multiclass", 3)) / 2
    np.testing.assert_allclose(proba, expected)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert (proba[:, 2] <= full.predict_proba(X)[:, 2]).all()  # the blind fold gives class 2 nothing
    np.testing.assert_array_equal(bagged.predict(X), np.argmax(expected, axis=1))


def _fit(tmp_path, frame):
    """A fit on 80% of ``frame`` with the rest as its holdout (``data.test``); returns it and the holdout."""
    holdout = frame.sample(frac=0.2, random_state=0)
    holdout.to_csv(tmp_path / "holdout.csv", index=False)
    model = AutoML({"data": {"test": str(tmp_path / "holdout.csv")}, "hardware": {"backend": "local"}},
                   target="target", max_trials=6,
                   time_budget_s=60, models=["lightgbm", "linear"], seed=0, output=tmp_path / "run", verbose=False)
    return model.fit(frame.drop(index=holdout.index)), holdout


def test_a_fit_bags_the_members_fold_models_when_they_were_kept_and_refits_are_not_cheap(tmp_path, binary_frame,
                                                                                       monkeypatch):
    monkeypatch.setattr(budget, "REFIT_ALL_SHARE", 0.0)  # as where refits are costly
    model, holdout = _fit(tmp_path, binary_frame)
    assert model.summary_["final_model"] == "bagged"
    folds = model.summary_["folds"]["n"]
    for member in model.predictor_.members:
        assert isinstance(member.estimator, BaggedModel) and len(member.estimator.models) == folds
    assert model.summary_["timings"]["final_model_s"] < 1.0  # nothing was fit again
    assert model.score(binary_frame) > 0.95  # roc_auc on rows it has seen: a sane model
    # the holdout score came from the trials' own fold-model predictions: the model agrees
    assert model.summary_["holdout"]["score"] == pytest.approx(model.score(holdout), abs=1e-12)


@pytest.mark.parametrize("kept", [True, False])
def test_members_are_all_refit_where_that_is_cheap_or_their_fold_models_were_not_kept(tmp_path, binary_frame,
                                                                                      monkeypatch, kept):
    if not kept:
        monkeypatch.setattr(bagging, "MAX_FOLD_MODELS_BYTES", 0)  # keep no fold models
    model, holdout = _fit(tmp_path, binary_frame)
    assert model.summary_["final_model"] == "refit"
    assert not any(isinstance(m.estimator, BaggedModel) for m in model.predictor_.members)
    assert model.predict_proba(binary_frame).shape == (len(binary_frame), 2)
    assert model.score(binary_frame) > 0.95
    assert model.summary_["holdout"]["score"] == pytest.approx(model.score(holdout), abs=1e-12)
