"""The fitted result: schema + target encoding + member models + ensemble weights.

Saved as a folder: ``model.joblib`` (the Predictor) and ``meta.json`` (spec,
versions, metric, schema) so a reader can tell what a model is without
unpickling it. Prediction input is checked against the saved schema.
"""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd

from automl.data import FeatureSchema, TargetEncoder, load_table
from automl.errors import InputError
from automl.trial import predict_matrix

FORMAT_VERSION = 1
MODEL_FILE, META_FILE = "model.joblib", "meta.json"
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
    weight: float
    estimator: Any


@dataclass
class Predictor:
    schema: FeatureSchema
    target: TargetEncoder
    target_name: str
    metric: str
    members: list[Member]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def task(self) -> str:
        return self.target.task

    def _features(self, data: pd.DataFrame | str | Path) -> pd.DataFrame:
        frame = load_table(data)
        if not isinstance(frame, pd.DataFrame):
            raise InputError(f"expected a pandas DataFrame, got {type(frame).__name__}")
        return self.schema.transform(frame)

    def predict_matrix(self, data: pd.DataFrame | str | Path) -> np.ndarray:
        """Weighted average of the members: probabilities (n, k) or values (n,)."""
        X = self._features(data)
        k = self.target.n_classes
        return sum(m.weight * predict_matrix(m.estimator, X, self.task, k) for m in self.members)

    def predict_proba(self, data: pd.DataFrame | str | Path) -> pd.DataFrame:
        if self.task == "regression":
            raise InputError("predict_proba needs a classification model; this one is a regression")
        proba = self.predict_matrix(data)
        return pd.DataFrame(proba, columns=[str(c) for c in self.target.classes])

    def predict(self, data: pd.DataFrame | str | Path) -> np.ndarray:
        matrix = self.predict_matrix(data)
        if self.task == "regression":
            return matrix
        return self.target.decode(np.argmax(matrix, axis=1))

    def save(self, folder: str | Path) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        joblib.dump(self, folder / MODEL_FILE)
        meta = {"format_version": FORMAT_VERSION, "task": self.task, "target": self.target_name,
                "metric": self.metric, "classes": self.target.classes,
                "columns": self.schema.describe(),
                "members": [{"name": m.name, "family": m.family, "weight": m.weight, "params": m.params}
                            for m in self.members],
                "versions": library_versions(), **self.meta}
        (folder / META_FILE).write_text(json.dumps(meta, indent=2, default=str))
        return folder


def load_predictor(folder: str | Path) -> Predictor:
    """Load a saved model folder, or raise InputError naming what is wrong with it."""
    folder = Path(folder)
    if (folder / "model" / MODEL_FILE).is_file():  # a run folder was given
        folder = folder / "model"
    meta_path, model_path = folder / META_FILE, folder / MODEL_FILE
    if not model_path.is_file() or not meta_path.is_file():
        raise InputError(f"{folder} is not an automl model folder (no {MODEL_FILE} and {META_FILE})")
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError:
        raise InputError(f"{meta_path} is not valid JSON") from None
    if meta.get("format_version") != FORMAT_VERSION:
        raise InputError(f"{folder} was saved in model format {meta.get('format_version')!r}; "
                         f"this automl reads format {FORMAT_VERSION}")
    try:
        predictor = joblib.load(model_path)
    except Exception as exc:
        raise InputError(f"cannot load {model_path}: {type(exc).__name__}") from None
    if not isinstance(predictor, Predictor):
        raise InputError(f"{model_path} does not hold an automl model")
    return predictor
