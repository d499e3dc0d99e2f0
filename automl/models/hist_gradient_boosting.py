"""scikit-learn's histogram gradient boosting, with native categorical features."""

from __future__ import annotations

from typing import Any

import numpy as np
from optuna.distributions import FloatDistribution, IntDistribution
from sklearn.base import is_regressor
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.pipeline import make_pipeline

from automl.models.base import ModelFamily, grow_within
from automl.preprocessing import codes_encoder

STEP_ITERATIONS = 25
"""Under a time limit, boosting grows this many iterations at a time (warm start)."""
VALIDATION_FRACTION = 0.1
"""The share of its rows boosting early-stops on."""
MAX_NATIVE_LEVELS = 250
"""HistGradientBoosting takes at most max_bins (255) levels per categorical feature."""


class HistGradientBoostingFamily(ModelFamily):
    name = "hist_gradient_boosting"
    first_step_share = 0.2  # STEP_ITERATIONS of the ~125 an early-stopped default fit takes (measured)
    relative_cost = 1.5
    seconds_per_cell = 5.5e-6  # 3.8-5.5 us measured (see ModelFamily)
    # A step of 25 rounds on 1,000 x 2,000 took 5.8 s, on 4,500 x 2,000 10.5 s (one CPU): on
    # wide tables the histograms of every feature cost ~0.01 s each whatever the rows.
    seconds_per_feature = 0.01

    def search_space(self, task: str) -> dict:
        return {
            "learning_rate": FloatDistribution(0.01, 0.3, log=True),
            "max_leaf_nodes": IntDistribution(8, 128, log=True),
            "min_samples_leaf": IntDistribution(3, 100, log=True),
            "l2_regularization": FloatDistribution(1e-4, 10.0, log=True),
            "max_features": FloatDistribution(0.3, 1.0),
        }

    def portfolio(self, task: str) -> list[dict[str, Any]]:
        return [
            # scikit-learn's defaults at half the learning rate: early stopping picks the rounds.
            {"learning_rate": 0.05, "max_leaf_nodes": 31, "min_samples_leaf": 20, "l2_regularization": 0.01,
             "max_features": 1.0},
            # AutoGluon's "GBMLarge" LightGBM preset, in this estimator's terms.
            {"learning_rate": 0.03, "max_leaf_nodes": 128, "min_samples_leaf": 3, "l2_regularization": 0.01,
             "max_features": 0.9},
        ]

    def fit(self, estimator, X, y, time_limit_s: float | None = None, validation: tuple | None = None,
            in_time_order: bool = False):
        """Grows its rounds in steps under ``time_limit_s``; it early-stops on its own split:
        a random tenth of its rows, or in time order the latest tenth (when that tenth holds
        no class the rest lacks)."""
        held_out = None
        if in_time_order:
            cut = int(len(X) * (1 - VALIDATION_FRACTION))
            if is_regressor(estimator[-1]) or set(np.unique(y[cut:])) <= set(np.unique(y[:cut])):
                X, y, held_out = X.iloc[:cut], y[:cut], (X.iloc[cut:], y[cut:])
        return grow_within(estimator, "max_iter", STEP_ITERATIONS, time_limit_s, X, y,
                           done=lambda model: model.n_iter_ < model.max_iter, held_out=held_out)

    def build(self, params: dict[str, Any], task: str, n_jobs: int, seed: int):
        estimator = HistGradientBoostingRegressor if task == "regression" else HistGradientBoostingClassifier
        model = estimator(**params, max_iter=1000, early_stopping=True, n_iter_no_change=15,
                          validation_fraction=VALIDATION_FRACTION, categorical_features="from_dtype",
                          random_state=seed)
        return make_pipeline(codes_encoder(max_levels=MAX_NATIVE_LEVELS), model)
