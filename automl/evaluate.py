"""Scoring a saved model on labelled data: ``automl evaluate`` and the holdout of a fit."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import confusion_matrix

from automl.artifact import Predictor
from automl.errors import InputError
from automl.metrics import all_scores


def labelled_rows(predictor: Predictor, frame: pd.DataFrame, source: str) -> pd.DataFrame:
    """The rows of ``frame`` that have a target value; refuses a frame without the target column."""
    if predictor.target_name not in frame.columns:
        raise InputError(f"{source} has no target column '{predictor.target_name}'")
    labelled = frame[frame[predictor.target_name].notna()]
    if labelled.empty:
        raise InputError(f"{source} has no rows with a target value")
    return labelled


def evaluate(predictor: Predictor, frame: pd.DataFrame, source: str = "the data") -> dict[str, Any]:
    """The run's metric and every other metric of the task on ``frame``'s labelled rows;
    for classification also the confusion matrix (rows: true class, columns: predicted)."""
    labelled = labelled_rows(predictor, frame, source)
    y = predictor.target.encode(labelled[predictor.target_name])
    prediction = predictor.predict_matrix(labelled)
    return scores_of(predictor, y, prediction)


def scores_of(predictor: Predictor, y: np.ndarray, prediction: np.ndarray) -> dict[str, Any]:
    scores = all_scores(predictor.task, y, prediction)
    result: dict[str, Any] = {"metric": predictor.metric, "score": scores.get(predictor.metric), "rows": len(y),
                              "scores": scores}
    if predictor.task != "regression":
        labels = np.arange(predictor.target.n_classes)
        matrix = confusion_matrix(y, np.argmax(prediction, axis=1), labels=labels)
        result["confusion_matrix"] = {"labels": predictor.class_names,
                                      "matrix": matrix.tolist()}
    return result
