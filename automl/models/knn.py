"""k-nearest neighbours on scaled, one-hot features."""

from __future__ import annotations

from typing import Any

from optuna.distributions import CategoricalDistribution, IntDistribution
from sklearn import get_config
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
from sklearn.pipeline import make_pipeline

from automl.models.base import ModelFamily
from automl.preprocessing import scaled_one_hot_encoder


class KNNFamily(ModelFamily):
    name = "knn"
    relative_cost = 1.0
    seconds_per_cell = 5e-6  # 4-5, mostly predicting us measured at ~20k rows (see ModelFamily)
    QUADRATIC_FROM_ROWS = 20_000
    """Predicting measures every validation row against every training row: past the size
    ``seconds_per_cell`` was measured at, the cost per cell grows with the rows."""

    def fold_fit_s(self, n_rows: int, n_features: int) -> float:
        return super().fold_fit_s(n_rows, n_features) * max(1.0, n_rows / self.QUADRATIC_FROM_ROWS)

    def search_space(self, task: str) -> dict:
        return {"n_neighbors": IntDistribution(2, 100, log=True),
                "weights": CategoricalDistribution(("uniform", "distance")),
                "p": CategoricalDistribution((1, 2))}

    def portfolio(self, task: str) -> list[dict[str, Any]]:
        # A smoother neighbourhood than scikit-learn's default, then that default (AutoGluon's "KNNUnif").
        return [{"n_neighbors": 15, "weights": "distance", "p": 2},
                {"n_neighbors": 5, "weights": "uniform", "p": 2}]

    def estimated_trial_bytes(self, params: dict[str, Any], n_rows: int, n_features: int, n_classes: int,
                              n_folds: int) -> float:
        """Each of the k fold models keeps its training rows (float64), and a query takes
        distances in chunks of at most scikit-learn's ``working_memory`` (1 GiB)."""
        rows_bytes = n_rows * max(1, n_features) * 8
        distances = min(get_config()["working_memory"] * 2**20, n_rows * n_rows / max(1, n_folds - 1) * 8)
        return (n_folds + 2) * rows_bytes + distances

    def build(self, params: dict[str, Any], task: str, n_jobs: int, seed: int):
        estimator = KNeighborsRegressor if task == "regression" else KNeighborsClassifier
        return make_pipeline(scaled_one_hot_encoder(), estimator(**params, n_jobs=n_jobs))
