"""Predicting a file of any size: ``automl predict`` reads it in chunks, predicts each
and appends it to the output, so memory is bounded by a chunk, not by the file.
Output rows keep the input's order; ``id_column`` is passed through to the output.
Given a Ray cluster's address, the chunks are predicted by its workers, a few per
worker in flight at a time (memory stays bounded), and written in input order."""

from __future__ import annotations

from collections import deque
from pathlib import Path
from typing import Any, TextIO

import pandas as pd

from automl.artifact import Predictor
from automl.data import CHUNK_ROWS, table_chunks
from automl.errors import InputError


def predictions(predictor: Predictor, rows: pd.DataFrame, proba: bool, id_column: str | None = None,
                source: str = "the data") -> pd.DataFrame:
    """One output row per input row: the label (or each class's probability), after the id."""
    if id_column is not None and id_column not in rows.columns:
        raise InputError(f"--id column '{id_column}' is not in {source}")
    features = rows
    if id_column is not None and predictor.schema.unknown_columns(rows[[id_column]]):
        features = rows.drop(columns=[id_column])  # asked for by name: no warning that the model ignores it
    if proba:
        result = predictor.predict_proba(features)
    else:
        result = pd.DataFrame({predictor.target_name: predictor.predict(features)})
    if id_column is not None:
        result.insert(0, id_column, rows[id_column].to_numpy())
    return result


def predict_file(predictor: Predictor, data: Path, out: TextIO, proba: bool = False,
                 id_column: str | None = None, chunk_rows: int = CHUNK_ROWS) -> int:
    """Write ``data``'s predictions to ``out`` as CSV, chunk by chunk; returns the rows written."""
    written = 0
    for chunk in table_chunks(data, chunk_rows):
        written += _write(predictions(predictor, chunk, proba, id_column, str(data)), out, written)
    return written


CHUNKS_IN_FLIGHT_PER_SLOT = 2
"""Chunks sent ahead per worker slot: one predicting, one waiting, so a slot never idles
while the driver reads or writes; more would only hold more chunks in memory."""


def predict_file_on_ray(predictor: Predictor, data: Path, out: TextIO, address: str, proba: bool = False,
                        id_column: str | None = None, chunk_rows: int = CHUNK_ROWS) -> int:
    """``predict_file`` with the chunks predicted as Ray tasks on the cluster at ``address``
    (the model sent to its object store once); returns the rows written."""
    from automl.execution.ray_backend import RayExecutor

    written = 0
    with RayExecutor(address=address) as session:
        model = session.put(predictor)
        pending: deque = deque()
        window = CHUNKS_IN_FLIGHT_PER_SLOT * session.slots
        for chunk in table_chunks(data, chunk_rows):
            pending.append(session.submit(predictions, model, chunk, proba, id_column, str(data)))
            if len(pending) >= window:
                written += _write(_result(session, pending.popleft()), out, written)
        while pending:
            written += _write(_result(session, pending.popleft()), out, written)
    return written


def _result(session: Any, handle: Any) -> pd.DataFrame:
    """A chunk's predictions; a chunk the model refuses (a missing column, a wrong type) is
    the same one-line input error as without Ray, not Ray's wrapped traceback."""
    try:
        return session.result(handle)[0]
    except InputError as refused:  # Ray raises the task's error as an instance of its class too
        raise InputError(str(getattr(refused, "cause", refused))) from None


def _write(frame: pd.DataFrame, out: TextIO, written: int) -> int:
    """Append ``frame`` to the CSV in ``out`` (its header only first); returns its rows."""
    frame.to_csv(out, index=False, header=written == 0)
    return len(frame)
