"""Bagged fold models: the k models a trial fit during cross-validation, kept as one.

A trial's fold models are what its out-of-fold predictions came from, so an
ensemble weighted on those predictions is exactly the ensemble that predicts
when its members are the fold models (as AutoGluon bags). Keeping them costs
no fitting time, where a refit on all rows costs one fit per member. Workers
return them serialised, and only while small enough to ship
(MAX_FOLD_MODELS_BYTES): a large forest is refit instead. The bagged model itself,
which ships with a saved model, is ``automl.prediction.BaggedModel``.
"""

from __future__ import annotations

import io
import pickle
from typing import Any

from automl.prediction import BaggedModel  # noqa: F401 -- models saved before it moved unpickle by this name

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
