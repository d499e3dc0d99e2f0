"""What random forests and extra trees share: space, defaults and preprocessing."""

from __future__ import annotations

from typing import Any

from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from sklearn.pipeline import make_pipeline

from automl.models.base import ModelFamily, grow_within
from automl.preprocessing import codes_encoder

GROWTH_STEPS = 8
"""Under a time limit, a forest grows its trees in this many warm-started steps."""
MAX_LEAF_NODES = 15_000
"""Leaves per tree at most (AutoGluon's default for its forests): no cap below ~15k rows,
and above it a tree's size stops growing with the rows: fully grown on 900k rows, 200
extra trees took 1.7 GB, and k fold models at once several times that."""


class ForestFamily(ModelFamily):
    """A bagged tree ensemble; subclasses name the two estimators."""

    classifier: type
    regressor: type
    relative_cost = 3.0
    first_step_share = 1 / GROWTH_STEPS

    def search_space(self, task: str) -> dict:
        criteria = ("squared_error",) if task == "regression" else ("gini", "entropy")
        return {
            "n_estimators": IntDistribution(50, 400, log=True),
            "max_features": FloatDistribution(0.1, 1.0),
            "min_samples_leaf": IntDistribution(1, 30, log=True),
            "criterion": CategoricalDistribution(criteria),
        }

    def portfolio(self, task: str) -> list[dict[str, Any]]:
        if task == "regression":
            return [
                # Breiman's advice for regression (a third to two thirds of the features), small leaves.
                {"n_estimators": 200, "max_features": 0.6, "min_samples_leaf": 2, "criterion": "squared_error"},
                # AutoGluon's "MSE" forests: every feature at each split, as scikit-learn's default.
                {"n_estimators": 200, "max_features": 1.0, "min_samples_leaf": 1, "criterion": "squared_error"},
            ]
        return [
            # About sqrt(features) for the usual 5-50 columns, fully grown trees (scikit-learn's defaults).
            {"n_estimators": 200, "max_features": 0.3, "min_samples_leaf": 1, "criterion": "gini"},
            # AutoGluon's second forest preset, "Entr": the entropy criterion.
            {"n_estimators": 200, "max_features": 0.3, "min_samples_leaf": 1, "criterion": "entropy"},
        ]

    def estimated_trial_bytes(self, params: dict[str, Any], n_rows: int, n_features: int, n_classes: int,
                              n_folds: int) -> float:
        """The rows as float32, plus the fold model being fit (a trial keeps no more than one
        unless they are small: see ``FoldModelPacker``). A tree has about one node per
        ``min_samples_leaf`` rows (0.84 per row measured for fully grown extra trees on
        noisy labels), at most two per leaf allowed, of 64 bytes plus a float64 value per
        class (80 bytes measured for binary); twice that for what building them leaves
        allocated (peak RSS measured at 2-2.7x the model's size)."""
        nodes = min(n_rows / params.get("min_samples_leaf", 1), 2 * MAX_LEAF_NODES)
        node_bytes = 64 + 8 * max(1, n_classes)
        model = params.get("n_estimators", 100) * nodes * node_bytes * 2
        return 2.0 * n_rows * max(1, n_features) * 4 + model

    def fit(self, estimator, X, y, time_limit_s: float | None = None, validation: tuple | None = None,
            in_time_order: bool = False):
        """Grows its trees in steps under ``time_limit_s``, keeping those grown."""
        step = max(1, estimator[-1].n_estimators // GROWTH_STEPS)
        return grow_within(estimator, "n_estimators", step, time_limit_s, X, y)

    def build(self, params: dict[str, Any], task: str, n_jobs: int, seed: int):
        estimator = self.regressor if task == "regression" else self.classifier
        return make_pipeline(codes_encoder(), estimator(**params, max_leaf_nodes=MAX_LEAF_NODES, n_jobs=n_jobs,
                                                        random_state=seed))
