"""The Python API: ``AutoML``, following scikit-learn's estimator conventions.

After ``fit``: ``classes_`` (classification), ``n_features_in_`` and
``feature_names_in_``; ``predict_proba`` is an ndarray in ``classes_`` order;
``score`` is higher-is-better, as scikit-learn's scorers (a loss is negated); its
tags say classifier or regressor from the task, so ``cross_val_score`` stratifies.
X may be a DataFrame, a path, or any 2-D array-like (columns named x0, x1, ...).
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError
from sklearn.utils import ClassifierTags, RegressorTags

from automl.artifact import Predictor, load_predictor, model_folder, saved_files
from automl.data import load_table
from automl.engine import run_fit
from automl.errors import InputError
from automl.metrics import get_metric
from automl.progress import Progress
from automl.spec import IN_MEMORY, Spec, build_spec, load_raw_spec

LEADERBOARD_FILE = "leaderboard.csv"


class NotFitted(InputError, NotFittedError):
    """Predicting before fitting: bad input to the command line (exit 2), and scikit-learn's
    NotFittedError to its machinery."""


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
        if not raw.get("output"):  # unique: clones fitted at once (a grid search) never share a folder
            stamp = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
            raw["output"] = str(Path("runs") / f"{raw.get('name', 'automl')}-{stamp}")
        return build_spec(raw)

    def _task(self) -> str | None:
        """The task: the fitted model's, else the one set here or in the spec (None: not known yet)."""
        if hasattr(self, "predictor_"):
            return self.predictor_.task
        task = self.task or (self._raw_spec().get("task") if self.spec is not None else None)
        return task if task in ("binary", "multiclass", "regression") else None

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        task = self._task()
        if task == "regression":
            tags.estimator_type, tags.regressor_tags = "regressor", RegressorTags()
        elif task is not None:
            tags.estimator_type, tags.classifier_tags = "classifier", ClassifierTags(multi_class=True)
        tags.input_tags.allow_nan = tags.input_tags.string = tags.input_tags.categorical = True
        tags.non_deterministic = True  # a time budget: what a fit reaches depends on the machine
        return tags

    def _frame(self, X: Any) -> pd.DataFrame:
        """X as a frame: a DataFrame as it is, a path read, an array-like with the columns
        it was fitted with (x0, x1, ... when it was fitted on an array too)."""
        if isinstance(X, (str, Path)):
            return load_table(X)
        if isinstance(X, pd.DataFrame):
            return X
        array = np.asarray(X)
        if array.ndim != 2:
            raise InputError(f"X must be a table (2-D); got an array of {array.ndim} dimension(s)")
        names = getattr(self, "feature_names_in_", None)
        if names is None or len(names) != array.shape[1]:
            names = [f"x{i}" for i in range(array.shape[1])]
        return pd.DataFrame(array, columns=list(names))

    def fit(self, X: Any, y: Any = None) -> AutoML:
        """Fit on a frame holding the target column, or on features ``X`` and labels ``y``."""
        for fitted in ("predictor_", "feature_names_in_", "n_features_in_", "classes_"):
            self.__dict__.pop(fitted, None)  # a second fit starts from nothing the first learnt
        frame = self._frame(X)
        target = None
        if y is not None:
            labels = np.asarray(y)
            if labels.ndim != 1 or len(labels) != len(frame):
                raise InputError(f"y must hold one label per row of X: X has {len(frame)} rows, "
                                 f"y has shape {labels.shape}")
            named = self.target or getattr(y, "name", None) or "target"
            target = _free_name(str(named), [str(c) for c in frame.columns])
            frame = frame.assign(**{target: labels})
        spec = self.resolved_spec(target)
        result = run_fit(spec, frame, progress=Progress(enabled=self.verbose))
        self._set_fitted(result.predictor, [c for c in frame.columns if c != spec.data.target])
        self.leaderboard_ = result.leaderboard
        self.summary_ = result.summary
        self.output_dir_ = result.output_dir
        self.model_dir_ = result.output_dir / "model"
        return self

    def _set_fitted(self, predictor: Predictor, features: list) -> None:
        self.predictor_ = predictor
        self.feature_names_in_ = np.asarray([str(c) for c in features], dtype=object)
        self.n_features_in_ = len(features)
        if predictor.task != "regression":
            self.classes_ = np.asarray(predictor.target.classes)

    def _fitted(self) -> Predictor:
        if not hasattr(self, "predictor_"):
            raise NotFitted("this AutoML is not fitted yet: call fit() or AutoML.load() first")
        return self.predictor_

    def predict(self, X: Any) -> np.ndarray:
        predictor = self._fitted()
        return predictor.predict(self._frame(X))

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities, an ndarray with one column per class, in ``classes_`` order."""
        predictor = self._fitted()
        return predictor.predict_proba(self._frame(X)).to_numpy()

    def score(self, X: Any, y: Any = None) -> float:
        """The run's metric on labelled data, higher is better: a loss (log_loss, rmse, mae)
        is negated, as scikit-learn's scorers do, so a grid search picks the best model."""
        predictor = self._fitted()
        frame = self._frame(X)
        labels = pd.Series(np.asarray(y)) if y is not None else None
        if labels is None:
            if predictor.target_name not in frame.columns:
                raise InputError(f"score needs labels: pass y or a '{predictor.target_name}' column")
            labels = frame[predictor.target_name]
        encoded = predictor.target.encode(labels.reset_index(drop=True).rename(predictor.target_name))
        metric = get_metric(predictor.metric, predictor.task, predictor.target.positive)
        value = metric.score(encoded, predictor.predict_matrix(frame))
        return value if metric.higher_is_better else -value

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

    def retrain(self, X: Any, output: str | Path | None = None, search_s: float | None = None) -> AutoML:
        """A new AutoML: this model's pipeline refit on new labelled rows ``X`` (a frame with the
        target column, or a path), as ``automl retrain`` does; its ``summary_["retrain"]``
        compares the two on a holdout of ``X``."""
        from automl.retrain import retrain

        self._fitted()
        if getattr(self, "model_dir_", None) is None:
            raise NotFitted("retrain needs a saved model: fit() or AutoML.load() one first")
        stamp = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
        output = Path(output) if output else Path("runs") / f"retrain-{stamp}"
        result = retrain(self.model_dir_, self._frame(X), output, search_s, progress=Progress(enabled=self.verbose))
        model = type(self)(target=result.predictor.target_name, metric=result.predictor.metric, verbose=self.verbose)
        model._set_fitted(result.predictor, [info.name for info in result.predictor.schema.columns])
        model.leaderboard_, model.summary_ = result.leaderboard, result.summary
        model.output_dir_, model.model_dir_ = result.output_dir, result.output_dir / "model"
        return model

    @classmethod
    def load(cls, folder: str | Path) -> AutoML:
        """An AutoML ready to predict, from a model folder (or the run folder above it)."""
        predictor = load_predictor(folder)
        model = cls(target=predictor.target_name, metric=predictor.metric, verbose=False)
        model._set_fitted(predictor, [info.name for info in predictor.schema.columns])
        model.model_dir_ = model_folder(folder)
        folder = Path(folder)
        boards = [folder / LEADERBOARD_FILE, folder.parent / LEADERBOARD_FILE]
        found = next((b for b in boards if b.is_file()), None)
        model.leaderboard_ = pd.read_csv(found) if found else None
        return model


def _free_name(name: str, taken: list[str]) -> str:
    """``name``, or ``name`` with underscores added until no column of ``taken`` has it:
    the labels given as y never overwrite a feature that happens to share their name."""
    while name in taken:
        name += "_"
    return name
