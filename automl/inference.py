"""The inference budget (``predict.max_ms_per_row``): what a final model costs to predict
a row, and which members and which form (bagged or refit) fit the budget.

A trial's cost is measured where it predicted its validation rows: in batches, on the
trial's threads (one, mostly), so milliseconds per row of one fitted model. A member kept
as its fold models bagged costs that once per fold model; refit on all rows, once. A blend
costs the sum of its members, plus what turning rows into features costs (measured once
at the end of the search). Prediction on more cores, in larger batches, only takes less.

``auto`` (the default) applies to large tables (LARGE_TABLE_ROWS training rows or more),
where bagging and blending often gain little and multiply the prediction time and the model
folder: the final model is the one chosen within the smallest budget, from what the best
single model costs refit and doubling, whose CV score is within one standard error of the
model chosen with no budget (see ``automl.final_model``). Measured on adult (32,561 rows,
60 s fits), the bagged blend of four members scored 0.9288 test AUC and its best member
alone 0.9287, while the blend predicted the test split in 2.9 s and one row in 67 ms
(18.6 MB) against 0.35 s and 9 ms for one model refit; on diamonds one model refit lost
10 RMSE of CV score against the blend's 528, beyond its error (5.7), and a larger budget
is taken. Smaller tables get no limit: bagging pays there, and predicting them costs little.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import pandas as pd

from automl.data import FeatureSchema
from automl.prediction import BaggedModel
from automl.trial import TrialOutcome

ROUNDING = 1e-9
"""Costs are compared with this relative slack: a budget made of a model's own cost fits it."""
LARGE_TABLE_ROWS = 20_000
"""From this many training rows, ``max_ms_per_row: auto`` limits the final model to the best
single model's cost, refit."""


def ms_per_row(outcome: TrialOutcome, predicted_rows: int) -> float:
    """Milliseconds per row of one of a trial's fitted models, which predicted ``predicted_rows``
    rows over its folds in ``predict_time_s``."""
    return 1000.0 * outcome.predict_time_s / max(1, predicted_rows)


@dataclass(frozen=True)
class InferenceBudget:
    """The limit on a final model's prediction cost, and the costs of candidates."""

    max_ms_per_row: float
    """math.inf: no limit."""
    predicted_rows: int
    """Rows a trial predicted over its folds (its ``predict_time_s`` is for these)."""
    refit_forced: bool = False
    """``predict.refit_full``: members are refit on all rows whatever the budget."""
    overhead_ms: float = 0.0
    """What every prediction pays a row besides its models: reading the rows into features."""

    @classmethod
    def resolve(cls, asked: float | str | None, best: TrialOutcome, predicted_rows: int, n_rows: int,
                refit_forced: bool = False, overhead_ms: float = 0.0) -> InferenceBudget:
        """The budget ``asked`` for (a number, ``"auto"`` or None) on this data; ``best`` is the best trial."""
        unlimited = cls(math.inf, predicted_rows, refit_forced, overhead_ms)
        if asked == "auto":
            limit = unlimited.cost_ms([best], refit=True) if n_rows >= LARGE_TABLE_ROWS else math.inf
        else:
            limit = math.inf if asked is None else float(asked)
        return cls(limit, predicted_rows, refit_forced, overhead_ms)

    def scaled(self, factor: float) -> InferenceBudget:
        return InferenceBudget(self.max_ms_per_row * factor, self.predicted_rows, self.refit_forced, self.overhead_ms)

    def model_ms(self, outcome: TrialOutcome) -> float:
        """Milliseconds per row of one of the trial's fitted models."""
        return ms_per_row(outcome, self.predicted_rows)

    def member_ms(self, outcome: TrialOutcome, refit: bool) -> float:
        """Milliseconds per row of the trial as a member: refit (one model), or its fold models bagged."""
        bagged = not (refit or self.refit_forced) and outcome.fold_models is not None
        return self.model_ms(outcome) * (len(outcome.fold_models) if bagged else 1)

    def cost_ms(self, members: list[TrialOutcome], refit: bool) -> float:
        """A final model's milliseconds a row: its members' and the features'."""
        return self.overhead_ms + sum(self.member_ms(member, refit) for member in members)

    def final_ms(self, members: list[TrialOutcome], estimators: list[Any]) -> float:
        """Milliseconds per row of the final model: each member's models, as made (``estimators``)."""
        return self.overhead_ms + sum(
            self.model_ms(member) * (len(estimator.models) if isinstance(estimator, BaggedModel) else 1)
            for member, estimator in zip(members, estimators, strict=True))

    @property
    def models_limit_ms(self) -> float:
        """What the members may take a row together: the budget less the features' cost."""
        return (self.max_ms_per_row - self.overhead_ms) * (1 + ROUNDING)

    def fits(self, members: list[TrialOutcome], refit: bool) -> bool:
        return self.cost_ms(members, refit) <= self.max_ms_per_row * (1 + ROUNDING)

    def expects_refit(self, best: TrialOutcome) -> bool:
        """Whether the final model will likely be refit: asked for, or the best trial's fold
        models bagged exceed the budget (the search keeps time back for the refit)."""
        return self.refit_forced or not self.fits([best], refit=False)


OVERHEAD_SAMPLE_ROWS = 2_000


def features_ms_per_row(schema: FeatureSchema, X: pd.DataFrame) -> float:
    """Milliseconds a row to turn rows into the models' features (``FeatureSchema.transform``),
    timed on up to OVERHEAD_SAMPLE_ROWS training rows (best of three) as the training features
    read them back: 0.002 ms a row on adult, a tenth of its LightGBM's cost. Date columns,
    split into parts in ``X``, cannot be read back: 0 then (those tables' cost is the models')."""
    sample = X.iloc[:OVERHEAD_SAMPLE_ROWS]
    if any(name not in sample.columns for name in schema.required_columns):
        return 0.0
    sample = sample.astype({name: object for name, dtype in sample.dtypes.items()  # as rows arrive: text
                            if isinstance(dtype, pd.CategoricalDtype)})
    best = math.inf
    for _ in range(3):
        started = time.perf_counter()
        schema.transform(sample)
        best = min(best, time.perf_counter() - started)
    return 1000.0 * best / max(1, len(sample))
