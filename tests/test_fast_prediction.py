"""The saved model's prediction paths: threads by batch size, kept out of the saved file."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pandas as pd
import pytest

from automl.artifact import SMALL_BATCH_ROWS, Member, Predictor
from automl.data import prepare_training
from automl.models import get_family
from automl.prediction import BaggedModel, lightgbm_input, predict_matrix


def test_small_batches_predict_on_one_thread_and_large_ones_on_every_core(binary_frame):
    data = prepare_training(binary_frame, "target", "binary")
    family = get_family("lightgbm")
    folds = [family.build({"n_estimators": 20}, data.task, 2, seed).fit(data.X, data.y) for seed in (0, 1)]
    predictor = Predictor(data.schema, data.target, "target", "roc_auc",
                          [Member("lightgbm_0", "lightgbm", {}, 1.0, BaggedModel(folds, data.task, 2))])
    features = binary_frame.drop(columns=["target"])
    one = predictor.predict_proba(features.head(1))
    assert [fold.n_jobs for fold in folds] == [1, 1]
    many = pd.concat([features] * (SMALL_BATCH_ROWS // len(features) + 1))
    batch = predictor.predict_proba(many)
    assert [fold.n_jobs for fold in folds] == [len(os.sched_getaffinity(0))] * 2
    assert batch.iloc[0].tolist() == one.iloc[0].tolist()  # the same prediction whatever the threads
    copy = pickle.loads(pickle.dumps(predictor))
    assert copy._threads is None and copy._controller is None  # this process's settings are not saved


def _categorical_frame(rng, n: int = 400) -> pd.DataFrame:
    return pd.DataFrame({"x": rng.normal(size=n), "colour": rng.choice(["red", "green", "blue"], n),
                         "size": rng.choice(["S", "M", "L", "XL"], n)})


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_lightgbm_members_predict_from_one_conversion_exactly_as_their_wrapper_does(task):
    rng = np.random.default_rng(0)
    frame = _categorical_frame(rng)
    frame.loc[::7, "x"] = np.nan
    signal = frame["x"].fillna(0) + (frame["colour"] == "red") * 2
    frame["target"] = {"binary": (signal > 0.5).astype(int), "multiclass": pd.cut(signal, [-9, 0, 1, 2, 9]).cat.codes,
                       "regression": signal}[task]
    data = prepare_training(frame, "target", task)
    family = get_family("lightgbm")
    k = data.target.n_classes
    blind = data.y != 0 if task == "multiclass" else np.ones(len(data.y), dtype=bool)  # a fold that never saw class 0
    folds = [family.build({"n_estimators": 15, "min_child_samples": 5}, task, 1, seed).fit(data.X[rows], data.y[rows])
             for seed, rows in ((0, slice(None)), (1, blind))]
    new = _categorical_frame(rng, 50).assign(size=lambda f: f["size"].where(f.index % 5 > 0, "XXL"))  # unseen level
    X = data.schema.transform(new.assign(colour=new["colour"].where(new.index % 4 > 0)))  # and missing ones
    by_wrapper = []  # what LightGBM's scikit-learn wrapper predicts, each fold converting the frame itself
    for fold in folds:
        if task == "regression":
            by_wrapper.append(fold.predict(X))
        else:
            by_wrapper.append(np.zeros((len(X), k)))
            by_wrapper[-1][:, fold.classes_] = fold.predict_proba(X)
        np.testing.assert_array_equal(predict_matrix(fold, X, task, k), by_wrapper[-1])
    bagged = BaggedModel(folds, task, k)
    shared = bagged.predict(X) if task == "regression" else bagged.predict_proba(X)
    np.testing.assert_array_equal(shared, np.mean(by_wrapper, axis=0))


def test_a_booster_never_reads_a_frame_with_other_categorical_columns():
    rng = np.random.default_rng(0)
    frame = _categorical_frame(rng).assign(target=lambda f: (f["x"] > 0).astype(int))
    data = prepare_training(frame, "target", "binary")
    model = get_family("lightgbm").build({"n_estimators": 5}, "binary", 1, 0).fit(data.X, data.y)
    with pytest.raises(ValueError, match="1 categorical columns; the model was trained on 2"):
        lightgbm_input(data.X.drop(columns=["size"]).assign(size=0.0), model.booster_.pandas_categorical)
