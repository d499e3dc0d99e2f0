"""Predicting a file of any size: ``automl predict`` reads it in chunks, predicts each
and appends it to the output, so memory is bounded by a chunk, not by the file.
Output rows keep the input's order; ``id_column`` is passed through to the output."""

from __future__ import annotations

from pathlib import Path
from typing import TextIO

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
        predictions(predictor, chunk, proba, id_column, str(data)).to_csv(out, index=False, header=written == 0)
        written += len(chunk)
    return written
