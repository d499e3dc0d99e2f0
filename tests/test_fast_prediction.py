"""The saved model's prediction paths: threads by batch size, kept out of the saved file."""

from __future__ import annotations

import os
import pickle

import pandas as pd

from automl.artifact import SMALL_BATCH_ROWS, Member, Predictor
from automl.data import prepare_training
from automl.models import get_family
from automl.prediction import BaggedModel


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
    assert [fold.n_jobs for fold in folds] == [os.cpu_count()] * 2
    assert batch.iloc[0].tolist() == one.iloc[0].tolist()  # the same prediction whatever the threads
    copy = pickle.loads(pickle.dumps(predictor))
    assert copy._threads is None and copy._controller is None  # this process's settings are not saved
