"""LightGBM gradient boosting, with native categorical features."""

from __future__ import annotations

from typing import Any

from lightgbm import LGBMClassifier, LGBMRegressor
from optuna.distributions import FloatDistribution, IntDistribution

from automl.models.base import ModelFamily


class LightGBMFamily(ModelFamily):
    name = "lightgbm"
    relative_cost = 1.0

    def search_space(self, task: str) -> dict:
        return {
            "n_estimators": IntDistribution(50, 1000, log=True),
            "learning_rate": FloatDistribution(0.01, 0.3, log=True),
            "num_leaves": IntDistribution(8, 256, log=True),
            "min_child_samples": IntDistribution(3, 100, log=True),
            "colsample_bytree": FloatDistribution(0.3, 1.0),
            "subsample": FloatDistribution(0.5, 1.0),
            "reg_lambda": FloatDistribution(1e-3, 10.0, log=True),
            "reg_alpha": FloatDistribution(1e-3, 10.0, log=True),
        }

    def default_params(self, task: str) -> dict[str, Any]:
        return {"n_estimators": 400, "learning_rate": 0.05, "num_leaves": 31, "min_child_samples": 20,
                "colsample_bytree": 0.8, "subsample": 1.0, "reg_lambda": 0.01, "reg_alpha": 0.001}

    def build(self, params: dict[str, Any], task: str, n_jobs: int, seed: int):
        estimator = LGBMRegressor if task == "regression" else LGBMClassifier
        return estimator(**params, subsample_freq=1, n_jobs=n_jobs, random_state=seed, verbose=-1,
                         deterministic=True, force_row_wise=True)
