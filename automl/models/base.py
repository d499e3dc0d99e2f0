"""The contract every model family follows.

A family owns its estimator, its preprocessing, its Optuna search space and a
portfolio: an ordered list of proven configurations, the first being its
default, which the search tries before it samples anything (a zero-shot
start, as FLAML and AutoGluon do it), so a tiny budget already yields a strong
model. Each configuration says where it comes from. The space is declarative
(Optuna distributions), so the search, the planner and the report can read it
without running it.
Parameter names are the estimator's own; the search prefixes them with the
family name inside the study.
"""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # kept out of start-up: importing the registry must stay cheap
    from optuna.distributions import BaseDistribution
    from sklearn.base import BaseEstimator

ALL_TASKS = ("binary", "multiclass", "regression")
FULL_TREE_ROWS = 1000
"""Rows from which a default tree has all its leaves and a numeric feature all its bins."""


class ModelFamily(ABC):
    name: str = ""
    tasks: tuple[str, ...] = ALL_TASKS
    uses_gpu: bool = False
    gpu_speedup: float = 1.0
    """How many times faster than on one CPU thread a fit runs on a GPU: the planner's first
    guess for a family that ``uses_gpu``, until its first trial there is measured."""
    relative_cost: float = 1.0
    """Rough fit cost against LightGBM's default on the same data, for budgeting."""
    seconds_per_cell: float = 5e-6
    """Seconds to fit the default configuration on one CPU and predict a fold, per training
    row and feature (measured on the adult and diamonds data, 2-core machine; the larger)."""
    seconds_per_feature: float = 0.0
    """Seconds per feature that do not shrink with the rows once there are FULL_TREE_ROWS
    (histograms of every feature at every node of every tree): what makes wide tables slow
    even with few rows. Below that, trees have fewer leaves and features fewer bins."""
    first_step_share: float = 1.0
    """The share of a default fit that ``fit`` needs before it can return a model at its time
    limit: 1 for a learner fit whole; for one grown in steps (rounds, trees, epochs), its
    first step. A trial can return in time once that share does."""
    model_modules: tuple[str, ...] = ()
    """Modules slow to import that loading this family's fitted models needs. The engine
    imports them in the driver as soon as such a model may join the final one, so the
    import is paid during the search, not in the end phase's reserved seconds."""

    def place(self, estimator: BaseEstimator, gpus: float) -> None:  # noqa: B027 (most have nothing to set)
        """Set ``estimator`` to train on the trial's device: a GPU when it was given a share
        of one (``gpus``), else the CPU. Families that use no GPU have nothing to set."""

    def warm_up(self) -> None:  # noqa: B027 (a family that uses no GPU has nothing to warm up)
        """For a family that ``uses_gpu``: a first small fit on the GPU, in a worker that will
        run its trials there, so that what a process's first fit pays (CUDA's start, kernels
        loaded on first use) is paid once, outside any trial's time limit."""

    @abstractmethod
    def search_space(self, task: str) -> dict[str, BaseDistribution]:
        """Optuna distributions, keyed by the estimator's parameter names."""

    @abstractmethod
    def portfolio(self, task: str) -> list[dict[str, Any]]:
        """Proven configurations, best first; every key is in the search space and
        every value inside its distribution."""

    def default_params(self, task: str) -> dict[str, Any]:
        """The configuration tried first: the head of the portfolio."""
        return self.portfolio(task)[0]

    @abstractmethod
    def build(self, params: dict[str, Any], task: str, n_jobs: int, seed: int) -> BaseEstimator:
        """An unfitted scikit-learn estimator (preprocessing included)."""

    def estimated_trial_s(self, n_rows: int, n_features: int, n_folds: int) -> float | None:
        """Seconds one trial of the default configuration takes on one CPU, fitting
        ``n_folds`` folds of ``n_rows`` training rows, where the family can say; the
        planner skips a family that cannot pay for enough trials."""
        return None

    def fold_fit_s(self, n_rows: int, n_features: int) -> float:
        """Seconds one fold of the default configuration takes on ``n_rows`` training rows, one CPU."""
        per_feature = self.seconds_per_feature * min(1.0, n_rows / FULL_TREE_ROWS)
        return (self.seconds_per_cell * n_rows + per_feature) * max(1, n_features)

    def fit(self, estimator: BaseEstimator, X, y, time_limit_s: float | None = None,
            validation: tuple | None = None, in_time_order: bool = False) -> BaseEstimator:
        """Fit ``estimator`` (from ``build``). A family whose learner adds rounds or trees
        stops adding them after ``time_limit_s`` and keeps what it has, and may early-stop
        on ``validation`` (X, y); others fit as they are. ``in_time_order``: the rows come
        oldest first (``data.time``), so a learner that early-stops on a share of its own
        rows holds out the latest share, not a random one."""
        return estimator.fit(X, y)

    def kept_size(self, estimator: BaseEstimator) -> dict[str, int]:
        """The size parameters a fitted ``estimator`` kept where early stopping on the fold's
        validation rows cut it short (LightGBM's best round). A refit on all rows has no
        such rows to stop on: it takes the fold models' mean size instead (``refit_params``).
        Learners that stop on a split of their own rows, or never stop early, return {}."""
        return {}

    def estimated_trial_bytes(self, params: dict[str, Any], n_rows: int, n_features: int, n_classes: int,
                              n_folds: int) -> float:
        """Peak memory of one trial beyond the data its worker holds, fitting on ``n_rows``
        rows per fold; roughly proportional to ``n_rows`` (the memory budget relies on it).
        By default three float64 copies of the fold's rows: the rows taken, the
        preprocessed matrix and the estimator's own; a family whose models grow with
        the data says more."""
        return 3.0 * n_rows * max(1, n_features) * 8

    def supports(self, task: str) -> bool:
        return task in self.tasks

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def grow_within(pipeline, size_param: str, step: int, time_limit_s: float | None, X, y,
                done=lambda model: False, held_out: tuple | None = None):
    """Fit a pipeline whose last step grows by warm start (``size_param``: its trees or
    rounds), ``step`` at a time until its full size, ``done(model)`` (it early-stopped),
    or until another step, taking as long as the last, would pass ``time_limit_s``; it
    keeps what it has grown. ``held_out`` (X, y): rows its last step early-stops on
    (passed as ``X_val``, ``y_val``, through the pipeline's other steps)."""
    if time_limit_s is None and held_out is None:
        return pipeline.fit(X, y)
    deadline = time.monotonic() + time_limit_s if time_limit_s is not None else math.inf
    model = pipeline[-1]
    full = model.get_params()[size_param]
    features = pipeline[:-1].fit_transform(X, y) if len(pipeline) > 1 else X
    fit_params = {}
    if held_out is not None:
        fit_params = {"X_val": pipeline[:-1].transform(held_out[0]) if len(pipeline) > 1 else held_out[0],
                      "y_val": held_out[1]}
    size = min(full, step) if time_limit_s is not None else full
    model.set_params(warm_start=True, **{size_param: size})
    while True:
        step_started = time.monotonic()
        model.fit(features, y, **fit_params)
        now = time.monotonic()
        if size >= full or done(model) or now + (now - step_started) > deadline:
            break
        size = min(full, size + step)
        model.set_params(**{size_param: size})
    model.set_params(warm_start=False)
    return pipeline
