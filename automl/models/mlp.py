"""The MLP family: a tabular MLP in PyTorch (``automl.models._tabular_mlp``), its search
space, portfolio and cost. torch is imported only when a network is built, so planning a
run, or a run without the MLP, does not pay torch's import (seconds on a small machine)."""

from __future__ import annotations

from typing import Any

from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from automl.models.base import ModelFamily

SECONDS_PER_ROW, SECONDS_PER_FIT = 7e-4, 0.5
"""One fit of the default network, early-stopped, on one CPU thread: 20.9 s for 29k rows
of the adult data (measured on this project's 2-core machine). Small tables train more
epochs (``MIN_STEPS``) and take longer than this says (titanic's 600 rows: about 4 s):
the planner's estimate is only the first guess, and the MLP's first trial, measured, sets
the rest; a low guess keeps the MLP, strong on small tables, in their plans."""
MAX_EMBEDDED_FEATURES = 256
"""Wider tables skip the periodic embeddings: they would multiply the first layer's inputs."""
PERIODIC_FREQUENCIES, PERIODIC_SIZE = 16, 8
"""Each numeric feature: 16 learned frequencies (cos and sin of each), mapped to 8 values."""
LARGE_TABLE_ROWS, LARGE_TABLE_SPREAD = 20_000, 100.0
"""From this many training rows, the MLP's "auto" inputs resolve numeric values finely: a
quantile map (a heavy-tailed column such as adult's capital gain, mostly zero, keeps its
order at every size instead of being clipped) and periodic frequencies starting spread
from the scale to this many times it. The portfolio default on the shared datasets
(benchmarks/mlp.py, 2 cores): adult AUC 0.9130 -> 0.9235 (LightGBM 0.9274), diamonds RMSE
567 -> 564; below it they cost: sonar 0.942 -> 0.798, ionosphere 0.979 -> 0.911 (quantiles
alone: 0.936), mammography (8k rows) 0.954 -> 0.952."""
INPUTS_PER_ROW_COST = 1000
"""A row costs SECONDS_PER_ROW x (1 + the first layer's inputs / this): its inputs grow with
the features, counted as 8 each up to MAX_EMBEDDED_FEATURES features (the periodic
embeddings' size; the planner does not tell numeric from categorical ones), one each beyond.
Measured on 4,050 rows, one thread: 3.4 s with 25 features, 11.0 s with 200, 7.7 s with
2,000 (early-stopped sooner)."""

WARM_UP_ROWS, WARM_UP_LIMIT_S = 512, 5.0
"""The warm-up fit (``MLPFamily.warm_up``): enough steps to load every kernel a step uses."""


class MLPFamily(ModelFamily):
    name = "mlp"
    first_step_share = 1 / 8  # it can stop after an epoch once one is kept; early-stopped fits take 10-60
    uses_gpu = True
    gpu_speedup = 10.0  # an H100 against one CPU thread, on adult (issue #16's figures); a first guess only
    relative_cost = 4.0
    model_modules = ("automl.models._tabular_mlp",)  # torch: 2.3-2.8 s to import on 2 cores

    def search_space(self, task: str) -> dict:
        return {
            "n_layers": IntDistribution(1, 4),
            "width": IntDistribution(64, 512, log=True),
            "dropout": FloatDistribution(0.0, 0.5),
            "activation": CategoricalDistribution(("relu", "selu", "silu")),
            "ensemble_size": CategoricalDistribution((1, 4, 8, 16)),
            "periodic_scale": CategoricalDistribution((None, 0.01, 0.1, 1.0)),
            "learning_rate": FloatDistribution(3e-4, 1e-2, log=True),
            "weight_decay": FloatDistribution(1e-6, 1e-2, log=True),
            "label_smoothing": FloatDistribution(0.0, 0.2) if task != "regression" else FloatDistribution(0.0, 0.0),
            "numeric_transform": CategoricalDistribution(("robust", "quantile", "auto")),
            "frequency_spread": CategoricalDistribution((1.0, 10.0, 100.0, "auto")),
        }

    def portfolio(self, task: str) -> list[dict[str, Any]]:
        return [
            # TabM-mini (Gorishniy et al., 2024, "TabM: Advancing Tabular Deep Learning with
            # Parameter-Efficient Ensembling"): four members sharing two 128-wide layers, with
            # periodic numeric embeddings (their "PLR lite") and RealMLP's robust, softly clipped
            # inputs and beta2 = 0.95. Measured on the shared datasets (benchmarks/mlp.py), it beat
            # LightGBM's defaults on 7 of 10, where the MLP it replaced beat them on 3. On large
            # tables its inputs resolve finer (LARGE_TABLE_ROWS).
            {"n_layers": 2, "width": 128, "dropout": 0.1, "activation": "relu", "ensemble_size": 4,
             "periodic_scale": 0.1, "learning_rate": 2e-3, "weight_decay": 3e-4, "label_smoothing": 0.0,
             "numeric_transform": "auto", "frequency_spread": "auto"},
            # RealMLP-TD's shape (Holzmuller et al., 2024, "Better by Default"): three 256-wide SELU
            # layers, one network, wider-spread periodic embeddings.
            {"n_layers": 3, "width": 256, "dropout": 0.15, "activation": "selu", "ensemble_size": 1,
             "periodic_scale": 1.0, "learning_rate": 1e-3, "weight_decay": 1e-5, "label_smoothing": 0.0,
             "numeric_transform": "robust", "frequency_spread": 1.0},
        ]

    def fold_fit_s(self, n_rows: int, n_features: int) -> float:
        inputs = n_features * (PERIODIC_SIZE if n_features <= MAX_EMBEDDED_FEATURES else 1)
        return SECONDS_PER_FIT + n_rows * SECONDS_PER_ROW * (1 + inputs / INPUTS_PER_ROW_COST)

    def estimated_trial_s(self, n_rows: int, n_features: int, n_folds: int) -> float:
        return n_folds * self.fold_fit_s(n_rows, n_features)

    def fit(self, estimator, X, y, time_limit_s: float | None = None, validation: tuple | None = None,
            in_time_order: bool = False):
        """Trains until its own early stopping or ``time_limit_s``, keeping its best epoch."""
        return estimator.fit(X, y, time_limit_s=time_limit_s, in_time_order=in_time_order)

    def place(self, estimator, gpus: float) -> None:
        """Only a trial given a GPU uses one: a CPU trial on a GPU machine never takes it unasked.
        A trial given one trains on the GPU CUDA shows it ("auto": on the CPUs if it shows none)."""
        estimator.set_params(device="auto" if gpus else "cpu")

    def warm_up(self) -> None:
        """torch's import, then the default network fitted on WARM_UP_ROWS generated rows (a
        categorical column too) on the GPU CUDA shows the worker: its context, and the kernels
        and CUDA graphs' machinery a trial's steps use, start here (a first fit on an H100:
        6.4 s). Where CUDA shows none, trials train on the CPUs and the import is all."""
        from automl.models._tabular_mlp import pick_device

        if pick_device().type != "cuda":
            return
        import numpy as np
        import pandas as pd

        rng = np.random.default_rng(0)
        X = pd.DataFrame({"x": rng.normal(size=WARM_UP_ROWS),
                          "band": pd.Categorical(rng.choice(["a", "b"], size=WARM_UP_ROWS))})
        model = self.build(self.default_params("binary"), "binary", n_jobs=1, seed=0)
        self.place(model, gpus=1)
        model.fit(X, (X["x"] > 0).to_numpy(dtype=int), time_limit_s=WARM_UP_LIMIT_S)

    def build(self, params: dict[str, Any], task: str, n_jobs: int, seed: int):
        from automl.models._tabular_mlp import TabularMLP

        return TabularMLP(task=task, **params, n_jobs=n_jobs, random_state=seed)
