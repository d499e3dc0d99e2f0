"""The Python API: ``AutoML``, following scikit-learn's estimator conventions."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator

from automl.artifact import Predictor, load_predictor, model_folder, saved_files
from automl.data import load_table
from automl.engine import run_fit
from automl.errors import InputError
from automl.metrics import get_metric
from automl.progress import Progress
from automl.spec import IN_MEMORY, Spec, build_spec, load_raw_spec

LEADERBOARD_FILE = "leaderboard.csv"


class AutoML(BaseEstimator):
    """Fit the best model for a table within a time budget.

    Give a ``spec`` (a path, a mapping or a ``Spec``) and/or the common settings as
    arguments; arguments override the spec. Without an ``output`` folder, each fit
    writes to a new ``runs/automl-<time>`` folder.
    """

    def __init__(self, spec: str | Path | dict | Spec | None = None, *, target: str | None = None,
                 task: str | None = None, metric: str | None = None, time_budget_s: float | None = None,
                 max_trials: int | None = None, models: list[str] | None = None, seed: int | None = None,
                 output: str | Path | None = None, verbose: bool = True):
        self.spec = spec
        self.target = target
        self.task = task
        self.metric = metric
        self.time_budget_s = time_budget_s
        self.max_trials = max_trials
        self.models = models
        self.seed = seed
        self.output = output
        self.verbose = verbose

    def _raw_spec(self) -> dict[str, Any]:
        if self.spec is None:
            return {}
        if isinstance(self.spec, Spec):
            return self.spec.model_dump(mode="json")
        if isinstance(self.spec, dict):
            return {k: (dict(v) if isinstance(v, dict) else v) for k, v in self.spec.items()}
        return load_raw_spec(self.spec)

    def resolved_spec(self, target: str | None = None) -> Spec:
        """The spec this estimator will run: its spec with the arguments applied."""
        raw = self._raw_spec()
        data = raw.setdefault("data", {})
        data.setdefault("train", IN_MEMORY)
        settings = {("data", "target"): self.target or target, ("task",): self.task,
                    ("metric",): self.metric, ("budget", "time_s"): self.time_budget_s,
                    ("budget", "max_trials"): self.max_trials, ("models", "include"): self.models,
                    ("seed",): self.seed, ("output",): str(self.output) if self.output else None}
        for path, value in settings.items():
            if value is not None:
                node = raw
                for key in path[:-1]:
                    node = node.setdefault(key, {})
                node[path[-1]] = value
        if not raw.get("output"):
            raw["output"] = str(Path("runs") / f"{raw.get('name', 'automl')}-{time.strftime('%Y%m%d-%H%M%S')}")
        return build_spec(raw)

    def fit(self, X: pd.DataFrame | str | Path, y: pd.Series | np.ndarray | None = None) -> AutoML:
        """Fit on a frame holding the target column, or on features ``X`` and labels ``y``."""
        frame = load_table(X) if isinstance(X, (str, Path)) else X
        if not isinstance(frame, pd.DataFrame):
            raise InputError(f"fit expects a pandas DataFrame, got {type(frame).__name__}")
        target = None
        if y is not None:
            target = self.target or getattr(y, "name", None) or "target"
            if len(y) != len(frame):
                raise InputError(f"X has {len(frame)} rows but y has {len(y)}")
            frame = frame.assign(**{target: np.asarray(y)})
        spec = self.resolved_spec(target)
        result = run_fit(spec, frame, progress=Progress(enabled=self.verbose))
        self.predictor_ = result.predictor
        self.leaderboard_ = result.leaderboard
        self.summary_ = result.summary
        self.output_dir_ = result.output_dir
        self.model_dir_ = result.output_dir / "model"
        return self

    def _fitted(self) -> Predictor:
        if not hasattr(self, "predictor_"):
            raise InputError("this AutoML is not fitted yet: call fit() or AutoML.load() first")
        return self.predictor_

    def predict(self, X: pd.DataFrame | str | Path) -> np.ndarray:
        return self._fitted().predict(X)

    def predict_proba(self, X: pd.DataFrame | str | Path) -> pd.DataFrame:
        """Class probabilities, one column per class (named by the class)."""
        return self._fitted().predict_proba(X)

    def score(self, X: pd.DataFrame | str | Path, y: pd.Series | np.ndarray | None = None) -> float:
        """The run's metric on labelled data, in the metric's own sign."""
        predictor = self._fitted()
        frame = load_table(X) if isinstance(X, (str, Path)) else X
        labels = pd.Series(np.asarray(y)) if y is not None else None
        if labels is None:
            if predictor.target_name not in frame.columns:
                raise InputError(f"score needs labels: pass y or a '{predictor.target_name}' column")
            labels = frame[predictor.target_name]
        encoded = predictor.target.encode(labels.reset_index(drop=True).rename(predictor.target_name))
        metric = get_metric(predictor.metric, predictor.task, predictor.target.positive)
        return metric.score(encoded, predictor.predict_matrix(frame))

    def leaderboard(self) -> pd.DataFrame:
        self._fitted()
        return self.leaderboard_.copy()

    def save(self, folder: str | Path) -> Path:
        """Save the model folder, with the drift reference and the leaderboard beside the model."""
        predictor = self._fitted()
        files = saved_files(self.model_dir_) if getattr(self, "model_dir_", None) else {}
        if getattr(self, "leaderboard_", None) is not None:
            files[LEADERBOARD_FILE] = self.leaderboard_.to_csv(index=False)
        return predictor.save(folder, files)

    @classmethod
    def load(cls, folder: str | Path) -> AutoML:
        """An AutoML ready to predict, from a model folder (or the run folder above it)."""
        predictor = load_predictor(folder)
        model = cls(target=predictor.target_name, metric=predictor.metric, verbose=False)
        model.predictor_ = predictor
        model.model_dir_ = model_folder(folder)
        folder = Path(folder)
        boards = [folder / LEADERBOARD_FILE, folder.parent / LEADERBOARD_FILE]
        found = next((b for b in boards if b.is_file()), None)
        model.leaderboard_ = pd.read_csv(found) if found else None
        return model
