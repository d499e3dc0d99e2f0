"""The fitted result: schema + target encoding + member models + ensemble weights.

Saved as a folder: ``model.joblib`` (the Predictor, pickled), ``meta.json`` (spec,
versions, metric, schema) so a reader can tell what a model is without
unpickling it, any text files saved beside it (the drift reference), and
``manifest.json``: the SHA-256 of every one of them. Loading checks the manifest
before it unpickles anything and refuses a folder whose files were changed.
The check catches a damaged or edited folder, not a forger who rewrites the
manifest too: load only model folders from a trusted source, as pickles can run
code. The folder is written under a temporary name and renamed into place.
Prediction input is checked against the saved schema.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import platform
import warnings
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
from threadpoolctl import ThreadpoolController

from automl import atomic
from automl.calibration import Temperature
from automl.data import FeatureSchema, TargetEncoder, load_table, named_columns
from automl.errors import DataWarning, InputError
from automl.prediction import blend, with_threads

FORMAT_VERSION = 2
"""2: ``model.joblib`` is a plain pickle, written and read by the C pickler (joblib's pure-
Python one took 4.2 s to save and 3.3 s to load soybean's 19 MB model: the end phase
overran the budget by 8 s); 1: written by joblib.dump, still read."""
READABLE_FORMATS = (1, 2)
SMALL_BATCH_ROWS = 1_000
"""Batches of fewer rows predict on one thread: starting a pool of threads costs more than
it saves on them (on a busy 2-core machine, one row took 420 ms through HistGradient-
Boosting's per-tree OpenMP loop), and a server predicts many small batches at once."""
MODEL_FILE, META_FILE, MANIFEST_FILE = "model.joblib", "meta.json", "manifest.json"
_VERSIONED = ("automl", "scikit-learn", "lightgbm", "optuna", "pandas", "numpy", "ray", "torch")


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in _VERSIONED:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


@dataclass
class Member:
    name: str
    family: str
    params: dict[str, Any]
    """What the estimator was built with (a refit's: the trial's configuration with the sizes
    its early-stopped fold models reached)."""
    weight: float
    estimator: Any
    config: dict[str, Any] | None = None
    """The trial's configuration as the search proposed it (what a retrain starts from);
    None in models saved before it was kept: ``params`` then."""


def usable_cpus() -> int:
    """The cores this process may run on (its CPU affinity: taskset, a container's CPU set)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@dataclass
class Predictor:
    schema: FeatureSchema
    target: TargetEncoder
    target_name: str
    metric: str
    members: list[Member]
    meta: dict[str, Any] = field(default_factory=dict)
    calibration: Temperature | None = None
    """Applied to the blend's probabilities (see ``automl.calibration``); None: as they are."""
    mitigation: Any = None
    """Per-group thresholds applied after the calibration (``automl.mitigation.GroupThresholds``,
    from ``fairness.mitigate``); None: none."""
    _threads: int | None = field(default=None, init=False, repr=False, compare=False)
    _controller: ThreadpoolController | None = field(default=None, init=False, repr=False, compare=False)
    """This process's thread settings (see ``_threads_for``): never saved."""

    @property
    def task(self) -> str:
        return self.target.task

    @property
    def input_columns(self) -> list[str]:
        """The columns rows to predict must have: the features the model uses and, where it
        mitigates bias, the sensitive columns it groups rows by (features or not)."""
        features = self.schema.required_columns
        sensitive = self.mitigation.columns if self.mitigation is not None else []
        return [*features, *(name for name in sensitive if name not in features)]

    def _frame(self, data: pd.DataFrame | str | Path) -> pd.DataFrame:
        frame = load_table(data, text_checked=self.schema.numeric_columns)
        if not isinstance(frame, pd.DataFrame):
            raise InputError(f"expected a pandas DataFrame, got {type(frame).__name__}")
        expected = (self.target_name, *(self.mitigation.columns if self.mitigation is not None else ()))
        unknown = self.schema.unknown_columns(frame, expected=expected)
        if unknown:
            warnings.warn(f"ignoring {len(unknown)} column(s) the model was not trained on: "
                          f"{named_columns(unknown)}", DataWarning, stacklevel=3)
        return frame

    def predict_matrix(self, data: pd.DataFrame | str | Path) -> np.ndarray:
        """Weighted average of the members: probabilities (n, k) or values (n,); calibrated
        and mitigated as the model was made."""
        frame = self._frame(data)
        sensitive = self.mitigation.sensitive_of(frame) if self.mitigation is not None else None
        X = self.schema.transform(frame)
        with self._threads_for(len(X)):
            matrix = blend([m.estimator for m in self.members], [m.weight for m in self.members], X, self.task,
                           self.target.n_classes)
        return self.finished(matrix, sensitive)

    def _threads_for(self, rows: int):
        """Set the members' thread counts for a batch of ``rows``: one for a small batch
        (SMALL_BATCH_ROWS), else the cores this process may use (not those of the machine
        that fit it). Model parameters change only when the count does; the limit on OpenMP and
        BLAS pools comes from a controller made once (threadpoolctl's own context manager
        inspects the loaded libraries on every call: 4 ms)."""
        threads = 1 if rows < SMALL_BATCH_ROWS else usable_cpus()
        if self._threads != threads:
            for member in self.members:
                with_threads(member.estimator, threads)
            self._threads = threads
        if self._controller is None:  # made once the members' libraries are loaded
            self._controller = ThreadpoolController()
        return self._controller.limit(limits=threads)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_threads": None, "_controller": None}

    def calibrated(self, matrix: np.ndarray) -> np.ndarray:
        """The blend's ``matrix`` with its calibration, if it has one."""
        return self.calibration.apply(matrix) if self.calibration is not None else matrix

    def finished(self, matrix: np.ndarray, sensitive: pd.DataFrame | None) -> np.ndarray:
        """The blend's ``matrix`` as the model predicts it: calibrated, then mitigated by the
        rows' ``sensitive`` columns where the model mitigates bias."""
        matrix = self.calibrated(matrix)
        return self.mitigation.apply(matrix, sensitive) if self.mitigation is not None else matrix

    @property
    def class_names(self) -> list[str]:
        """The classes as the probability columns name them."""
        return [str(c) for c in self.target.classes]

    def predict_proba(self, data: pd.DataFrame | str | Path) -> pd.DataFrame:
        if self.task == "regression":
            raise InputError("predict_proba needs a classification model; this one is a regression")
        proba = self.predict_matrix(data)
        return pd.DataFrame(proba, columns=self.class_names)

    def predict(self, data: pd.DataFrame | str | Path) -> np.ndarray:
        return self.predictions_of(self.predict_matrix(data))

    def predictions_of(self, matrix: np.ndarray) -> np.ndarray:
        """What ``predict`` returns for a ``predict_matrix``: the values, or each row's likeliest class."""
        if self.task == "regression":
            return matrix
        return self.target.decode(np.argmax(matrix, axis=1))

    def save(self, folder: str | Path, files: dict[str, str] | None = None) -> Path:
        """Write the model folder, with ``files`` (name: text) beside the model, atomically."""
        folder = Path(folder)
        folder.parent.mkdir(parents=True, exist_ok=True)
        with atomic.atomic_folder(folder) as staged:
            with open(staged / MODEL_FILE, "wb") as handle:
                pickle.dump(self, handle, protocol=pickle.HIGHEST_PROTOCOL)
            (staged / META_FILE).write_text(json.dumps(self._meta(), indent=2, default=str))
            for name, text in (files or {}).items():
                (staged / name).write_text(text)
            digests = {p.name: sha256_of(p) for p in sorted(staged.iterdir())}
            (staged / MANIFEST_FILE).write_text(json.dumps({"sha256": digests}, indent=2))
        return folder

    def _meta(self) -> dict[str, Any]:
        return {"format_version": FORMAT_VERSION, "task": self.task, "target": self.target_name,
                "metric": self.metric, "classes": self.target.classes,
                "columns": self.schema.describe(),
                "members": [{"name": m.name, "family": m.family, "weight": m.weight, "params": m.params}
                            for m in self.members],
                "calibration": ({"method": "temperature", "temperature": self.calibration.temperature}
                                if self.calibration is not None else None),
                "versions": library_versions(), **self.meta}


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def model_folder(folder: str | Path) -> Path:
    """The model folder itself when given its run folder."""
    folder = Path(folder)
    return folder / "model" if (folder / "model" / MODEL_FILE).is_file() else folder


def saved_files(folder: str | Path) -> dict[str, str]:
    """The text files saved beside the model in a verified folder (to save them again with it)."""
    folder = model_folder(folder)
    verify_folder(folder)
    names = json.loads((folder / MANIFEST_FILE).read_text())["sha256"]
    return {name: (folder / name).read_text() for name in names if name not in (MODEL_FILE, META_FILE)}


def verify_folder(folder: Path) -> None:
    """Refuse a model folder whose files do not match its manifest (checked before anything is read)."""
    manifest_path = folder / MANIFEST_FILE
    if not manifest_path.is_file():
        raise InputError(f"{folder} has no {MANIFEST_FILE}: not an automl model folder, or saved by an "
                         "older automl; refit it")
    try:
        digests = json.loads(manifest_path.read_text())["sha256"]
    except (json.JSONDecodeError, KeyError, TypeError):
        raise InputError(f"{manifest_path} is damaged: refusing to load the model") from None
    for name in (MODEL_FILE, META_FILE):
        if name not in digests:
            raise InputError(f"{manifest_path} does not list {name}: refusing to load the model")
    for name, expected in digests.items():
        path = folder / name
        if Path(name).name != name or not path.is_file():
            raise InputError(f"{folder / name} is missing from the model folder: refusing to load it")
        if sha256_of(path) != expected:
            raise InputError(f"{path} was modified after the model was saved (its SHA-256 does not match "
                             f"{MANIFEST_FILE}): refusing to load it; load model folders from a trusted source only")


def _unpickled(path: Path, format_version: int) -> Any:
    if format_version == 1:
        return joblib.load(path)
    with open(path, "rb") as handle:
        return pickle.load(handle)


def load_predictor(folder: str | Path) -> Predictor:
    """Load a saved model folder, or raise InputError naming what is wrong with it."""
    folder = model_folder(folder)
    meta_path, model_path = folder / META_FILE, folder / MODEL_FILE
    if not model_path.is_file() or not meta_path.is_file():
        raise InputError(f"{folder} is not an automl model folder (no {MODEL_FILE} and {META_FILE})")
    verify_folder(folder)
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError:
        raise InputError(f"{meta_path} is not valid JSON") from None
    if meta.get("format_version") not in READABLE_FORMATS:
        raise InputError(f"{folder} was saved in model format {meta.get('format_version')!r}; "
                         f"this automl reads formats {', '.join(map(str, READABLE_FORMATS))}")
    try:
        predictor = _unpickled(model_path, meta["format_version"])
    except Exception as exc:
        message = str(exc).strip().splitlines()
        detail = f"{type(exc).__name__}: {message[0][:300]}" if message else type(exc).__name__
        raise InputError(f"cannot load {model_path}: {detail}") from None
    if not isinstance(predictor, Predictor):
        raise InputError(f"{model_path} does not hold an automl model")
    return predictor
