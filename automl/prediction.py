"""Predicting with fitted models: one estimator's class-aligned matrix, a weighted blend
of members, and the bagged fold models (``BaggedModel``).

The shipped ``Predictor`` needs only this module (and the model libraries), not the
search: a saved model loads and predicts without importing Optuna or the trial code.
"""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np
import pandas as pd


def predict_matrix(estimator, X, task: str, n_classes: int) -> np.ndarray:
    """Probabilities over every class (columns 0..k-1) or regression values."""
    if _is_lightgbm(estimator) and isinstance(X, pd.DataFrame):
        return _booster_matrix(estimator, lightgbm_input(X, estimator.booster_.pandas_categorical), task, n_classes)
    if task == "regression":
        return np.asarray(estimator.predict(X), dtype=float)
    return _class_aligned(estimator, estimator.predict_proba(X), n_classes)


def _class_aligned(estimator, proba: np.ndarray, n_classes: int) -> np.ndarray:
    """``proba``'s columns placed at the classes ``estimator`` saw (a fold may miss one)."""
    full = np.zeros((len(proba), n_classes))
    full[:, np.asarray(estimator.classes_, dtype=int)] = proba
    return full


def _is_lightgbm(estimator) -> bool:
    return type(estimator).__module__.startswith("lightgbm.")


def lightgbm_input(X: pd.DataFrame, categories: list[list] | None) -> np.ndarray:
    """``X`` as the float matrix a LightGBM booster reads: each categorical column as its
    codes in the categories the model was trained with (``booster_.pandas_categorical``;
    unseen and missing values NaN), the others as they are. LightGBM's scikit-learn wrapper
    makes this conversion on every call: predicting one adult row, it took 3.5 ms of each
    fold model's 3.6 ms. Here a bagged member's fold models share one."""
    categories = categories or []  # None: trained on no categorical column
    categorical = [name for name, dtype in zip(X.columns, X.dtypes, strict=True)
                   if isinstance(dtype, pd.CategoricalDtype)]
    if len(categorical) != len(categories):
        raise ValueError(f"{len(categorical)} categorical columns; the model was trained on {len(categories)}")
    matrix = np.empty(X.shape, dtype=np.float64)
    wanted = dict(zip(categorical, categories, strict=True))
    for position, name in enumerate(X.columns):
        values = X[name]
        if name in wanted:
            if list(values.cat.categories) != list(wanted[name]):
                values = values.cat.set_categories(wanted[name])
            codes = values.cat.codes.to_numpy()
            matrix[:, position] = np.where(codes >= 0, codes, np.nan)
        else:
            matrix[:, position] = values.to_numpy(dtype=np.float64)
    return matrix


def _booster_matrix(estimator, matrix: np.ndarray, task: str, n_classes: int) -> np.ndarray:
    """What ``estimator.predict_proba`` (or ``predict``) gives, from its booster on the
    converted ``matrix`` (see ``lightgbm_input``), on the estimator's threads."""
    raw = estimator.booster_.predict(matrix, num_threads=estimator.n_jobs)
    if task == "regression":
        return np.asarray(raw, dtype=float)
    proba = np.column_stack([1.0 - raw, raw]) if raw.ndim == 1 else raw
    return _class_aligned(estimator, proba, n_classes)


def weighted_mean(predictions: list[np.ndarray | None], weights: list[float]) -> np.ndarray | None:
    """The blend of members' predictions, weighted (None when a member has none)."""
    if any(p is None for p in predictions):
        return None
    return sum(w * p for p, w in zip(predictions, weights, strict=True))


def blend(estimators: list[Any], weights: list[float], X, task: str, n_classes: int) -> np.ndarray:
    """The weighted blend of fitted estimators' predictions for ``X``."""
    return weighted_mean([predict_matrix(e, X, task, n_classes) for e in estimators], weights)


def with_threads(model: Any, n_jobs: int) -> Any:
    """``model`` with the thread counts its family set (``n_jobs`` parameters holding a
    number, a pipeline's steps included) raised to ``n_jobs``. Those left at None stay:
    for a ColumnTransformer, say, a number would mean a pool of processes. A BaggedModel's
    fold models each get ``n_jobs``."""
    for fold_model in getattr(model, "models", ()):
        with_threads(fold_model, n_jobs)
    if hasattr(model, "get_params"):
        params = model.get_params(deep=True)
        keys = [k for k, v in params.items() if (k == "n_jobs" or k.endswith("__n_jobs")) and isinstance(v, int)]
        model.set_params(**{key: n_jobs for key in keys})
    return model


class BaggedModel:
    """Averages the predictions of k fold models; predicts like one estimator.

    ``classes_`` covers every class even when a fold never saw one, so the
    probabilities line up with the run's class order."""

    def __init__(self, models: list[Any], task: str, n_classes: int, packed: list[bytes] | None = None):
        self.models = models
        self.task = task
        self.classes_ = np.arange(n_classes)
        self._packed = packed
        """The fold models as the workers pickled them, when they came so: what the model pickles
        as. Pickling them again took 0.85 s for soybean's ten LightGBM fold models (each booster
        rewrites its trees as text), in the end phase of the fit."""

    @classmethod
    def from_packed(cls, packed: list[bytes], task: str, n_classes: int, n_jobs: int = 1) -> BaggedModel:
        """The fold models, set to predict with ``n_jobs`` threads (workers fit them with one)."""
        return cls([with_threads(pickle.loads(blob), n_jobs) for blob in packed], task, n_classes, packed)

    def __getstate__(self) -> dict[str, Any]:
        if self._packed is None:
            return self.__dict__
        return {**self.__dict__, "models": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Loaded, the fold models are unpacked and their bytes let go (a model is loaded to
        predict, and rarely saved again)."""
        if state["models"] is None:
            state["models"] = [pickle.loads(blob) for blob in state["_packed"]]
        self.__dict__.update({**state, "_packed": None})

    def predict_proba(self, X) -> np.ndarray:
        return self._mean_prediction(X)

    def predict(self, X) -> np.ndarray:
        if self.task == "regression":
            return self._mean_prediction(X)
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    def _mean_prediction(self, X) -> np.ndarray:
        """The fold models' mean matrix. LightGBM fold models trained on the same categories
        (always so: the schema fixes them) share one conversion of ``X``."""
        n_classes = len(self.classes_)
        first = self.models[0]
        if (isinstance(X, pd.DataFrame) and all(_is_lightgbm(m) for m in self.models)
                and all(m.booster_.pandas_categorical == first.booster_.pandas_categorical for m in self.models)):
            matrix = lightgbm_input(X, first.booster_.pandas_categorical)
            return np.mean([_booster_matrix(m, matrix, self.task, n_classes) for m in self.models], axis=0)
        return np.mean([predict_matrix(m, X, self.task, n_classes) for m in self.models], axis=0)
