"""What random forests and extra trees share: space, defaults and preprocessing."""

from __future__ import annotations

from typing import Any

from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from sklearn.pipeline import make_pipeline

from automl.models.base import ModelFamily
from automl.preprocessing import codes_encoder


class ForestFamily(ModelFamily):
    """A bagged tree ensemble; subclasses name the two estimators."""

    classifier: type
    regressor: type
    relative_cost = 3.0

    def search_space(self, task: str) -> dict:
        criteria = ("squared_error",) if task == "regression" else ("gini", "entropy")
        return {
            "n_estimators": IntDistribution(50, 400, log=True),
            "max_features": FloatDistribution(0.1, 1.0),
            "min_samples_leaf": IntDistribution(1, 30, log=True),
            "criterion": CategoricalDistribution(criteria),
        }

    def default_params(self, task: str) -> dict[str, Any]:
        regression = task == "regression"
        return {"n_estimators": 200, "max_features": 0.6 if regression else 0.3,
                "min_samples_leaf": 2 if regression else 1,
                "criterion": "squared_error" if regression else "gini"}

    def build(self, params: dict[str, Any], task: str, n_jobs: int, seed: int):
        estimator = self.regressor if task == "regression" else self.classifier
        return make_pipeline(codes_encoder(), estimator(**params, n_jobs=n_jobs, random_state=seed))
