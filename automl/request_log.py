"""What a served model was asked (``automl serve --log DIR``): the rows it scored and
its answers, as Parquet files in a folder, and the folder read back as one table
(``automl drift MODEL_DIR DIR``: drift on real traffic).

Rows are buffered and written every FLUSH_ROWS rows or FLUSH_SECONDS, whichever comes
first, and when the server stops; each write is a new file, named by its time and its
writer (each Serve replica writes its own), put in place by a rename so a reader never
sees half a file. When the folder's files pass the size cap, the oldest go.

A file holds the model's columns as it read them (numbers as floats, the rest as
text, so every file has the same types whatever a request sent), then ``_received_at``
(UTC), ``_prediction`` and, for a classifier, ``_proba_<class>`` per class.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd

from automl.data import BOOLEAN, NUMERIC, FeatureSchema
from automl.errors import InputError

FILE_PREFIX = "requests-"
FLUSH_ROWS = 5_000
FLUSH_SECONDS = 5.0
DEFAULT_MAX_MB = 1024
"""The folder's size cap by default (``automl serve --log-max-mb``)."""


class RequestLog:
    """Appends scored requests to Parquet files under ``folder``, at most ``max_bytes`` in all."""

    def __init__(self, folder: Path, schema: FeatureSchema, max_bytes: int = DEFAULT_MAX_MB * 2**20,
                 flush_rows: int = FLUSH_ROWS, flush_seconds: float = FLUSH_SECONDS):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.schema = schema
        self.max_bytes = max_bytes
        self.flush_rows = flush_rows
        self._buffer: list[pd.DataFrame] = []
        self._buffered_rows = 0
        self._written = 0
        self._writer = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._timer = threading.Thread(target=self._flush_every, args=(flush_seconds,), daemon=True,
                                       name="request log")
        self._timer.start()

    def record(self, rows: pd.DataFrame, predictions: np.ndarray, probabilities: pd.DataFrame | None) -> None:
        """Buffer one request's rows with the model's answers (``probabilities``: a classifier's)."""
        logged = self._columns(rows)
        logged["_received_at"] = pd.Timestamp.now(tz="UTC")
        logged["_prediction"] = predictions if np.asarray(predictions).dtype.kind == "f" else [
            str(p) for p in predictions]
        if probabilities is not None:
            for name in probabilities.columns:
                logged[f"_proba_{name}"] = probabilities[name].to_numpy(dtype=float)
        with self._lock:
            self._buffer.append(logged)
            self._buffered_rows += len(logged)
            if self._buffered_rows >= self.flush_rows:
                self._flush()

    def _columns(self, rows: pd.DataFrame) -> pd.DataFrame:
        """The model's columns of ``rows``, with one type each (floats, or text)."""
        columns = {}
        for info in self.schema.used:
            values = rows[info.name] if info.name in rows.columns else pd.Series(np.nan, index=rows.index)
            if info.kind == NUMERIC:
                columns[info.name] = pd.to_numeric(values, errors="coerce").astype(float).to_numpy()
            elif info.kind == BOOLEAN and pd.api.types.is_bool_dtype(values):
                columns[info.name] = values.astype(str).to_numpy(dtype=object)
            else:
                columns[info.name] = values.astype("string").to_numpy(dtype=object, na_value=None)
        return pd.DataFrame(columns)

    def flush(self) -> None:
        with self._lock:
            self._flush()

    def close(self) -> None:
        """Stop the timer and write what is buffered."""
        self._stop.set()
        self._timer.join(timeout=FLUSH_SECONDS * 2)
        self.flush()

    def _flush_every(self, seconds: float) -> None:
        while not self._stop.wait(seconds):
            self.flush()

    def _flush(self) -> None:
        """Write the buffer as one new file (the lock held), then keep the folder under its cap."""
        if not self._buffer:
            return
        table = pd.concat(self._buffer, ignore_index=True)
        self._buffer, self._buffered_rows = [], 0
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        name = f"{FILE_PREFIX}{stamp}-{self._writer}-{self._written:06d}.parquet"
        staged = self.folder / f".{name}.tmp"
        table.to_parquet(staged, index=False)
        os.replace(staged, self.folder / name)
        self._written += 1
        self._keep_under_cap()

    def _keep_under_cap(self) -> None:
        """Remove the oldest files while the folder's files pass ``max_bytes`` (the newest stays)."""
        files = sorted(log_files(self.folder), key=lambda path: path.stat().st_mtime)
        total = sum(path.stat().st_size for path in files)
        for oldest in files[:-1]:
            if total <= self.max_bytes:
                break
            total -= oldest.stat().st_size
            oldest.unlink(missing_ok=True)  # another replica may have removed it first


def log_files(folder: Path) -> list[Path]:
    return sorted(Path(folder).glob(f"{FILE_PREFIX}*.parquet"))


def read_log(folder: Path) -> pd.DataFrame:
    """Every request a server logged in ``folder``, oldest file first, as one table."""
    files = log_files(folder)
    if not files:
        raise InputError(f"{folder} holds no request log files ({FILE_PREFIX}*.parquet, from automl serve --log)")
    return pd.concat([pd.read_parquet(path) for path in files], ignore_index=True)
