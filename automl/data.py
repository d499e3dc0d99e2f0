"""Loading tables, inferring the task and column kinds, and shaping features.

``FeatureSchema`` is learnt from the training columns and applied to every
later frame (CV folds, refit, prediction), so train and predict see the same
columns, dtypes and category levels. Unseen categories become missing values.
"""

from __future__ import annotations

import csv
import functools
import gzip
import re
import sys
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pandas.api import types as ptypes

from automl.errors import InputError

NUMERIC, CATEGORICAL, DATETIME, BOOLEAN, ID_LIKE, CONSTANT, TEXT = (
    "numeric", "categorical", "datetime", "boolean", "id-like", "constant", "text",
)
DROPPED_KINDS = (ID_LIKE, CONSTANT, TEXT)
DATE_PARTS = ("year", "month", "day", "dayofweek", "dayofyear", "hour")
_DATE_LIKE = re.compile(r"^\s*(\d{4}-\d{1,2}-\d{1,2}|\d{1,2}/\d{1,2}/\d{2,4})([ T]\d{1,2}:\d{2}.*)?\s*$")
MAX_CLASSES_INFERRED = 20
"""An integer target with at most this many values is taken as classification."""
MAX_NAMED = 10
"""Error messages name at most this many columns."""


def named_columns(names: list[str]) -> str:
    """``'a', 'b' and 3 more``: columns named in a message, at most MAX_NAMED of them."""
    shown = ", ".join(f"'{name}'" for name in names[:MAX_NAMED])
    return shown + (f" and {len(names) - MAX_NAMED} more" if len(names) > MAX_NAMED else "")


TABLE_SUFFIXES = (".parquet", ".pq", ".csv", ".txt", ".gz", ".tsv")
CHUNK_ROWS = 100_000
"""Rows ``table_chunks`` reads at a time by default (``automl predict``): large enough that
per-call costs vanish (a chunk of 1M rows x 25 columns takes ~20 MB as read), small
enough to bound memory."""


def load_table(source: str | Path | pd.DataFrame, text_checked: Collection[str] | None = None) -> pd.DataFrame:
    """A DataFrame from a CSV or Parquet path, or the frame itself; refuses what no
    model could use as given (see ``check_table``, which ``text_checked`` is passed to)."""
    if isinstance(source, pd.DataFrame):
        return check_table(source, "the data", text_checked)
    path = _table_path(source)
    with _reading(path):
        if _is_parquet(path):
            frame = pd.read_parquet(path)
        else:
            _check_header(path, _delimiter(path))
            frame = pd.read_csv(path, sep=_delimiter(path), skipinitialspace=True)
    if frame.empty:
        raise InputError(f"{path} holds no rows")
    _check_one_column(path, frame)
    return check_table(frame, str(path), text_checked)


def table_chunks(source: str | Path, rows: int = CHUNK_ROWS) -> Iterator[pd.DataFrame]:
    """A CSV or Parquet file ``rows`` at a time, in order, each chunk read and checked as
    ``load_table`` reads and checks a whole table: memory is bounded by a chunk."""
    path = _table_path(source)
    first = 0
    with _reading(path):
        if _is_parquet(path):
            import pyarrow.parquet as pq

            chunks = (batch.to_pandas() for batch in pq.ParquetFile(path).iter_batches(batch_size=rows))
        else:
            _check_header(path, _delimiter(path))
            chunks = pd.read_csv(path, sep=_delimiter(path), skipinitialspace=True, chunksize=rows)
        for chunk in chunks:
            if first == 0:
                _check_one_column(path, chunk)
            yield check_table(chunk, f"{path} (rows {first + 1} to {first + len(chunk)})")
            first += len(chunk)
    if first == 0:
        raise InputError(f"{path} holds no rows")


def _table_path(source: str | Path) -> Path:
    path = Path(source)
    if not path.is_file():
        raise InputError(f"data file not found: {path}")
    if path.suffix.lower() not in TABLE_SUFFIXES:
        raise InputError(f"unsupported data file type {path.suffix!r} (use .csv or .parquet): {path}")
    return path


def _is_parquet(path: Path) -> bool:
    return path.suffix.lower() in (".parquet", ".pq")


def _delimiter(path: Path) -> str:
    return "\t" if path.suffix.lower() == ".tsv" else ","


@contextmanager
def _reading(path: Path) -> Iterator[None]:
    """What reading ``path`` raises, as one line that names the file and the problem."""
    try:
        yield
    except InputError:
        raise
    except pd.errors.EmptyDataError:
        raise InputError(f"{path} is empty") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{path} is not UTF-8 text (byte {exc.object[exc.start]:#x} at position {exc.start}); "
                         "save it as UTF-8") from None
    except (pd.errors.ParserError, OSError, ValueError) as exc:  # ValueError: pyarrow on a file that is not Parquet
        raise InputError(f"cannot read {path}: {str(exc).splitlines()[0]}") from None


def _check_one_column(path: Path, frame: pd.DataFrame) -> None:
    if frame.shape[1] == 1 and path.suffix.lower() != ".tsv":
        _check_delimiter(path, str(frame.columns[0]))


def release_reader_memory() -> None:
    """Hand back what Arrow's memory pool kept of the frames read from Parquet once they
    are gone: it keeps freed buffers for reuse, and a table read at the start (210 MB of
    1M rows x 25 columns) stayed with the driver for the whole run."""
    if "pyarrow" in sys.modules:
        sys.modules["pyarrow"].default_memory_pool().release_unused()


def _check_header(path: Path, delimiter: str) -> None:
    """Refuse repeated column names, which pandas would quietly rename."""
    opener = gzip.open if path.suffix.lower() == ".gz" else open
    with opener(path, "rt", encoding="utf-8", newline="") as handle:
        header = next(csv.reader(handle, delimiter=delimiter), [])
    names = [name.strip() for name in header]
    repeated = next((name for i, name in enumerate(names) if name in names[:i]), None)
    if repeated is not None:
        raise InputError(f"two columns share the name '{repeated}' in {path}")


def _check_delimiter(path: Path, only_column: str) -> None:
    for other in (";", "\t", "|"):
        if other in only_column:
            raise InputError(f"{path} reads as a single column '{only_column[:40]}': is it delimited by "
                             f"{other!r}? automl reads comma-separated CSV (.tsv for tabs)")


MOSTLY_NUMERIC_SHARE = 0.9
"""A text column whose values are numbers in at least this share of rows is a numeric
column with stray text: refused, naming the text, rather than read as categories."""


def check_table(frame: pd.DataFrame, source: str, text_checked: Collection[str] | None = None) -> pd.DataFrame:
    """Refuse repeated column names, infinite numbers, and numeric columns holding stray text.
    ``text_checked`` names the text columns looked at for stray text (None: all): a model's
    categorical columns may hold any text, and the check costs a pandas pass per column
    (adult's eight took 8 of a single row's 26 ms)."""
    named = frame.columns.astype(str)
    if named.duplicated().any():
        raise InputError(f"two columns share the name '{named[named.duplicated()][0]}' in {source}")
    for name in frame.columns:
        values = frame[name]
        if ptypes.is_float_dtype(values) and np.isinf(values.to_numpy()).any():
            row = int(np.flatnonzero(np.isinf(values.to_numpy()))[0])
            raise InputError(f"column '{name}' holds an infinite value (row {row + 1}) in {source}; "
                             "use a finite number or leave the cell empty")
        if (values.dtype == object or ptypes.is_string_dtype(values)) and (
                text_checked is None or name in text_checked):
            _check_mixed(name, values, source)
    return frame


def _check_mixed(name: str, values: pd.Series, source: str) -> None:
    texts = values.dropna().astype(str)
    if texts.empty:
        return
    counts = texts.value_counts()  # each distinct text parsed once: this runs on every prediction
    numbers = pd.to_numeric(counts.index.to_series(), errors="coerce")
    is_number = numbers.notna().to_numpy()
    if is_number.all() or counts[is_number].sum() / len(texts) < MOSTLY_NUMERIC_SHARE:
        return
    if np.isinf(numbers[is_number].to_numpy(dtype=float)).any():
        raise InputError(f"column '{name}' holds an infinite value in {source}; use a finite number "
                         "or leave the cell empty")
    stray_texts = set(counts.index[~is_number])
    position = int(np.flatnonzero(values.notna() & values.astype(str).isin(stray_texts))[0])
    raise InputError(f"column '{name}' is mostly numeric but holds text such as {values.iloc[position]!r} "
                     f"(row {position + 1}) in {source}; leave missing values empty or clean the column")


def _is_integer_valued(values: pd.Series) -> bool:
    numbers = values.to_numpy(dtype=float)
    return bool(np.all(np.isfinite(numbers)) and np.all(numbers == np.round(numbers)))


def infer_task(y: pd.Series) -> str:
    """binary, multiclass or regression, as a user of AutoGluon or FLAML would expect."""
    y = y.dropna()
    n_unique = y.nunique()
    if n_unique < 2:
        raise InputError(f"target '{y.name}' has fewer than two distinct values")
    if n_unique == 2:
        return "binary"
    if ptypes.is_bool_dtype(y) or not ptypes.is_numeric_dtype(y):
        return "multiclass"
    if _is_integer_valued(y) and n_unique <= MAX_CLASSES_INFERRED:
        return "multiclass"
    return "regression"


def _looks_like_dates(values: pd.Series) -> bool:
    sample = values.dropna().astype(str).head(200)
    return len(sample) > 0 and sample.map(lambda v: bool(_DATE_LIKE.match(v))).mean() >= 0.9


def parse_datetime(values: pd.Series) -> pd.Series:
    if ptypes.is_datetime64_any_dtype(values):
        return values
    return pd.to_datetime(values, errors="coerce", format="mixed")


def infer_kind(values: pd.Series) -> str:
    """The kind of one feature column."""
    if ptypes.is_numeric_dtype(values) and not ptypes.is_bool_dtype(values):
        return column_kinds(values.to_frame())[0][0]  # constant, id-like or numeric
    present = values.dropna()
    n_unique = present.nunique()
    if n_unique <= 1:
        return CONSTANT
    if ptypes.is_bool_dtype(values):
        return BOOLEAN
    if ptypes.is_datetime64_any_dtype(values):
        return DATETIME
    if _looks_like_dates(values):
        return DATETIME
    if len(present) >= 50 and n_unique / len(present) > 0.95:
        strings = present.astype(str)
        return TEXT if strings.str.contains(" ").mean() > 0.5 and strings.str.len().mean() > 20 else ID_LIKE
    return CATEGORICAL


KIND_CHUNK_CELLS = 10_000_000
"""``column_kinds`` sorts numeric columns in chunks of about this many values (80 MB)."""


def column_kinds(X: pd.DataFrame) -> tuple[list[str], list[int]]:
    """Each column's kind (``infer_kind``) and count of distinct present values, in column
    order. Numeric columns are counted together, from one sort of each chunk of them: one
    at a time, pandas took ~1.4 ms a column, seconds for a table of thousands of columns."""
    kinds: list[str] = [""] * X.shape[1]
    distinct: list[int] = [0] * X.shape[1]
    numeric = [j for j, dtype in enumerate(X.dtypes)
               if ptypes.is_numeric_dtype(dtype) and not ptypes.is_bool_dtype(dtype)]
    step = max(1, KIND_CHUNK_CELLS // max(1, len(X)))
    for start in range(0, len(numeric), step):
        chunk = numeric[start:start + step]
        counts, row_ids = _numeric_distinct(X.iloc[:, chunk].to_numpy(dtype=float, na_value=np.nan))
        for j, count, ids in zip(chunk, counts, row_ids, strict=True):
            distinct[j] = int(count)
            kinds[j] = CONSTANT if count <= 1 else ID_LIKE if ids else NUMERIC
    for j in set(range(X.shape[1])) - set(numeric):
        kinds[j] = infer_kind(X.iloc[:, j])
        distinct[j] = int(X.iloc[:, j].nunique(dropna=True))
    return kinds, distinct


def _numeric_distinct(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per column of ``values``: its count of distinct present values, and whether it looks
    like row ids (an integer column of consecutive, all-distinct values, 50 or more: a row
    number, not a feature)."""
    ordered = np.sort(values, axis=0)  # missing values last
    present = (~np.isnan(ordered)).sum(axis=0)
    within = np.arange(1, len(ordered))[:, None] < present[None, :]
    counts = ((ordered[1:] != ordered[:-1]) & within).sum(axis=0) + (present > 0)
    row_ids = np.zeros(values.shape[1], dtype=bool)
    for j in np.flatnonzero((counts == present) & (present >= 50)):
        column = ordered[:present[j], j]
        row_ids[j] = bool(np.all(np.isfinite(column)) and np.all(column == np.round(column))
                          and np.all(np.diff(column) == 1))
    return counts, row_ids


@dataclass
class ColumnInfo:
    name: str
    kind: str
    categories: list[str] = field(default_factory=list)
    date_parts: list[str] = field(default_factory=list)


def _as_strings(values: pd.Series) -> pd.Series:
    missing = values.isna()
    strings = values.astype(str).astype(object)
    strings[missing] = np.nan
    return strings


def _categorical(values: pd.Series, dtype: pd.CategoricalDtype) -> pd.Categorical:
    """``values`` as categories of ``dtype``, compared as text (missing and unseen: NaN):
    what ``pd.Categorical(_as_strings(values), dtype=dtype)`` gives, in a third of its time
    on one row (adult's eight text columns took 4 ms of a single row's 7 ms transform)."""
    codes = dtype.categories.get_indexer(values.astype(str).to_numpy(dtype=object))
    codes[values.isna().to_numpy()] = -1
    return pd.Categorical.from_codes(codes, dtype=dtype)


def _named_by_strings(X: pd.DataFrame) -> pd.DataFrame:
    """Columns named by strings (a frame made from a NumPy array is named 0, 1, ...)."""
    if all(isinstance(name, str) for name in X.columns):
        return X
    renamed = X.rename(columns=str)
    if renamed.columns.duplicated().any():
        raise InputError(f"two columns share the name '{renamed.columns[renamed.columns.duplicated()][0]}'")
    return renamed


TRUE_WORDS, FALSE_WORDS = ("true", "1", "1.0", "yes"), ("false", "0", "0.0", "no")


def _booleans(name: str, values: pd.Series) -> pd.Series:
    """0/1 floats from a bool column, or from its text form in a CSV read later."""
    if ptypes.is_bool_dtype(values):
        return values.astype(float)
    words = _as_strings(values).str.strip().str.lower()
    unknown = values.notna() & ~words.isin(TRUE_WORDS + FALSE_WORDS)
    if unknown.any():
        raise InputError(f"column '{name}' should be true/false; found {values[unknown].iloc[0]!r}")
    return words.isin(TRUE_WORDS).astype(float).where(values.notna())


def _date_parts(stamps: pd.Series) -> dict[str, pd.Series]:
    parts = {
        "year": stamps.dt.year, "month": stamps.dt.month, "day": stamps.dt.day,
        "dayofweek": stamps.dt.dayofweek, "dayofyear": stamps.dt.dayofyear, "hour": stamps.dt.hour,
    }
    return {name: part.astype(float) for name, part in parts.items()}


@dataclass
class FeatureSchema:
    """What the model expects: input columns, their kinds, and category levels."""

    columns: list[ColumnInfo]

    @functools.cached_property
    def _category_types(self) -> dict[str, pd.CategoricalDtype]:
        """Each categorical column's dtype, made once (checking its levels costs as much as coding a row)."""
        return {info.name: pd.CategoricalDtype(info.categories) for info in self.columns if info.kind == CATEGORICAL}

    def __getstate__(self) -> dict:
        return {key: value for key, value in self.__dict__.items() if key != "_category_types"}

    @classmethod
    def infer(cls, X: pd.DataFrame, kinds: dict[str, str] | None = None) -> FeatureSchema:
        """The schema of ``X``; ``kinds`` (column name -> kind) overrides the kinds inferred
        here: the run decides them once, on all its rows (``automl.profile``), so what the
        profile reports dropped is what the model drops."""
        X = _named_by_strings(X)
        kinds = dict(kinds or {})
        unknown = [name for name in X.columns if name not in kinds]
        if unknown:  # only the columns ``kinds`` does not name: the profile decided the rest
            kinds.update(zip(unknown, column_kinds(X[unknown])[0], strict=True))
        infos = []
        for name in X.columns:
            kind = kinds[name]
            info = ColumnInfo(str(name), kind)
            if kind == CATEGORICAL:
                info.categories = sorted(_as_strings(X[name]).dropna().unique().tolist())
            elif kind == DATETIME:
                stamps = parse_datetime(X[name])
                parts = _date_parts(stamps)
                info.date_parts = [p for p in DATE_PARTS if parts[p].nunique(dropna=True) > 1]
            infos.append(info)
        if not any(info.kind not in DROPPED_KINDS for info in infos):
            raise InputError("no usable feature columns: every column is constant, an id or text")
        return cls(infos)

    @property
    def used(self) -> list[ColumnInfo]:
        return [info for info in self.columns if info.kind not in DROPPED_KINDS]

    @property
    def numeric_columns(self) -> set[str]:
        return {info.name for info in self.used if info.kind == NUMERIC}

    @property
    def required_columns(self) -> list[str]:
        return [info.name for info in self.used]

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        """Model-ready features: floats, and pandas categoricals with fixed levels."""
        X = _named_by_strings(X)
        missing = [name for name in self.required_columns if name not in X.columns]
        if missing:
            raise InputError(f"{len(missing)} column(s) the model uses are missing from the data: "
                             f"{named_columns(missing)}")
        out: dict[str, pd.Series] = {}
        for info in self.used:
            values = X[info.name]
            if info.kind == CATEGORICAL:
                out[info.name] = pd.Series(_categorical(values, self._category_types[info.name]), index=X.index)
            elif info.kind == DATETIME:
                parts = _date_parts(parse_datetime(values))
                for part in info.date_parts:
                    out[f"{info.name}__{part}"] = parts[part]
            elif info.kind == BOOLEAN:
                out[info.name] = _booleans(info.name, values)
            else:
                out[info.name] = self._numeric(info.name, values)
        return pd.DataFrame(out, index=X.index)

    @staticmethod
    def _numeric(name: str, values: pd.Series) -> pd.Series:
        if ptypes.is_numeric_dtype(values) and not ptypes.is_bool_dtype(values):
            return values.astype(float)
        numbers = pd.to_numeric(values, errors="coerce")
        bad = numbers.isna() & values.notna()
        if bad.any():
            raise InputError(f"column '{name}' should be numeric; found {values[bad].iloc[0]!r}")
        return numbers.astype(float)

    def unknown_columns(self, X: pd.DataFrame, expected: tuple[str, ...] = ()) -> list[str]:
        """Columns of ``X`` the model never saw (``expected`` ones, such as the target, aside)."""
        known = {info.name for info in self.columns} | set(expected)
        return [str(name) for name in X.columns if str(name) not in known]

    def describe(self) -> dict[str, str]:
        return {info.name: info.kind for info in self.columns}

    def categorical_features(self) -> list[str]:
        return [info.name for info in self.used if info.kind == CATEGORICAL]


@dataclass
class TargetEncoder:
    """Maps labels to 0..k-1 for classification; passes numbers through for regression."""

    task: str
    classes: list = field(default_factory=list)
    positive: int | None = None
    """Binary tasks: the code of the class that binary metrics (f1) score as positive."""

    @classmethod
    def fit(cls, y: pd.Series, task: str, positive_class: Any = None) -> TargetEncoder:
        """``positive_class`` (binary only): the positive class; by default the rarer one
        (on a tie, the second in sorted order)."""
        if task == "regression":
            if not ptypes.is_numeric_dtype(y) or ptypes.is_bool_dtype(y):
                raise InputError(f"target '{y.name}' is not numeric, so it cannot be a regression target")
            return cls(task)
        present = y.dropna()
        if ptypes.is_float_dtype(present) and _is_integer_valued(present):
            present = present.astype(int)  # ints read as floats because some labels were missing
        classes = sorted(present.unique().tolist(), key=lambda v: (str(type(v)), v))
        if task == "binary" and len(classes) != 2:
            raise InputError(f"task is binary but target '{y.name}' has {len(classes)} classes")
        if len(classes) < 2:
            raise InputError(f"target '{y.name}' has fewer than two classes")
        classes = [c.item() if hasattr(c, "item") else c for c in classes]
        return cls(task, classes, _positive_code(present, classes, positive_class) if task == "binary" else None)

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    def encode(self, y: pd.Series) -> np.ndarray:
        if self.task == "regression":
            return y.to_numpy(dtype=float)
        index = {label: i for i, label in enumerate(self.classes)}
        unknown = ~y.isin(self.classes)
        if unknown.any():
            raise InputError(f"target '{y.name}' holds a class the model never saw: {y[unknown].iloc[0]!r}")
        return y.map(index).to_numpy(dtype=int)

    def decode(self, codes: np.ndarray) -> np.ndarray:
        return np.asarray(self.classes, dtype=object)[codes]


@dataclass
class TrainingData:
    """Model-ready training data, ready to be put into Ray's object store once."""

    X: pd.DataFrame
    y: np.ndarray
    schema: FeatureSchema
    target: TargetEncoder
    groups: np.ndarray | None = None
    times: np.ndarray | None = None
    n_dropped_rows: int = 0
    sensitive: pd.DataFrame | None = None
    """The ``data.sensitive`` columns of the training rows, as given, for fairness checks."""

    @property
    def task(self) -> str:
        return self.target.task


def check_columns(frame: pd.DataFrame, names: list[str], role: str) -> None:
    for name in names:
        if name not in frame.columns:
            raise InputError(f"{role} column '{name}' is not in the data")


MIN_LABELLED_ROWS = 10


def check_target(frame: pd.DataFrame, target: str, task: str = "auto") -> str:
    """Refuse a target the run cannot learn; returns the task (inferred when "auto")."""
    if target not in frame.columns:
        shown = ", ".join(map(str, list(frame.columns)[:MAX_NAMED]))
        raise InputError(f"target column '{target}' is not in the data (columns: {shown})")
    y = frame[target].dropna()
    if y.empty:
        raise InputError(f"target column '{target}' has no rows with a target value")
    if len(y) < MIN_LABELLED_ROWS:
        raise InputError(f"only {len(y)} row(s) have a target value; need at least {MIN_LABELLED_ROWS}")
    task = infer_task(y) if task == "auto" else task
    TargetEncoder.fit(y, task)  # refuses, say, text labels for a regression
    return task


def _positive_code(present: pd.Series, classes: list, positive_class: Any) -> int:
    """The code of the positive class: the one named (as written in a spec, so compared
    as text too), else the rarer one."""
    if positive_class is None:
        counts = present.value_counts()
        return 0 if counts[classes[0]] < counts[classes[1]] else 1
    for code, label in enumerate(classes):
        if label == positive_class or str(label) == str(positive_class):
            return code
    raise InputError(f"data.positive_class {positive_class!r} is not a class of target '{present.name}' "
                     f"(its classes: {', '.join(map(repr, classes))})")


def time_values(values: pd.Series) -> np.ndarray:
    """A ``data.time`` column as values that order in time: numbers as they are, else dates."""
    return values.to_numpy() if ptypes.is_numeric_dtype(values) else parse_datetime(values).to_numpy()


def prepare_training(frame: pd.DataFrame, target: str, task: str = "auto", drop: list[str] = (),
                     groups: str | None = None, time: str | None = None,
                     sensitive: list[str] = (), positive_class: Any = None,
                     kinds: dict[str, str] | None = None) -> TrainingData:
    """Split features from target, infer kinds (``kinds`` overrides them, see
    ``FeatureSchema.infer``) and task, and encode both."""
    task = check_target(frame, target, task)
    check_columns(frame, list(drop), "data.drop")
    if target in drop:
        raise InputError(f"data.drop lists the target '{target}'; the target is never a feature anyway")
    check_columns(frame, [c for c in (groups, time) if c], "data.groups/data.time")
    check_columns(frame, list(sensitive), "data.sensitive")
    if target in sensitive:
        raise InputError(f"data.sensitive names the target '{target}'; list the columns that define groups")
    if groups and time:
        raise InputError("set data.groups or data.time, not both: folds are either grouped or time-ordered")
    labelled = frame[frame[target].notna()]
    y = labelled[target]
    encoder = TargetEncoder.fit(y, task, positive_class)
    excluded = {target, *drop} | ({groups} if groups else set())
    X = labelled[[c for c in labelled.columns if c not in excluded]]
    if X.shape[1] == 0:
        raise InputError("no feature columns are left after removing target, drop and groups")
    schema = FeatureSchema.infer(X, kinds)
    return TrainingData(
        X=schema.transform(X).reset_index(drop=True),
        y=encoder.encode(y),
        schema=schema,
        target=encoder,
        groups=labelled[groups].to_numpy() if groups else None,
        times=time_values(labelled[time]) if time else None,
        n_dropped_rows=len(frame) - len(labelled),
        sensitive=labelled[list(sensitive)].reset_index(drop=True) if sensitive else None,
    )
