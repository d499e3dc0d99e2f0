"""After the search: how the models do on rows they were not fit on.

* holdout scores for every leaderboard row (each trial's fold models averaged
  on the holdout, as they were computed in the workers) and for the final model;
* the gaps between train, CV and holdout scores, flagged when large;
* permutation feature importance of the final model, time-limited;
* the predictions behind the report's diagnostic plots and the fairness table.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from sklearn.inspection import permutation_importance

from automl.budget import WRITE_MARGIN_S, importance_limit_s
from automl.evaluate import scores_of
from automl.fairness import fairness_report
from automl.metrics import Metric, score_or_nan
from automl.mitigation import mitigation_effect
from automl.prediction import BaggedModel, blend, predict_matrix, weighted_mean
from automl.trial import COMPLETE, TrialOutcome

if TYPE_CHECKING:
    from automl.artifact import Predictor
    from automl.engine import Run
    from automl.inputs import Inputs

LARGE_GAP_SHARE = 0.05
"""A gap between two scores is large when it passes this share of the CV score's size
(and twice the CV score's spread across folds)."""
IMPORTANCE_ROWS = 1000
IMPORTANCE_MIN_ROWS = 200
IMPORTANCE_REPEATS = 3
IMPORTANCE_TIMING_ROWS = 20
"""A prediction on this few rows times what any prediction costs, whatever its rows."""


def holdout_scores(outcomes: list[TrialOutcome], y: np.ndarray, metric: Metric) -> dict[int, float]:
    """Trial number -> the holdout score of its fold models' mean prediction."""
    scores = {}
    for outcome in outcomes:
        if outcome.status == COMPLETE and outcome.holdout_prediction is not None:
            scores[outcome.number] = score_or_nan(metric, y, outcome.holdout_prediction)
    return scores


def gap_warnings(model: str, train: float, cv: float, cv_std: float, holdout: float | None,
                 metric: Metric) -> list[str]:
    """A line for each large gap: train better than CV (overfitting), CV better than holdout
    (an optimistic CV, or a holdout unlike the training rows)."""
    allowed = max(LARGE_GAP_SHARE * abs(cv), 2 * (cv_std if np.isfinite(cv_std) else 0.0))
    sign = 1 if metric.higher_is_better else -1
    notes = []
    if np.isfinite(train) and sign * (train - cv) > allowed:
        notes.append(f"{model}: train {metric.name} {train:.4g} is far better than CV {cv:.4g} (overfitting)")
    if holdout is not None and np.isfinite(holdout) and sign * (cv - holdout) > allowed:
        notes.append(f"{model}: holdout {metric.name} {holdout:.4g} is far worse than CV {cv:.4g}")
    return notes


@dataclass
class Diagnostics:
    """The labels and predictions behind the report's plots and the fairness table."""

    y: np.ndarray
    prediction: np.ndarray
    source: str


@dataclass
class Checks:
    """What the run learnt about its models after the search."""

    holdout: dict[str, Any] | None
    """The final model's scores on the holdout (None without one)."""
    row_holdout: dict[int, float]
    ensemble_holdout: float
    diagnostics: Diagnostics
    importance: Importance
    fairness: dict[str, Any] | None
    warnings: list[str] = field(default_factory=list)


# -- feature importance --------------------------------------------------------
class FittedMembers:
    """The final members as one estimator for scikit-learn's permutation_importance,
    which asks for something with ``fit``: these are fitted already and never refit."""

    def __init__(self, estimators: list[Any], weights: list[float], task: str, n_classes: int):
        self.estimators, self.weights, self.task, self.n_classes = estimators, weights, task, n_classes

    def fit(self, X, y) -> FittedMembers:
        return self

    def predict_matrix(self, X: pd.DataFrame) -> np.ndarray:
        return blend(self.estimators, self.weights, X, self.task, self.n_classes)


@dataclass
class Importance:
    rows: list[dict]
    """``{"feature", "importance", "std"}``, most important first (drop in the metric, higher is better)."""
    source: str
    note: str = ""


def feature_importance(model: FittedMembers, X: pd.DataFrame, y: np.ndarray, source: str, metric: Metric,
                       time_limit_s: float, seed: int = 0) -> Importance:
    """Permutation importance on at most IMPORTANCE_ROWS rows, with as many repeats (up to
    IMPORTANCE_REPEATS) and rows as fit in ``time_limit_s``, its timing predictions included.
    A prediction's cost is not proportional to its rows: on wine_white's forests, 514 rows
    took 0.35 s and 1,000 took 0.5 s (threads to start), and a row count sized as if it were
    took 5.3 s of a 3 s limit. So the cost is timed on a few rows and on all, and the rows
    kept come from the line through both."""
    deadline = time.perf_counter() + time_limit_s
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(X), size=min(len(X), IMPORTANCE_ROWS), replace=False))
    X, y = X.iloc[rows], y[rows]
    few = X.iloc[:IMPORTANCE_TIMING_ROWS]
    model.predict_matrix(few)  # the first call warms caches and thread pools: timed, it skipped importance
    fixed_s = _seconds_to_predict(model, few)
    all_s = max(_seconds_to_predict(model, X), fixed_s)
    n_features = X.shape[1]
    predictions = 1 + n_features  # the baseline, then each feature permuted, per repeat
    left = deadline - time.perf_counter()
    repeats = min(IMPORTANCE_REPEATS, int((left / all_s - 1) / n_features))
    if repeats < 1:
        per_row_s = max(all_s - fixed_s, 1e-9) / max(len(X) - len(few), 1)
        keep = int((left / predictions - fixed_s) / per_row_s)
        if keep < min(IMPORTANCE_MIN_ROWS, len(X)):
            return Importance([], source, f"skipped: {n_features} permutations would take "
                                          f"{all_s * predictions:.1f}s, more than the {time_limit_s:.1f}s allowed")
        X, y, repeats = X.iloc[:keep], y[:keep], 1
    sign = 1 if metric.higher_is_better else -1

    def scorer(estimator: FittedMembers, X_: pd.DataFrame, y_: np.ndarray) -> float:
        return sign * score_or_nan(metric, y_, estimator.predict_matrix(X_))

    result = permutation_importance(model, X, y, scoring=scorer, n_repeats=repeats, random_state=seed)
    order = np.argsort(-result.importances_mean, kind="stable")
    table = [{"feature": str(X.columns[i]), "importance": float(result.importances_mean[i]),
              "std": float(result.importances_std[i])} for i in order]
    return Importance(table, source, f"{len(X)} rows, {repeats} repeat(s)")


def _seconds_to_predict(model: FittedMembers, X: pd.DataFrame) -> float:
    started = time.perf_counter()
    model.predict_matrix(X)
    return time.perf_counter() - started


def assess_run(run: Run, inputs: Inputs, predictor: Predictor, members: list[TrialOutcome],
               weights: list[float], holdout_X: pd.DataFrame | None) -> Checks:
    """Holdout scores (every trial and the final model), diagnostics, feature importance and
    fairness: on the holdout when there is one, otherwise out of fold."""
    data, metric, spec = inputs.data, inputs.metric, run.spec
    if holdout_X is not None:
        y = data.target.encode(inputs.holdout[spec.data.target])
        member_mean = weighted_mean([m.holdout_prediction for m in members], weights)
        sensitive = inputs.holdout[spec.data.sensitive].reset_index(drop=True)
        members_blend = _final_holdout_prediction(members, predictor, weights, holdout_X)
        prediction = predictor.finished(members_blend, sensitive)
        holdout = scores_of(predictor, y, prediction)
        ensemble_holdout = score_or_nan(metric, y, member_mean) if member_mean is not None else float("nan")
        diagnostics = Diagnostics(y, prediction, "holdout")
        importance_on = (_importance_model(inputs, predictor, weights), holdout_X, y, "holdout")
    else:
        covered = inputs.folds.covered
        holdout, ensemble_holdout = None, float("nan")
        sensitive = data.sensitive[covered].reset_index(drop=True) if data.sensitive is not None else None
        members_blend = weighted_mean([m.oof for m in members], weights)[covered]
        diagnostics = Diagnostics(data.y[covered], predictor.finished(members_blend, sensitive),
                                  "out-of-fold predictions")
        importance_on = _importance_rows_without_holdout(run, inputs, predictor, weights)
    time_left = max(0.0, run.hard_deadline - time.monotonic() - WRITE_MARGIN_S)
    importance = feature_importance(*importance_on, metric=metric, time_limit_s=min(importance_limit_s(spec),
                                                                                     time_left), seed=spec.seed)
    fairness = (fairness_report(diagnostics.y, diagnostics.prediction, sensitive, data.task, metric,
                                diagnostics.source) if spec.data.sensitive else None)
    if predictor.mitigation is not None:
        calibrated = predictor.calibrated(members_blend)
        unmitigated = fairness_report(diagnostics.y, calibrated, sensitive, data.task, metric, diagnostics.source)
        fairness |= {"unmitigated": unmitigated,
                     "mitigation": mitigation_effect(predictor.mitigation.constraint, unmitigated, fairness,
                                                     diagnostics.y, calibrated, diagnostics.prediction, metric)}
    row_holdout = holdout_scores(run.outcomes, diagnostics.y, metric) if holdout is not None else {}
    return Checks(holdout, row_holdout, ensemble_holdout, diagnostics, importance, fairness)


def _final_holdout_prediction(members: list[TrialOutcome], predictor: Predictor, weights: list[float],
                              holdout_X: pd.DataFrame) -> np.ndarray:
    """What the final model predicts for the holdout. A bagged member's trial predicted it in
    its worker, with the same fold models; a refit member predicts it now."""
    parts = [outcome.holdout_prediction if isinstance(member.estimator, BaggedModel)
             else predict_matrix(member.estimator, holdout_X, predictor.task, predictor.target.n_classes)
             for outcome, member in zip(members, predictor.members, strict=True)]
    return weighted_mean(parts, weights)


def _importance_rows_without_holdout(run: Run, inputs: Inputs, predictor: Predictor, weights: list[float]):
    """Rows no model saw: the first fold's validation rows, predicted by the members' first
    fold models when they were bagged; otherwise the training rows, and the source says so."""
    data = inputs.data
    model = _importance_model(inputs, predictor, weights)
    if run.final_model == "bagged":
        _, valid_idx = inputs.folds.splits[0]
        return model, data.X.iloc[valid_idx], data.y[valid_idx], "CV fold 1 (rows its models never saw)"
    return model, data.X, data.y, "training rows (the model was fit on them: importance may be overstated)"


def _importance_model(inputs: Inputs, predictor: Predictor, weights: list[float]) -> FittedMembers:
    """The model whose permutation importance is measured: each bagged member's first fold
    model (k times cheaper to predict with than all k, and the same kind of model), and
    each refit member itself."""
    data = inputs.data
    estimators = [m.estimator.models[0] if isinstance(m.estimator, BaggedModel) else m.estimator
                  for m in predictor.members]
    return FittedMembers(estimators, weights, data.task, data.target.n_classes)
