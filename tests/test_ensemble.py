"""Greedy ensemble selection over out-of-fold predictions."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from automl.data import FeatureSchema
from automl.engine import Run
from automl.ensemble import fold_scores, select_ensemble
from automl.final_model import ENSEMBLE_CANDIDATES, ensemble_candidates, select_members
from automl.metrics import get_metric
from automl.planner import plan
from automl.progress import Progress
from automl.spec import build_spec
from automl.trial import COMPLETE, TrialOutcome
from automl.validation import make_folds

N = 200


@pytest.fixture
def rng() -> np.random.Generator:
    """A fresh generator per test, so a test's data do not depend on which ran before it."""
    return np.random.default_rng(0)


def valid_sets(task: str, y: np.ndarray) -> list[np.ndarray]:
    return [valid for _, valid in make_folds(task, y, 5, seed=0).splits]


def proba(p1: np.ndarray) -> np.ndarray:
    p1 = np.clip(p1, 0.01, 0.99)
    return np.column_stack([1 - p1, p1])


def binary_case(rng: np.random.Generator):
    y = rng.integers(0, 2, size=N)
    noisy = [proba(0.5 + 0.25 * (y - 0.5) + rng.normal(0, 0.25, N)) for _ in range(3)]
    return y, noisy


def blend_of(predictions, weights):
    return sum(w * predictions[i] for i, w in weights.items())


def check_selection(selection, predictions, y, metric, valids):
    """Weights are a distribution over candidates, and the score is the blend's CV score."""
    assert selection.weights
    assert all(0 <= i < len(predictions) for i in selection.weights)
    assert all(w > 0 for w in selection.weights.values())
    assert sum(selection.weights.values()) == pytest.approx(1.0)
    assert len(selection.fold_scores) == len(valids)
    expected = fold_scores(blend_of(predictions, selection.weights), y, metric, valids)
    np.testing.assert_allclose(selection.fold_scores, expected, rtol=1e-9)
    assert selection.score == pytest.approx(np.mean(expected))
    best_single = [np.mean(fold_scores(p, y, metric, valids)) for p in predictions]
    best = max(best_single) if metric.higher_is_better else min(best_single)
    assert selection.score == pytest.approx(best) or metric.is_better(selection.score, best)


@pytest.mark.parametrize("metric_name", ["roc_auc", "log_loss", "accuracy"])
def test_perfect_candidate_gets_all_weight(metric_name, rng):
    y, noisy = binary_case(rng)
    perfect = proba(y.astype(float))  # 0.99 on the right class, always
    predictions = [noisy[0], noisy[1], perfect, noisy[2]]
    metric = get_metric(metric_name, "binary")
    valids = valid_sets("binary", y)
    selection = select_ensemble(predictions, y, metric, rounds=20, valid_sets=valids)
    assert selection.weights == {2: 1.0}
    check_selection(selection, predictions, y, metric, valids)


def test_perfect_regression_candidate_gets_all_weight(rng):
    y = rng.normal(size=N)
    predictions = [y + rng.normal(0, 0.5, N), y.copy(), y + rng.normal(0, 0.3, N)]
    metric = get_metric("rmse", "regression")
    valids = valid_sets("regression", y)
    selection = select_ensemble(predictions, y, metric, rounds=10, valid_sets=valids)
    assert selection.weights == {1: 1.0}
    assert selection.score == pytest.approx(0.0)


@pytest.mark.parametrize("metric_name", ["roc_auc", "log_loss"])
def test_ensemble_at_least_as_good_as_best_single(metric_name, rng):
    y, noisy = binary_case(rng)
    metric = get_metric(metric_name, "binary")
    valids = valid_sets("binary", y)
    selection = select_ensemble(noisy, y, metric, rounds=25, valid_sets=valids)
    check_selection(selection, noisy, y, metric, valids)
    # three independent noisy views of the same signal: blending them helps
    assert len(selection.weights) >= 2
    singles = [np.mean(fold_scores(p, y, metric, valids)) for p in noisy]
    best = max(singles) if metric.higher_is_better else min(singles)
    assert metric.is_better(selection.score, best)


def test_complementary_regression_candidates_are_blended(rng):
    y = rng.normal(0, 3, size=N)
    a = y + rng.normal(0, 1.0, N)
    b = y + rng.normal(0, 1.0, N)
    bad = rng.normal(0, 3, size=N)
    predictions = [bad, a, b]
    metric = get_metric("rmse", "regression")
    valids = valid_sets("regression", y)
    selection = select_ensemble(predictions, y, metric, rounds=25, valid_sets=valids)
    check_selection(selection, predictions, y, metric, valids)
    # the signal-free candidate gets a round at most, which shrinks the blend towards its mean
    assert {1, 2} <= set(selection.weights) and selection.weights.get(0, 0.0) <= 0.08
    assert 0.3 <= selection.weights[1] <= 0.7
    rmse_a = np.mean(fold_scores(a, y, metric, valids))
    rmse_b = np.mean(fold_scores(b, y, metric, valids))
    assert selection.score < 0.85 * min(rmse_a, rmse_b)  # averaging halves the noise variance


def test_complementary_classifiers_are_blended(rng):
    """Each candidate is sure and right on one half of the rows, and unsure on the other."""
    y = rng.integers(0, 3, size=N)
    onehot = np.eye(3)[y] * 0.9 + 0.1 / 3
    uniform = np.full((N, 3), 1 / 3)
    first_half = (np.arange(N) < N // 2)[:, None]
    a = np.where(first_half, onehot, uniform)
    b = np.where(first_half, uniform, onehot)
    metric = get_metric("log_loss", "multiclass")
    valids = valid_sets("multiclass", y)
    selection = select_ensemble([a, b], y, metric, rounds=10, valid_sets=valids)
    check_selection(selection, [a, b], y, metric, valids)
    assert set(selection.weights) == {0, 1}
    assert selection.weights[0] == pytest.approx(0.5)
    np.testing.assert_allclose(blend_of([a, b], selection.weights).sum(axis=1), 1.0)


def test_one_round_picks_the_best_single(rng):
    y, noisy = binary_case(rng)
    metric = get_metric("log_loss", "binary")
    valids = valid_sets("binary", y)
    singles = [np.mean(fold_scores(p, y, metric, valids)) for p in noisy]
    selection = select_ensemble(noisy, y, metric, rounds=1, valid_sets=valids)
    assert selection.weights == {int(np.argmin(singles)): 1.0}
    assert selection.score == pytest.approx(min(singles))


def test_past_its_time_limit_the_selection_keeps_what_it_has(rng):
    y = rng.normal(0, 3, size=N)
    a, b = y + rng.normal(0, 1.0, N), y + rng.normal(0, 1.0, N)
    metric = get_metric("rmse", "regression")
    valids = valid_sets("regression", y)
    unlimited = select_ensemble([a, b], y, metric, rounds=25, valid_sets=valids)
    assert len(unlimited.weights) == 2
    stopped = select_ensemble([a, b], y, metric, rounds=25, valid_sets=valids, time_limit_s=0.0)
    assert len(stopped.weights) == 1  # one round: the best single, a valid ensemble
    check_selection(stopped, [a, b], y, metric, valids)


def test_direction_matters(rng):
    """Judged by a loss (lower is better) and by a score (higher is better), the
    selection picks the good candidate both times: it reads each metric's direction."""
    y = rng.normal(size=N)
    good, bad = y + rng.normal(0, 0.1, N), y + rng.normal(0, 2.0, N)
    valids = valid_sets("regression", y)
    rmse = get_metric("rmse", "regression")
    r2 = get_metric("r2", "regression")
    assert select_ensemble([bad, good], y, rmse, 5, valids).weights == {1: 1.0}
    assert select_ensemble([bad, good], y, r2, 5, valids).weights == {1: 1.0}


def test_a_round_that_does_not_improve_the_blend_can_lead_to_one_that_does():
    """a and b blend best at first; adding c to them is worse (round 3), yet three rounds
    later a, b and c at 3:3:1 beat the pair: the selection keeps the best round of all."""
    y = np.array([0.0, 1.0, 2.0])
    a, b, c = np.array([-0.2, 0.0, 2.0]), np.array([0.1, 0.9, 2.9]), np.array([2.8, 1.9, 1.2])
    metric = get_metric("rmse", "regression")
    pair = metric.score(y, (a + b) / 2)
    assert min(metric.score(y, (a + b + extra) / 3) for extra in (a, b, c)) > pair
    selection = select_ensemble([a, b, c], y, metric, 9, [np.arange(3)])
    assert selection.weights == pytest.approx({0: 3 / 7, 1: 3 / 7, 2: 1 / 7})
    assert selection.score < pair - 0.05


def test_duplicates_do_not_split_weight(rng):
    y, noisy = binary_case(rng)
    metric = get_metric("roc_auc", "binary")
    valids = valid_sets("binary", y)
    selection = select_ensemble([noisy[0], noisy[0].copy()], y, metric, 10, valids)
    assert selection.weights == {0: 1.0}


def test_rows_outside_the_valid_sets_are_ignored(rng):
    """Time-ordered folds leave early rows without an OOF prediction (NaN)."""
    y = rng.normal(size=N)
    folds = make_folds("regression", y, 4, seed=0, times=np.arange(N))
    valids = [valid for _, valid in folds.splits]
    a = y + rng.normal(0, 1.0, N)
    b = y + rng.normal(0, 1.0, N)
    a[~folds.covered] = np.nan
    b[~folds.covered] = np.nan
    metric = get_metric("mae", "regression")
    selection = select_ensemble([a, b], y, metric, 10, valids)
    assert np.isfinite(selection.score)
    assert set(selection.weights) == {0, 1}
    check_selection(selection, [a, b], y, metric, valids)


def _run(time_s: float = 60) -> Run:
    spec = build_spec({"data": {"train": "x.csv", "target": "y"}, "task": "regression",
                       "budget": {"time_s": time_s}})
    return Run(spec, plan(spec, "regression", N, 5), Path("unused"), Progress(enabled=False),
               started=time.monotonic())


def _outcome(number: int, family: str, y: np.ndarray, noise: float, rng, kept: bool = True) -> TrialOutcome:
    oof = y + rng.normal(scale=noise, size=len(y))
    scores = [float(np.sqrt(np.mean((y[v] - oof[v]) ** 2))) for v in valid_sets("regression", y)]
    return TrialOutcome(number, family, {}, COMPLETE, fold_scores=scores, oof=oof, fit_time_s=5.0,
                        fold_models=[b"model"] if kept else None)


def test_each_familys_best_trial_is_an_ensemble_candidate(rng):
    y = rng.normal(size=N)
    run = _run()
    run.outcomes = [_outcome(i, "lightgbm", y, 0.1 + 0.05 * i, rng) for i in range(12)]
    run.outcomes += [_outcome(20, "knn", y, 0.9, rng), _outcome(21, "knn", y, 1.0, rng)]
    candidates = ensemble_candidates(run, get_metric("rmse", "regression"))
    assert [c.number for c in candidates] == [*range(ENSEMBLE_CANDIDATES), 20]


def test_when_refitting_the_ensemble_would_overrun_it_is_made_of_the_kept_fold_models(rng):
    """The best trial's fold models were not kept: the full blend needs a refit that the
    time left cannot pay for, so the blend of the bagged trials is made instead, which
    still beats the best trial alone."""
    y = rng.normal(size=N)
    run = _run()
    best = _outcome(0, "random_forest", y, 0.5, rng, kept=False)
    run.outcomes = [best, _outcome(1, "lightgbm", y, 0.6, rng), _outcome(2, "knn", y, 0.6, rng)]
    metric = get_metric("rmse", "regression")
    folds = make_folds("regression", y, 5, seed=0)
    data = SimpleNamespace(y=y, schema=FeatureSchema([]), X=pd.DataFrame(index=range(N)))
    run.hard_deadline = time.monotonic() + 1000
    members, _, _ = select_members(run, data, folds, metric)
    assert best in members and run.ensemble_note == f"{len(members)} members"
    run.hard_deadline = time.monotonic()  # no time for any refit
    members, weights, fold_scores_ = select_members(run, data, folds, metric)
    assert sorted(m.number for m in members) == [1, 2] and "fold models were kept" in run.ensemble_note
    assert np.mean(fold_scores_) < best.cv_score
    run.outcomes[2].oof = run.outcomes[1].oof  # no kept blend beats the best: it stands alone
    members, _, _ = select_members(run, data, folds, metric)
    assert members == [best] and run.ensemble_note.startswith("skipped:")
