"""budget.memory_gb: trials estimated too large for their share run on a subsample, or are
skipped, with a warning, instead of exhausting the machine's memory."""

from __future__ import annotations

import json

import pytest

from automl.engine import run_fit
from automl.models import get_family
from automl.planner import GIB, WALL_OVER_FIT, MemoryBudget, TrialClock, memory_budget_bytes
from automl.spec import load_spec
from tests.conftest import write_spec

FOREST = {"n_estimators": 200, "max_features": 0.3, "min_samples_leaf": 1, "criterion": "gini"}


def _budget(per_trial_bytes: float, train_rows: int = 10_000) -> MemoryBudget:
    return MemoryBudget(per_trial_bytes, train_rows, n_features=20, n_classes=2, n_folds=5)


def test_a_trial_within_its_share_runs_whole_a_larger_one_on_a_subsample_and_a_huge_one_not_at_all():
    forest = get_family("random_forest")
    need = _budget(0).need_bytes(forest, FOREST)
    assert _budget(need).rows_for(forest, FOREST) is None
    assert _budget(need / 4).rows_for(forest, FOREST) == 2_500  # estimates grow with rows
    assert _budget(need / 20).rows_for(forest, FOREST) == 0  # under a tenth of the rows: skipped


def test_estimates_follow_what_makes_a_model_large():
    forest, budget = get_family("extra_trees"), _budget(0)
    base = budget.need_bytes(forest, FOREST)
    assert budget.need_bytes(forest, FOREST | {"n_estimators": 400}) > 1.9 * base
    assert budget.need_bytes(forest, FOREST | {"min_samples_leaf": 10}) < base / 5
    assert budget.need_bytes(forest, FOREST, rows=20_000) > 1.9 * base
    assert budget.need_bytes(get_family("lightgbm"), {}) < base / 10  # boosting keeps small models


def test_the_share_leaves_room_for_the_data_in_the_driver_and_the_copy_the_workers_share():
    assert MemoryBudget.share(10 * GIB, 1 * GIB, 4, 100, 5, 2, 5).per_trial_bytes == 2 * GIB
    assert MemoryBudget.share(2 * GIB, 1 * GIB, 3, 100, 5, 2, 5).per_trial_bytes == 0
    assert memory_budget_bytes(1.5) == 1.5 * GIB
    assert 0 < memory_budget_bytes(None)  # what the machine has available


@pytest.mark.parametrize(("memory_gb", "kept_rows"), [(0.01, True), (0.0015, False)])
def test_a_fit_under_a_small_memory_budget_subsamples_or_skips_forests_and_says_so(tmp_path, binary_frame,
                                                                                   memory_gb, kept_rows):
    spec = load_spec(write_spec(tmp_path, binary_frame, budget={"time_s": 15, "memory_gb": memory_gb,
                                                                "max_trials": 3},
                                models={"include": ["random_forest", "linear"]}))
    result = run_fit(spec)
    summary = json.loads((result.output_dir / "run.json").read_text())
    forests = [t for t in summary["trial_log"] if t["family"] == "random_forest"]
    linear = [t for t in summary["trial_log"] if t["family"] == "linear"]
    assert forests and linear and all(t["train_rows"] is None and t["status"] == "complete" for t in linear)
    if kept_rows:  # ~12 MB estimated, ~5 MB a trial: fit on under half of each fold's 380 rows
        assert all(t["status"] == "complete" and 100 <= t["train_rows"] < 190 for t in forests)
        assert any("random_forest trial(s) fit on a subsample" in w for w in summary["warnings"])
    else:
        assert all(t["status"] == "failed" and t["error"].startswith("skipped: needs ~") for t in forests)
        assert any("random_forest trial(s) skipped" in w for w in summary["warnings"])
        assert set(result.leaderboard["family"]) <= {"linear", "ensemble"}


def test_trials_too_slow_for_their_time_fit_on_a_subsample_sized_by_what_this_run_measured():
    forest, linear = get_family("extra_trees"), get_family("linear")
    clock = TrialClock(first_result_s=6.0, train_rows=40_000, n_features=20, n_folds=5)
    estimate = 5 * WALL_OVER_FIT * forest.fold_fit_s(40_000, 20)
    assert 5 * WALL_OVER_FIT * linear.fold_fit_s(40_000, 20) <= 30.0 < estimate
    assert clock.rows_for(linear, 30.0) is None
    linear_estimate = 5 * WALL_OVER_FIT * linear.fold_fit_s(40_000, 20)  # linear learners fit whole
    assert clock.rows_for(linear, 10.0) == pytest.approx(40_000 * 10.0 / linear_estimate, abs=40)
    # a forest grows its trees in steps and returns with those grown: its first step must fit
    assert clock.rows_for(forest, 30.0) == pytest.approx(40_000 * 30.0 / (estimate * forest.first_step_share), abs=40)
    assert clock.rows_for(forest, 1.0) == 0  # not even a tenth of the rows fits: not started
    assert clock.rows_for(forest, 1e6) is None
    # this machine turns out twice as slow as the constants say (busy): half the rows fit
    clock.observe(forest, fit_time_s=2 * clock.fit_estimate_s(forest), rows=None)
    assert clock.speed(forest) == pytest.approx(2.0)
    doubled = 2 * estimate * forest.first_step_share
    assert clock.rows_for(forest, 30.0) == pytest.approx(40_000 * 30.0 / doubled, abs=40)
    assert clock.speed(linear) == pytest.approx(2.0)  # a family with no result of its own: the run's
    clock.observe(linear, fit_time_s=clock.fit_estimate_s(linear), rows=None)
    assert clock.speed(linear) == pytest.approx(1.0)


def test_other_families_can_say_the_machine_is_slow_but_not_that_it_is_fast():
    forest, lightgbm = get_family("extra_trees"), get_family("lightgbm")
    clock = TrialClock(first_result_s=6.0, train_rows=40_000, n_features=20, n_folds=5)
    clock.observe(lightgbm, fit_time_s=0.2 * clock.fit_estimate_s(lightgbm), rows=None)  # early-stopped
    assert clock.speed(lightgbm) == pytest.approx(0.25)  # its own: as fast as MIN_SPEED allows
    assert clock.speed(forest) == 1.0
    clock.observe(lightgbm, fit_time_s=9 * clock.fit_estimate_s(lightgbm), rows=None)
    clock.observe(lightgbm, fit_time_s=9 * clock.fit_estimate_s(lightgbm), rows=None)
    assert clock.speed(forest) == pytest.approx(8.0)  # slow: the median, up to MAX_SPEED


def test_more_cpus_per_trial_make_a_trial_faster():
    forest = get_family("extra_trees")
    one, two = (TrialClock(6.0, 40_000, 20, 5, cpus_per_trial=cpus) for cpus in (1, 2))
    assert two.estimate_s(forest) < one.estimate_s(forest) / 1.5
