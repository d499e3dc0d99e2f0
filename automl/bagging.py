"""Bagged fold models: the k models a trial fit during cross-validation, kept as one.

A trial's fold models are what its out-of-fold predictions came from, so an
ensemble weighted on those predictions is exactly the ensemble that predicts
when its members are the fold models (as AutoGluon bags). Keeping them costs
no fitting time, where a refit on all rows costs one fit per member. Workers
return them serialised, and only while small enough to ship
(MAX_FOLD_MODELS_BYTES): a large forest is refit instead.
"""

from __future__ import annotations

import io
import pickle
from typing import Any

import numpy as np

MAX_FOLD_MODELS_BYTES = 32 * 2**20
"""Fold models of one trial above this size are not kept (they would crowd the object store)."""


class _OverLimit(Exception):
    pass


class _CappedBuffer(io.BytesIO):
    """Bytes that refuse to grow past ``limit``: pickling a model too large to keep stops
    there, instead of first making a whole second copy of it."""

    def __init__(self, limit: int):
        super().__init__()
        self.limit = limit

    def write(self, data) -> int:
        if self.tell() + memoryview(data).nbytes > self.limit:
            raise _OverLimit
        return super().write(data)


class FoldModelPacker:
    """Pickles a trial's fold models one at a time as they are fitted, while their total
    stays within ``limit`` bytes; ``packed`` is None once they pass it (or with no limit).
    The trial then keeps no fold model beyond the one it is using: a large forest held k
    times over would take more memory than the data."""

    def __init__(self, limit: int = MAX_FOLD_MODELS_BYTES):
        self.packed: list[bytes] | None = [] if limit > 0 else None
        self._left = limit

    def add(self, model: Any) -> None:
        if self.packed is None:
            return
        buffer = _CappedBuffer(self._left)
        try:
            pickle.Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(model)
        except _OverLimit:
            self.packed = None
            return
        blob = buffer.getvalue()
        self._left -= len(blob)
        self.packed.append(blob)


def with_threads(model: Any, n_jobs: int) -> Any:
    """``model`` with the thread counts its family set (``n_jobs`` parameters holding a
    number, a pipeline's steps included) raised to ``n_jobs``. Those left at None stay:
    for a ColumnTransformer, say, a number would mean a pool of processes."""
    if hasattr(model, "get_params"):
        params = model.get_params(deep=True)
        keys = [k for k, v in params.items() if (k == "n_jobs" or k.endswith("__n_jobs")) and isinstance(v, int)]
        model.set_params(**{key: n_jobs for key in keys})
    return model


class BaggedModel:
    """Averages the predictions of k fold models; predicts like one estimator.

    ``classes_`` covers every class even when a fold never saw one, so the
    probabilities line up with the run's class order."""

    def __init__(self, models: list[Any], task: str, n_classes: int):
        self.models = models
        self.task = task
        self.classes_ = np.arange(n_classes)

    @classmethod
    def from_packed(cls, packed: list[bytes], task: str, n_classes: int, n_jobs: int = 1) -> BaggedModel:
        """The fold models, set to predict with ``n_jobs`` threads (workers fit them with one)."""
        return cls([with_threads(pickle.loads(blob), n_jobs) for blob in packed], task, n_classes)

    def predict_proba(self, X) -> np.ndarray:
        from automl.trial import predict_matrix

        return np.mean([predict_matrix(m, X, self.task, len(self.classes_)) for m in self.models], axis=0)

    def predict(self, X) -> np.ndarray:
        if self.task == "regression":
            return np.mean([np.asarray(m.predict(X), dtype=float) for m in self.models], axis=0)
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]
