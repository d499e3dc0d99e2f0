"""The inference budget (predict.max_ms_per_row): candidates' costs, the ensemble within it, and a fit."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from automl import inference
from automl.data import prepare_training
from automl.engine import Run, run_fit
from automl.ensemble import select_ensemble
from automl.final_model import select_members
from automl.inference import InferenceBudget
from automl.metrics import get_metric
from automl.planner import plan
from automl.progress import Progress
from automl.spec import build_spec, load_spec
from automl.trial import COMPLETE, TrialOutcome
from automl.validation import make_folds
from tests.conftest import write_spec


def _noisy(y: np.ndarray, noise: float, seed: int) -> np.ndarray:
    """Out-of-fold probabilities (two columns) that are right more often the less the noise."""
    rng = np.random.default_rng(seed)
    positive = np.clip(y + rng.normal(0, noise, len(y)), 0, 1)
    return np.column_stack([1 - positive, positive])


def test_the_ensemble_selection_keeps_its_members_total_cost_within_the_limit():
    y = np.random.default_rng(0).integers(0, 2, 400)
    valid_sets = [np.arange(0, 200), np.arange(200, 400)]
    predictions = [_noisy(y, 0.3, 1), _noisy(y, 0.6, 2), _noisy(y, 0.6, 3)]  # the first is best, and dearest
    metric = get_metric("log_loss", "binary")
    unlimited = select_ensemble(predictions, y, metric, 10, valid_sets)
    assert 0 in unlimited.weights
    within = select_ensemble(predictions, y, metric, 10, valid_sets, costs=[3.0, 1.0, 1.0], max_cost=2.0)
    assert set(within.weights) == {1, 2} and math.isclose(sum(within.weights.values()), 1.0)
    assert metric.is_better(unlimited.score, within.score)
    assert select_ensemble(predictions, y, metric, 10, valid_sets, costs=[3.0, 1.0, 1.0], max_cost=0.5).weights == {}


def _outcome(number: int, score: float, predict_time_s: float, fold_models: int | None = 5, oof=None) -> TrialOutcome:
    return TrialOutcome(number, "lightgbm", {}, COMPLETE, fold_scores=[score], predict_time_s=predict_time_s,
                        fold_models=[b"model"] * fold_models if fold_models else None, oof=oof)


def test_the_budget_prices_bagged_members_per_fold_model_and_auto_limits_only_large_tables():
    best = _outcome(0, 0.9, predict_time_s=0.5)  # 0.5 ms a row over its 1,000 predicted rows, per model
    large = InferenceBudget.resolve("auto", best, predicted_rows=1_000, n_rows=inference.LARGE_TABLE_ROWS)
    assert large.max_ms_per_row == pytest.approx(0.5)
    assert large.member_ms(best, refit=False) == pytest.approx(2.5) and large.member_ms(best, refit=True) == 0.5
    assert large.fits([best], refit=True) and not large.fits([best], refit=False) and large.expects_refit(best)
    assert not large.fits([best, _outcome(1, 0.8, 0.1, fold_models=None)], refit=True)  # a blend costs its sum
    small = InferenceBudget.resolve("auto", best, 1_000, n_rows=inference.LARGE_TABLE_ROWS - 1)
    assert small.max_ms_per_row == math.inf and not small.expects_refit(best)
    assert InferenceBudget.resolve(None, best, 1_000, 10**6).max_ms_per_row == math.inf
    assert InferenceBudget.resolve(3.0, best, 1_000, 10).fits([best], refit=False)
    forced = InferenceBudget.resolve(1.0, best, 1_000, 10, refit_forced=True)
    assert forced.member_ms(best, refit=False) == 0.5 and forced.expects_refit(best)


def _run_with(outcomes: list[TrialOutcome], n_rows: int, **predict) -> Run:
    spec = build_spec({"data": {"train": "x.csv", "target": "y"}, "budget": {"time_s": 60}, "predict": predict})
    run = Run(spec, plan(spec, "binary", n_rows, 5), Path("unused"), Progress(enabled=False), started=time.monotonic())
    run.outcomes = outcomes
    run.predicted_rows = n_rows  # as the search counts them: k-fold covers every row
    return run


def _trials_on(rows: int, n_folds: int, seed: int):
    """Data, folds, the metric, and a maker of finished trials with given out-of-fold predictions."""
    rng = np.random.default_rng(seed)
    data = prepare_training(pd.DataFrame({"x": rng.normal(size=rows), "y": rng.integers(0, 2, rows)}), "y", "binary")
    folds = make_folds("binary", data.y, n_folds, seed=0)
    metric = get_metric("log_loss", "binary")

    def trial(number: int, oof: np.ndarray, predict_time_s: float) -> TrialOutcome:
        scores = [metric.score(data.y[valid], oof[valid]) for _, valid in folds.splits]
        return TrialOutcome(number, "lightgbm", {}, COMPLETE, fold_scores=scores, oof=oof,
                            predict_time_s=predict_time_s, fold_models=[b"model"] * n_folds)

    return data, folds, metric, trial


def test_the_final_model_is_the_best_blend_within_the_budget_refit_where_bagged_fold_models_cost_too_much():
    data, folds, metric, made = _trials_on(600, 2, seed=0)

    def trial(number, noise, predict_time_s):
        return made(number, _noisy(data.y, noise, number), predict_time_s)

    # per model, a row: 0.5 ms for the best, 0.1 ms each for two others (600 predicted rows)
    outcomes = [trial(0, 0.3, 0.3), trial(1, 0.5, 0.06), trial(2, 0.5, 0.06)]
    members, _, _ = select_members(_run_with(outcomes, 600, max_ms_per_row=None), data, folds, metric)
    assert outcomes[0] in members

    run = _run_with(outcomes, 600, max_ms_per_row=0.65)  # the best fits refit (0.5), not bagged (1.0)
    members, weights, _ = select_members(run, data, folds, metric)
    assert outcomes[0] in members and run.refit_for_budget
    assert run.budget.cost_ms(members, refit=True) <= 0.65
    assert run.inference["max_ms_per_row"] == 0.65 and "unlimited_cv_score" in run.inference
    assert 0 < run.budget.overhead_ms < 0.01  # the features' cost a row, counted in each cost

    run = _run_with(outcomes, 600, max_ms_per_row=0.45)  # only the cheap two: bagged (0.2 each) fit
    members, weights, _ = select_members(run, data, folds, metric)
    assert {m.number for m in members} <= {1, 2} and not run.refit_for_budget  # a tie: bagged kept
    assert run.budget.cost_ms(members, refit=False) <= 0.45

    run = _run_with(outcomes, 600, max_ms_per_row=0.01)  # none fits: the fastest alone, refit, said so
    members, weights, scores = select_members(run, data, folds, metric)
    assert members == [outcomes[1]] and weights == [1.0] and scores is None and run.refit_for_budget
    assert "no model predicts within predict.max_ms_per_row=0.01" in run.ensemble_note


def test_auto_ships_the_cheapest_model_within_one_standard_error_of_the_unlimited_ones_score(monkeypatch):
    monkeypatch.setattr(inference, "LARGE_TABLE_ROWS", 100)
    data, folds, metric, trial = _trials_on(900, 3, seed=1)

    # two equally good models whose errors cancel out: their blend is far better than either
    signal = _noisy(data.y, 0.0, 0)[:, 1]
    shift = np.random.default_rng(2).normal(0, 0.35, len(data.y))
    halves = [np.clip(signal + sign * shift, 0.01, 0.99) for sign in (1, -1)]
    outcomes = [trial(n, np.column_stack([1 - half, half]), 0.9) for n, half in enumerate(halves)]
    members, _, scores = select_members(run := _run_with(outcomes, 900), data, folds, metric)
    assert len(members) == 2 and run.refit_for_budget  # the blend refit: twice one model's cost
    assert run.inference["max_ms_per_row"] == pytest.approx(2.0, rel=0.01)  # with the features' cost

    first = _noisy(data.y, 0.3, 5)
    twin = np.clip(first + np.random.default_rng(6).normal(0, 0.01, first.shape), 0.01, 0.99)
    close = [trial(0, first, 0.9), trial(1, twin / twin.sum(axis=1, keepdims=True), 0.9)]
    members, _, scores = select_members(run := _run_with(close, 900), data, folds, metric)
    assert len(members) == 1 and scores is None and run.refit_for_budget  # near twins: the blend gains next to nothing
    assert run.inference["max_ms_per_row"] == pytest.approx(1.0, rel=0.01)


def test_a_fit_within_the_auto_budget_ships_refit_members_and_records_their_cost(tmp_path, binary_frame,
                                                                                       monkeypatch):
    monkeypatch.setattr(inference, "LARGE_TABLE_ROWS", 100)  # breast cancer's 569 rows count as a large table
    spec = load_spec(write_spec(tmp_path, binary_frame, budget={"time_s": 12, "max_trials": 5},
                                models={"include": ["lightgbm", "linear"]}))
    result = run_fit(spec)
    summary = json.loads((result.output_dir / "run.json").read_text())
    board = result.leaderboard
    shipped = board[board["model"] == summary["best_model"]].iloc[0]
    assert summary["final_model"] == "refit"  # bagged, the best alone costs its three fold models
    assert summary["inference"]["asked"] == "auto" and "cv_score_lost" in summary["inference"]
    assert summary["inference"]["ms_per_row"] <= summary["inference"]["max_ms_per_row"] * (1 + 1e-9)
    assert shipped["predict_ms_per_row"] + summary["inference"]["features_ms_per_row"] == pytest.approx(
        summary["inference"]["ms_per_row"])
    assert (board["predict_ms_per_row"] > 0).all()
