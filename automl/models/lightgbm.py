"""LightGBM gradient boosting, with native categorical features."""

from __future__ import annotations

import inspect
from time import monotonic
from typing import Any

import lightgbm
from lightgbm import LGBMClassifier, LGBMRegressor
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from automl.models.base import ModelFamily

_FLAML_ZERO_SHOT = {
    # The cheapest configuration of FLAML 2.7's zero-shot LightGBM portfolio for each task
    # (flaml/default/lgbm/<task>.json), found by FLAML's authors over a large dataset benchmark.
    # Ours has no max_bin parameter, so FLAML's log_max_bin is left out.
    "binary": {"n_estimators": 141, "learning_rate": 0.048, "num_leaves": 139, "min_child_samples": 8,
               "colsample_bytree": 0.53, "reg_alpha": 0.0029, "reg_lambda": 0.024},
    "multiclass": {"n_estimators": 134, "learning_rate": 0.10, "num_leaves": 225, "min_child_samples": 21,
                   "colsample_bytree": 0.61, "reg_alpha": 0.001, "reg_lambda": 40.4},
    "regression": {"n_estimators": 1000, "learning_rate": 0.022, "num_leaves": 42, "min_child_samples": 12,
                   "colsample_bytree": 0.74, "reg_alpha": 0.0036, "reg_lambda": 12.1},
}


_TAKES_EVAL_X = "eval_X" in inspect.signature(LGBMClassifier.fit).parameters
"""LightGBM 4.7 takes eval_X and eval_y, and deprecates eval_set."""
EARLY_STOPPING_ROUNDS = 50
"""Rounds without a better validation loss after which a fold's boosting stops (its best round is kept)."""


WIDE_FEATURES, WIDE_MAX_BIN = 500, 63
"""Tables with more features than WIDE_FEATURES bin each in at most WIDE_MAX_BIN values
(255 by default): a round's cost grows with features x bins, and on 5k rows x 2,000
features a default fit took half the time (14.5 -> 6.7 s) and scored holdout AUC 0.9578
instead of 0.9556. The shared datasets, at most 60 features, keep 255."""
MAX_LEARNING_RATE = 0.3
"""The search space's highest rate: the most a fit short of time raises its rate to."""
MEASURED_ROUNDS = 3
"""Rounds timed before a fit judges whether the rest fit in its time."""


class WithinTime:
    """A LightGBM callback that keeps a fit within ``time_limit_s``.

    After each round it measures what a round takes. When the rounds left would not
    fit in the time left, it raises the learning rate so that the rounds that do fit
    take the steps still to be taken (``n_estimators * learning_rate`` in all, as the
    configuration would have): a fit with time for a tenth of its rounds then ends with
    a model as far along as the whole, not a tenth of one (up to MAX_LEARNING_RATE).
    At the deadline it ends training, keeping the rounds made so far."""

    order = 40  # after early stopping's own check

    def __init__(self, time_limit_s: float, n_estimators: int, learning_rate: float):
        self.deadline = monotonic() + time_limit_s
        self.steps_left = n_estimators * learning_rate
        self.rate = learning_rate
        self._timed_from: tuple[float, int] | None = None  # the first round includes building the dataset

    def __call__(self, env) -> None:
        now = monotonic()
        if now >= self.deadline:
            raise lightgbm.callback.EarlyStopException(env.iteration, env.evaluation_result_list)
        self.steps_left -= self.rate
        if self._timed_from is None:
            self._timed_from = (now, env.iteration)
            return
        since, first = self._timed_from
        if env.iteration - first < MEASURED_ROUNDS:
            return
        rounds_that_fit = (self.deadline - now) / ((now - since) / (env.iteration - first))
        if rounds_that_fit >= env.end_iteration - env.iteration - 1:
            return
        rate = min(MAX_LEARNING_RATE, self.steps_left / max(1.0, rounds_that_fit))
        if rate > 1.1 * self.rate:
            self.rate = rate
            env.model.reset_parameter({"learning_rate": rate})


class LightGBMFamily(ModelFamily):
    name = "lightgbm"
    first_step_share = 1 / 40  # it can stop after any round: 10 of the default's 400 make a first model
    relative_cost = 1.0
    # The default configuration (400 rounds, 31 leaves, 255 bins) on one CPU: 1.2 s on adult (26k x 14),
    # 11.9 s on 240k x 25, 128 s on 2.4k x 2,000 (measured, 2-core machine): a cost per row and
    # feature, and one per feature (histograms) that the rows do not change.
    seconds_per_cell = 1.7e-6
    seconds_per_feature = 0.06

    def search_space(self, task: str) -> dict:
        return {
            "n_estimators": IntDistribution(50, 1000, log=True),
            "learning_rate": FloatDistribution(0.01, 0.3, log=True),
            "num_leaves": IntDistribution(8, 256, log=True),
            "min_child_samples": IntDistribution(3, 100, log=True),
            "colsample_bytree": FloatDistribution(0.3, 1.0),
            "subsample": FloatDistribution(0.5, 1.0),
            "reg_lambda": FloatDistribution(1e-3, 100.0, log=True),
            "reg_alpha": FloatDistribution(1e-3, 10.0, log=True),
            "extra_trees": CategoricalDistribution((False, True)),
        }

    def portfolio(self, task: str) -> list[dict[str, Any]]:
        base = {"subsample": 1.0, "reg_lambda": 0.01, "reg_alpha": 0.001, "extra_trees": False}
        return [
            # LightGBM's own defaults (31 leaves, 20 rows a leaf) at half its learning rate with
            # four times the trees: the usual trade of a lower rate for more rounds.
            {**base, "n_estimators": 400, "learning_rate": 0.05, "num_leaves": 31, "min_child_samples": 20,
             "colsample_bytree": 0.8},
            # AutoGluon's "GBMXT" (its first LightGBM preset): extremely randomised splits, which
            # ensemble well with the plain model. AutoGluon early-stops; 400 rounds at 0.05 is our cap.
            {**base, "n_estimators": 400, "learning_rate": 0.05, "num_leaves": 31, "min_child_samples": 3,
             "colsample_bytree": 0.9, "extra_trees": True},
            {**base, **_FLAML_ZERO_SHOT[task]},
            # AutoGluon's "GBMLarge": more leaves, a lower rate, smaller leaves allowed.
            {**base, "n_estimators": 500, "learning_rate": 0.03, "num_leaves": 128, "min_child_samples": 3,
             "colsample_bytree": 0.9},
        ]

    def fit(self, estimator, X, y, time_limit_s: float | None = None, validation: tuple | None = None,
            in_time_order: bool = False):
        """Early-stops on ``validation`` (the fold's own validation rows, as AutoGluon does) and
        keeps within ``time_limit_s`` (see ``WithinTime``); bins wide tables coarser
        (WIDE_MAX_BIN)."""
        if X.shape[1] > WIDE_FEATURES:
            estimator.set_params(max_bin=WIDE_MAX_BIN)
        callbacks = []
        if validation is not None:
            callbacks.append(lightgbm.early_stopping(EARLY_STOPPING_ROUNDS, first_metric_only=True, verbose=False))
        if time_limit_s is not None:
            params = estimator.get_params()
            callbacks.append(WithinTime(time_limit_s, params["n_estimators"], params["learning_rate"]))
        if validation is None:
            return estimator.fit(X, y, callbacks=callbacks)
        if _TAKES_EVAL_X:
            return estimator.fit(X, y, eval_X=(validation[0],), eval_y=(validation[1],), callbacks=callbacks)
        return estimator.fit(X, y, eval_set=[validation], callbacks=callbacks)

    def kept_size(self, estimator) -> dict[str, int]:
        """The rounds early stopping kept (all it grew when it never stopped)."""
        return {"n_estimators": estimator.best_iteration_ or estimator.n_estimators_}

    def build(self, params: dict[str, Any], task: str, n_jobs: int, seed: int):
        estimator = LGBMRegressor if task == "regression" else LGBMClassifier
        return estimator(**params, subsample_freq=1, n_jobs=n_jobs, random_state=seed, verbose=-1,
                         deterministic=True, force_row_wise=True)
