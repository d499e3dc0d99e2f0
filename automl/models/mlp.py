"""The MLP family: a tabular MLP in PyTorch (``automl.models._tabular_mlp``), its search
space, portfolio and cost. torch is imported only when a network is built, so planning a
run, or a run without the MLP, does not pay torch's import (seconds on a small machine)."""

from __future__ import annotations

from typing import Any

from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from automl.models.base import ModelFamily

SECONDS_PER_ROW = 2e-4
"""One fit of the default network, early-stopped, on one CPU thread: about 5.3 s for
26k rows of the adult data (measured on this project's 2-core machine)."""


class MLPFamily(ModelFamily):
    name = "mlp"
    first_step_share = 1 / 8  # it can stop after an epoch once one is kept; early-stopped fits take 10-60
    uses_gpu = True
    relative_cost = 4.0
    model_modules = ("automl.models._tabular_mlp",)  # torch: 2.3-2.8 s to import on 2 cores

    def search_space(self, task: str) -> dict:
        return {
            "n_layers": IntDistribution(1, 4),
            "width": IntDistribution(32, 512, log=True),
            "dropout": FloatDistribution(0.0, 0.5),
            "normalization": CategoricalDistribution(("batch", "layer", "none")),
            "learning_rate": FloatDistribution(1e-4, 1e-2, log=True),
            "weight_decay": FloatDistribution(1e-6, 1e-2, log=True),
            "batch_size": CategoricalDistribution((64, 128, 256, 512)),
            "numeric_transform": CategoricalDistribution(("standard", "quantile")),
        }

    def portfolio(self, task: str) -> list[dict[str, Any]]:
        return [
            # The common tabular MLP baseline (Gorishniy et al., 2021): two layers, batch norm, AdamW.
            {"n_layers": 2, "width": 128, "dropout": 0.1, "normalization": "batch", "learning_rate": 3e-3,
             "weight_decay": 1e-4, "batch_size": 256, "numeric_transform": "quantile"},
            # AutoGluon's 2023 zero-shot portfolio, NN_TORCH "_r79": deeper and narrower, batch norm.
            {"n_layers": 4, "width": 108, "dropout": 0.1, "normalization": "batch", "learning_rate": 2.7e-3,
             "weight_decay": 1e-6, "batch_size": 256, "numeric_transform": "quantile"},
        ]

    def fold_fit_s(self, n_rows: int, n_features: int) -> float:
        return n_rows * SECONDS_PER_ROW

    def estimated_trial_s(self, n_rows: int, n_features: int, n_folds: int) -> float:
        return n_folds * self.fold_fit_s(n_rows, n_features)

    def fit(self, estimator, X, y, time_limit_s: float | None = None, validation: tuple | None = None,
            in_time_order: bool = False):
        """Trains until its own early stopping or ``time_limit_s``, keeping its best epoch."""
        return estimator.fit(X, y, time_limit_s=time_limit_s, in_time_order=in_time_order)

    def build(self, params: dict[str, Any], task: str, n_jobs: int, seed: int):
        from automl.models._tabular_mlp import TabularMLP

        return TabularMLP(task=task, **params, n_jobs=n_jobs, random_state=seed)
