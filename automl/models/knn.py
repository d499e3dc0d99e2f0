"""k-nearest neighbours on scaled, one-hot features."""

from __future__ import annotations

from typing import Any

from optuna.distributions import CategoricalDistribution, IntDistribution
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
from sklearn.pipeline import make_pipeline

from automl.models.base import ModelFamily
from automl.preprocessing import scaled_one_hot_encoder


class KNNFamily(ModelFamily):
    name = "knn"
    relative_cost = 1.0

    def search_space(self, task: str) -> dict:
        return {"n_neighbors": IntDistribution(2, 100, log=True),
                "weights": CategoricalDistribution(("uniform", "distance")),
                "p": CategoricalDistribution((1, 2))}

    def portfolio(self, task: str) -> list[dict[str, Any]]:
        # A smoother neighbourhood than scikit-learn's default, then that default (AutoGluon's "KNNUnif").
        return [{"n_neighbors": 15, "weights": "distance", "p": 2},
                {"n_neighbors": 5, "weights": "uniform", "p": 2}]

    def build(self, params: dict[str, Any], task: str, n_jobs: int, seed: int):
        estimator = KNeighborsRegressor if task == "regression" else KNeighborsClassifier
        return make_pipeline(scaled_one_hot_encoder(), estimator(**params, n_jobs=n_jobs))
