"""One trial: cross-validate one configuration of one family.

This is the function a worker runs. It never raises for a model's failure:
the failure is returned as a ``failed`` outcome with its message, so the run
records it and goes on (never a silent stand-in result).
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from automl.bagging import FoldModelPacker
from automl.budget import FIT_SHARE_OF_LIMIT
from automl.data import TrainingData
from automl.errors import short_traceback
from automl.metrics import get_metric, score_or_nan
from automl.models import get_family
from automl.prediction import predict_matrix
from automl.validation import Folds, empty_oof

TRAIN_SCORE_ROWS = 2000
"""Each fold model's train score is taken on at most this many of its training rows:
enough to show overfitting, without doubling the cost of a trial."""

COMPLETE, PRUNED, FAILED = "complete", "pruned", "failed"

Reporter = Callable[[int, float], bool]
"""Called after each fold with (fold index, running mean score); True means stop (pruned)."""


@dataclass
class Workload:
    """What every trial shares, put into Ray's object store once."""

    data: TrainingData
    folds: Folds
    holdout: pd.DataFrame | None = None
    """Model-ready holdout features, predicted by every fold model; its labels never reach a worker."""


@dataclass
class TrialSpec:
    """What a worker needs to run one trial (besides the shared data)."""

    number: int
    family: str
    params: dict[str, Any]
    metric: str
    seed: int
    n_jobs: int = 1
    pruning: Any = None
    """A picklable object whose ``connect()`` returns a Reporter, or None."""
    max_model_bytes: int = 0
    """Return the fold models (serialised) when they take at most this many bytes; 0: never."""
    max_train_rows: int | None = None
    """Fit each fold on a random subsample of this many of its training rows (None: all of them)."""
    sample_reason: str = ""
    """Why it is subsampled: "memory" or "time" (see ``automl.planner``)."""
    time_limit_s: float | None = None
    """Learners that grow stop growing in time to return within this (at most its hard limit;
    before any trial has completed, the share of the budget a first model may take)."""
    gpus: float = 0
    """The share of a GPU the trial was given (0: it trains on CPUs)."""
    submitted_at: float = 0.0
    """When the driver sent it (``time.time()``; 0: unknown). Its limits count from then: a
    trial that first waited for a new worker to start (seconds on a loaded machine, more
    where the worker then starts CUDA) has that much less time for its folds."""


@dataclass
class TrialOutcome:
    number: int
    family: str
    params: dict[str, Any]
    status: str
    fold_scores: list[float] = field(default_factory=list)
    oof: np.ndarray | None = None
    fit_time_s: float = 0.0
    predict_time_s: float = 0.0
    start_wait_s: float = 0.0
    """Seconds from the driver sending it to its start in the worker (a new worker's start)."""
    verdict_wait_s: float = 0.0
    """Seconds its worker waited for the driver's pruning verdicts, after each fold."""
    error: str | None = None
    host: str = ""
    pid: int = 0
    node_id: str = ""
    resources: dict[str, float] = field(default_factory=dict)
    started_at: float = 0.0
    ended_at: float = 0.0
    fold_models: list[bytes] | None = None
    """The k fitted fold models, pickled, when the trial completed and they were small enough."""
    train_scores: list[float] = field(default_factory=list)
    """Each fold model's score on (a sample of) its own training rows."""
    holdout_prediction: np.ndarray | None = None
    """The fold models' mean prediction for the holdout rows, when there is a holdout."""
    train_rows: int | None = None
    """Rows each fold model was fit on, when the memory or time budget made the trial subsample them."""
    sample_reason: str = ""
    refit_params: dict[str, Any] | None = None
    """The configuration a refit on all rows takes: ``params`` with the mean size its fold
    models kept where early stopping cut them short (see ``ModelFamily.kept_size``)."""
    traceback: str = ""
    """Where a failed trial failed: the end of its traceback (``error`` holds its message)."""
    cut_short: bool = False
    """Grown or sampled short so that a first model came early, and run again in full (see
    ``Search``): a refit of it grows whole, unlike the models its costs were measured on."""

    @property
    def cv_score(self) -> float:
        return float(np.mean(self.fold_scores)) if self.fold_scores else float("nan")

    @property
    def cv_std(self) -> float:
        return float(np.std(self.fold_scores)) if self.fold_scores else float("nan")

    @property
    def train_score(self) -> float:
        finite = [s for s in self.train_scores if np.isfinite(s)]
        return float(np.mean(finite)) if finite else float("nan")


def warm_up_for_gpu(families: tuple[str, ...]) -> None:
    """In a worker that will run these families' trials on its GPU: pay once what a process's
    first fit there costs (see ``ModelFamily.warm_up``)."""
    for name in families:
        get_family(name).warm_up()


def run_trial(workload: Workload, spec: TrialSpec) -> TrialOutcome:
    outcome = TrialOutcome(spec.number, spec.family, spec.params, COMPLETE, host=socket.gethostname(),
                           pid=os.getpid(), started_at=time.time(), train_rows=spec.max_train_rows,
                           sample_reason=spec.sample_reason)
    # never below 0: the clocks of a cluster's nodes may differ by a little
    outcome.start_wait_s = max(0.0, outcome.started_at - spec.submitted_at) if spec.submitted_at else 0.0
    try:
        with threadpool_limits(limits=spec.n_jobs):
            _cross_validate(workload, spec, outcome)
    except Exception as exc:  # a model's failure is a result to record, not a crash
        outcome.status = FAILED
        outcome.error = f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
        outcome.traceback = short_traceback(exc)
        outcome.oof = None
    outcome.ended_at = time.time()
    return outcome


def _cross_validate(workload: Workload, spec: TrialSpec, outcome: TrialOutcome) -> None:
    data, folds, holdout = workload.data, workload.folds, workload.holdout
    family = get_family(spec.family)
    metric = get_metric(spec.metric, data.task, data.target.positive)
    reporter = spec.pruning.connect() if spec.pruning is not None else None
    oof = empty_oof(data.task, len(data.y), data.target.n_classes)
    k = data.target.n_classes
    packer, holdout_predictions, kept_sizes = FoldModelPacker(spec.max_model_bytes), [], []
    deadline = None  # the driver cancels the trial its limit after sending it: waiting to start counts
    if spec.time_limit_s is not None:
        deadline = time.monotonic() + spec.time_limit_s - min(outcome.start_wait_s, spec.time_limit_s)
    for step, (train_idx, valid_idx) in enumerate(folds.splits):
        train_idx = in_time_order(subsample(train_idx, spec.max_train_rows, spec.seed + step), data.times)
        estimator = family.build(spec.params, data.task, spec.n_jobs, spec.seed)
        family.place(estimator, spec.gpus)
        started = time.perf_counter()
        fit_limit_s = (None if deadline is None
                       else max(0.0, deadline - time.monotonic()) / (len(folds) - step) * FIT_SHARE_OF_LIMIT)
        family.fit(estimator, data.X.iloc[train_idx], data.y[train_idx], time_limit_s=fit_limit_s,
                   validation=(data.X.iloc[valid_idx], data.y[valid_idx]), in_time_order=data.times is not None)
        fitted = time.perf_counter()
        prediction = predict_matrix(estimator, data.X.iloc[valid_idx], data.task, k)
        outcome.fit_time_s += fitted - started
        outcome.predict_time_s += time.perf_counter() - fitted
        oof[valid_idx] = prediction
        outcome.fold_scores.append(metric.score(data.y[valid_idx], prediction))
        outcome.train_scores.append(_train_score(estimator, data, train_idx, metric))
        if reporter is not None:
            asked = time.perf_counter()
            stop = reporter(step, float(np.mean(outcome.fold_scores)))
            outcome.verdict_wait_s += time.perf_counter() - asked
            if stop:
                outcome.status = PRUNED
                return
        if holdout is not None:
            holdout_predictions.append(predict_matrix(estimator, holdout, data.task, k))
        packer.add(estimator)
        kept_sizes.append(family.kept_size(estimator))
    outcome.oof = oof
    outcome.refit_params = {**spec.params, **_mean_sizes(kept_sizes)}
    if holdout_predictions:
        outcome.holdout_prediction = np.mean(holdout_predictions, axis=0)
    outcome.fold_models = packer.packed


def _mean_sizes(sizes: list[dict[str, int]]) -> dict[str, int]:
    """Each size parameter's mean over the folds, rounded up (at least 1)."""
    return {name: max(1, int(np.ceil(np.mean([size[name] for size in sizes])))) for name in sizes[0]} if sizes else {}


def in_time_order(rows: np.ndarray, times: np.ndarray | None) -> np.ndarray:
    """``rows`` oldest first when the data has times (``data.time``), else as they are."""
    return rows if times is None else rows[np.argsort(times[rows], kind="stable")]


def subsample(rows: np.ndarray, limit: int | None, seed: int) -> np.ndarray:
    """``limit`` of ``rows`` drawn at random, in their order (all of them when within it)."""
    if limit is None or len(rows) <= limit:
        return rows
    return np.sort(np.random.default_rng(seed).choice(rows, size=limit, replace=False))


def _train_score(estimator, data: TrainingData, train_idx: np.ndarray, metric) -> float:
    """The fold model's score on an even sample of its own training rows (NaN where the
    metric is undefined on the sample, e.g. one class only)."""
    sample = train_idx[:: max(1, len(train_idx) // TRAIN_SCORE_ROWS)]
    prediction = predict_matrix(estimator, data.X.iloc[sample], data.task, data.target.n_classes)
    return score_or_nan(metric, data.y[sample], prediction)
