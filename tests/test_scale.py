"""Scale: validation chosen to fit the data and budget, CPUs per trial, learners that stop
growing at their time limit, and a fit validated on one split."""

from __future__ import annotations

import json
import pickle
import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import lightgbm
import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import make_classification

from automl import budget
from automl.budget import FIT_SHARE_OF_LIMIT, final_cost_s
from automl.data import prepare_training
from automl.engine import Run, run_fit
from automl.final_model import ensemble_candidates, final_members
from automl.metrics import get_metric
from automl.models import get_family
from automl.models import lightgbm as lightgbm_module
from automl.planner import choose_cpus_per_trial, choose_validation, plan
from automl.prediction import BaggedModel
from automl.progress import Progress
from automl.spec import build_spec, load_spec
from automl.trial import COMPLETE, TrialOutcome, TrialSpec, Workload, run_trial
from automl.validation import make_folds
from tests.conftest import write_spec


def _spec(time_s=60, **sections):
    raw = {"data": {"train": "x.csv", "target": "y"}, "budget": {"time_s": time_s}, **sections}
    return build_spec(raw)



def _lightgbm():
    return get_family("lightgbm")


@pytest.mark.parametrize("rows, features, time_s, expected", [
    (30_000, 14, 60, ("kfold", 5)),      # adult-sized: the budget pays for 10+ five-fold trials
    (100_000, 25, 100, ("kfold", 3)),    # five folds too dear, three fit
    (100_000, 25, 60, ("split", 1)),
    (300_000, 25, 120, ("split", 1)),
    (5_000, 2_000, 60, ("split", 1)),    # wide: the cost per feature decides
])
def test_auto_validation_keeps_k_folds_while_the_budget_pays_for_them(rows, features, time_s, expected):
    choice = choose_validation(_spec(time_s), _lightgbm(), rows, features, cpus=2)
    assert (choice.method, choice.folds) == expected
    assert choice.reason and (choice.split_size == 0.1) == (expected[0] == "split")


def test_the_spec_can_name_the_validation():
    for method, folds in (("kfold", 4), ("split", 1)):
        choice = choose_validation(_spec(60, validation={"method": method, "folds": 4}), _lightgbm(), 10**6, 25, 2)
        assert (choice.method, choice.folds) == (method, folds) and "as the spec says" in choice.reason


def test_cpus_per_trial_auto_gives_slow_trials_every_cpu():
    assert choose_cpus_per_trial(_spec(60), trial_s=1.0, cpus=2)[0] == 1
    assert choose_cpus_per_trial(_spec(60), trial_s=30.0, cpus=2, busy_elsewhere=lambda: 0.2)[0] == 2
    threads, reason = choose_cpus_per_trial(_spec(60), trial_s=30.0, cpus=2, busy_elsewhere=lambda: 1.9)
    assert threads == 1 and "keep ~1.9 of the 2 CPUs busy" in reason  # threads would wait on each other
    assert choose_cpus_per_trial(_spec(60), trial_s=30.0, cpus=64, busy_elsewhere=lambda: 0)[0] == 8  # at most
    assert choose_cpus_per_trial(_spec(60, hardware={"cpus_per_trial": 1}), 30.0, 2) == (
        1, "hardware.cpus_per_trial, as the spec says")
    assert choose_cpus_per_trial(_spec(60, hardware={"ray_address": "auto"}), 30.0, 2)[0] == 1


def test_the_plan_leaves_out_a_family_that_cannot_finish_a_trial_even_on_a_sample():
    run_plan = plan(_spec(120), "binary", 1_000_000, 25)
    assert "knn" not in [f.name for f in run_plan.families]
    assert "even on 10% of the rows" in run_plan.skipped["knn"]
    assert run_plan.validation.method == "split"
    assert plan(_spec(120), "binary", 2_000, 25).families[-2].name == "knn"  # small data: kept


def test_a_single_split_keeps_groups_apart_and_validates_on_the_latest_times():
    y = np.tile([0, 1], 500)
    (train, valid), = make_folds("binary", y, 5, 0, split_size=0.2).splits
    assert len(valid) == 200 and set(train).isdisjoint(valid) and y[valid].mean() == 0.5
    groups = np.repeat(np.arange(100), 10)
    (train, valid), = make_folds("binary", y, 5, 0, groups=groups, split_size=0.2).splits
    assert set(groups[train]).isdisjoint(groups[valid])
    times = np.arange(1000) // 4
    folds = make_folds("regression", y.astype(float), 5, 0, times=times, split_size=0.1)
    (train, valid), = folds.splits
    assert times[train].max() < times[valid].min() and len(valid) == 100
    assert folds.kind == "time split" and folds.refit_share == pytest.approx(1000 / 900)


@pytest.fixture(scope="module")
def table():
    X, y = make_classification(n_samples=2000, n_features=20, random_state=0)
    return pd.DataFrame(X, columns=[f"x{i}" for i in range(20)]), y


@pytest.mark.parametrize("name, size", [("lightgbm", "n_estimators"), ("hist_gradient_boosting", "max_iter"),
                                        ("random_forest", "n_estimators"), ("extra_trees", "n_estimators")])
def test_learners_that_grow_stop_at_their_time_limit_and_keep_what_they_grew(table, name, size):
    X, y = table
    family = get_family(name)
    grown_to = {"lightgbm": 4000, "hist_gradient_boosting": 1000}.get(name, 400)
    params = {**family.default_params("binary"), size: grown_to}
    if name == "hist_gradient_boosting":  # its build sets max_iter; a low rate: no early stop before the limit
        params = {**family.default_params("binary"), "learning_rate": 0.01}
    unlimited_s = _fit_seconds(family, params, X, y, None)
    limited_s = _fit_seconds(family, params, X, y, unlimited_s / 10)
    assert limited_s < unlimited_s / 3
    model = family.build(params, "binary", 1, 0)
    family.fit(model, X, y, time_limit_s=unlimited_s / 10)
    grown = _grown(model)
    assert 0 < grown < grown_to
    assert model.predict_proba(X).shape == (len(X), 2)


def _fit_seconds(family, params, X, y, limit):
    model = family.build(params, "binary", 1, 0)
    started = time.perf_counter()
    family.fit(model, X, y, time_limit_s=limit)
    return time.perf_counter() - started


def _grown(model) -> int:
    final = model[-1] if hasattr(model, "steps") else model
    if hasattr(final, "booster_"):
        return final.booster_.current_iteration()
    return final.n_iter_ if hasattr(final, "n_iter_") else len(final.estimators_)


def test_a_lightgbm_fit_short_of_time_raises_its_rate_so_the_rounds_that_fit_take_every_step(monkeypatch):
    now = [0.0]
    monkeypatch.setattr(lightgbm_module, "monotonic", lambda: now[0])
    rates = []
    booster = SimpleNamespace(reset_parameter=lambda params: rates.append(params["learning_rate"]))
    keeper = lightgbm_module.WithinTime(10.5, n_estimators=400, learning_rate=0.05)  # 20 steps in all
    now[0] = 0.5  # the first round ends after the dataset is built

    def round_ends(iteration: int) -> None:
        keeper(SimpleNamespace(iteration=iteration, end_iteration=400, model=booster, evaluation_result_list=[]))

    for iteration in range(4):  # 0.1 s a round: 100 of the 400 fit
        round_ends(iteration)
        now[0] += 0.1
    # after 3 timed rounds: 19.8 steps left, time for (10.5 - 0.8) / 0.1 = 97 rounds
    assert rates == [pytest.approx(19.8 / 97)]
    for iteration in range(4, 20):
        round_ends(iteration)
        now[0] += 0.1
    assert len(rates) == 1  # the raised rate keeps pace: not reset every round
    now[0] = 10.5
    with pytest.raises(lightgbm.callback.EarlyStopException):
        round_ends(20)


def test_lightgbm_early_stops_on_the_fold_validation_rows(table):
    X, y = table
    family = get_family("lightgbm")
    params = {**family.default_params("binary"), "n_estimators": 3000, "learning_rate": 0.3}
    model = family.build(params, "binary", 1, 0)
    family.fit(model, X.iloc[:1500], y[:1500], validation=(X.iloc[1500:], y[1500:]))
    assert 0 < model.best_iteration_ < 3000 - 50


def test_a_refit_takes_the_rounds_its_early_stopped_fold_models_kept(table):
    """Refit with the configuration's whole 3,000 rounds, a model that early-stopped near 30
    in every fold overfits: on wine_white a refit LightGBM member scored test log loss 1.47."""
    X, y = table
    data = prepare_training(X.assign(y=y), "y", "binary")
    folds = make_folds("binary", data.y, 3, seed=0)
    params = {**get_family("lightgbm").default_params("binary"), "n_estimators": 3000, "learning_rate": 0.3}
    outcome = run_trial(Workload(data, folds), TrialSpec(0, "lightgbm", params, "roc_auc", seed=0,
                                                         max_model_bytes=2**30))
    kept = [pickle.loads(blob).best_iteration_ for blob in outcome.fold_models]
    assert outcome.refit_params == {**params, "n_estimators": int(np.ceil(np.mean(kept)))}
    assert outcome.refit_params["n_estimators"] < 3000 - 50
    spec = _spec(60)
    run = Run(spec, plan(spec, "binary", len(y), X.shape[1]), Path("unused"), Progress(enabled=False),
              started=time.monotonic())
    member, = final_members(run, data, [replace(outcome, fold_models=None)], [1.0], folds.refit_share)
    assert run.final_model == "refit" and member.estimator.n_estimators_ == outcome.refit_params["n_estimators"]
    assert member.params == outcome.refit_params


def test_a_trials_folds_share_its_limit_less_the_time_it_waited_to_start(table, monkeypatch):
    """The driver cancels a trial its limit after sending it: time spent waiting for a
    worker (a new one starting CUDA took 15 s on a loaded GPU machine) is not the folds'."""
    X, y = table
    data = prepare_training(X.assign(y=y), "y", "binary")
    folds = make_folds("binary", data.y, 3, seed=0)
    given = []
    fit = lightgbm_module.LightGBMFamily.fit
    monkeypatch.setattr(lightgbm_module.LightGBMFamily, "fit",
                        lambda self, model, X, y, time_limit_s=None, **kwargs: (
                            given.append(time_limit_s), fit(self, model, X, y, time_limit_s, **kwargs))[1])
    params = get_family("lightgbm").default_params("binary")
    slow_verdicts = SimpleNamespace(connect=lambda: lambda step, score: time.sleep(0.1) or False)
    outcomes = [run_trial(Workload(data, folds), TrialSpec(0, "lightgbm", params, "roc_auc", seed=0,
                                                           pruning=slow_verdicts, time_limit_s=20.0,
                                                           submitted_at=time.time() - waited_s))
                for waited_s in (0.0, 15.0)]
    fresh, late = given[0], given[3]  # each trial's first fold: a third of what is left, in its share
    assert fresh == pytest.approx(20.0 / 3 * FIT_SHARE_OF_LIMIT, rel=0.05)
    assert late == pytest.approx(5.0 / 3 * FIT_SHARE_OF_LIMIT, rel=0.05)
    assert outcomes[0].start_wait_s < 1.0 and outcomes[1].start_wait_s == pytest.approx(15.0, abs=1.0)
    assert all(0.3 <= outcome.verdict_wait_s < 1.0 for outcome in outcomes)  # three folds, 0.1 s each


def test_members_are_refit_where_cheap_and_otherwise_only_where_their_fold_models_were_not_kept(table, monkeypatch):
    X, y = table
    data = prepare_training(X.assign(y=y), "y", "binary")
    folds = make_folds("binary", data.y, 3, seed=0)
    family = get_family("lightgbm")
    params = {**family.default_params("binary"), "n_estimators": 30}
    kept, too_large = (run_trial(Workload(data, folds), TrialSpec(n, "lightgbm", params, "roc_auc", seed=0,
                                                                  max_model_bytes=limit))
                       for n, limit in ((0, 2**30), (1, 0)))
    assert kept.fold_models is not None and too_large.fold_models is None
    assert final_cost_s([kept], 1.5) == 0.0
    assert final_cost_s([kept, too_large], 1.5) == pytest.approx(1.5 * too_large.fit_time_s)
    assert final_cost_s([kept, too_large], 1.5, refit_all=True) == pytest.approx(
        1.5 * (kept.fit_time_s + too_large.fit_time_s))
    assert budget.refits_all([kept, too_large], 1.5, 60.0, 1_000)
    assert not budget.refits_all([kept, too_large], 1.5, 0.0, 1_000)  # no budget for the refits
    assert not budget.refits_all([kept, too_large], 1.5, 60.0, budget.REFIT_ALL_MAX_ROWS)  # bagging pays on more rows
    spec = _spec(60)
    run = Run(spec, plan(spec, "binary", len(y), X.shape[1]), Path("unused"), Progress(enabled=False),
              started=time.monotonic())
    bagged, refit = final_members(run, data, [kept, too_large], [0.5, 0.5], folds.refit_share)
    assert run.final_model == "refit"  # refitting both is cheap here: a model fit on all rows each
    assert all(isinstance(m.estimator, lightgbm.LGBMClassifier) for m in (bagged, refit))
    monkeypatch.setattr(budget, "REFIT_ALL_SHARE", 0.0)  # as where refits are costly
    bagged, refit = final_members(run, data, [kept, too_large], [0.5, 0.5], folds.refit_share)
    assert run.final_model == "mixed"
    assert isinstance(bagged.estimator, BaggedModel) and len(bagged.estimator.models) == 3
    assert isinstance(refit.estimator, lightgbm.LGBMClassifier)  # one model, fit on all rows
    assert budget.refits_all([kept, too_large], 1.5, 60.0, budget.REFIT_ALL_MAX_ROWS, refit_full=True)
    spec = _spec(60, predict={"refit_full": True})  # asked for: every member refit, costly or not
    run = Run(spec, plan(spec, "binary", len(y), X.shape[1]), Path("unused"), Progress(enabled=False),
              started=time.monotonic())
    members = final_members(run, data, [kept, too_large], [0.5, 0.5], folds.refit_share)
    assert run.final_model == "refit"
    assert all(isinstance(m.estimator, lightgbm.LGBMClassifier) for m in members)


def test_a_fit_validated_on_one_split_records_why(tmp_path, binary_frame):
    spec = load_spec(write_spec(tmp_path, binary_frame, budget={"time_s": 12, "max_trials": 6},
                                validation={"method": "split", "split_size": 0.25},
                                models={"include": ["lightgbm", "linear"]}))
    result = run_fit(spec)
    summary = json.loads((result.output_dir / "run.json").read_text())
    assert summary["validation"]["kind"] == "stratified split" and summary["validation"]["n"] == 1
    assert "as the spec says" in summary["validation"]["reason"]
    assert summary["cpus_per_trial"] == 1
    assert result.predictor.predict(binary_frame.drop(columns=["target"])).shape == (len(binary_frame),)


def test_the_search_waits_for_the_ensembles_refits_only_while_they_are_cheap():
    spec = _spec(300)
    run = Run(spec, plan(spec, "binary", 1_000_000, 25), Path("unused"), Progress(enabled=False), started=0.0)
    metric = get_metric("roc_auc", "binary")

    def trial(number, score, fit_time_s, bagged):
        return TrialOutcome(number, "lightgbm", {}, COMPLETE, fold_scores=[score], fit_time_s=fit_time_s,
                            fold_models=[b"model"] if bagged else None)

    def deadline(refit_expected=False):
        return run.search_deadline(run.likely_members(metric), ensemble_candidates(run, metric), refit_share=1.0,
                                   n_rows=1_000, refit_expected=refit_expected)

    run.outcomes = [trial(0, 0.98, 30.0, bagged=True), trial(1, 0.97, 10.0, bagged=False),
                    trial(2, 0.96, 10.0, bagged=False), trial(3, 0.95, 10.0, bagged=True)]
    # the likely members' refits (50 s) are over 15% of the budget: those whose fold models were not kept (20 s)
    assert deadline() == pytest.approx(300 - run.end_reserve_s() - 20.0)
    # unless the inference budget will have them refit: every likely member's refit (50 s)
    assert deadline(refit_expected=True) == pytest.approx(300 - run.end_reserve_s() - 50.0)
    run.outcomes[2].fit_time_s = 60.0  # 70 s to refit, over 20% of the budget: only the best (bagged: no refit)
    assert deadline() == pytest.approx(300 - run.end_reserve_s())
    for outcome in run.outcomes:  # 20 s in all, within 15% of the budget: every candidate refit, bagged ones too
        outcome.fit_time_s = 5.0
    assert deadline() == pytest.approx(300 - run.end_reserve_s() - 20.0)
    run.outcomes[3].fit_time_s = 100.0  # the likely members cheap, all candidates 115 s: no set past 15% is refit whole
    assert deadline() == pytest.approx(300 - run.end_reserve_s() - 45.0)


def test_refits_share_the_time_left_in_proportion_to_their_estimates():
    spec = _spec(60)
    run = Run(spec, plan(spec, "binary", 1_000, 25), Path("unused"), Progress(enabled=False), started=time.monotonic())
    run.hard_deadline = time.monotonic() + run.after_refit_s() + 12.0  # 12 s left for refits
    assert run.refit_limit_s(2.0, 8.0) == pytest.approx(3.0, abs=0.5)  # a quarter of the estimates: a quarter
    assert run.refit_limit_s(6.0, 6.0) == pytest.approx(12.0, abs=0.5)  # the last refit: all that is left
    assert run.refit_limit_s(0.0, 0.0) == pytest.approx(12.0, abs=0.5)  # nothing estimated: all that is left


def test_a_refit_stops_growing_in_time_for_the_end_phase(table):
    X, y = table
    spec = _spec(60)
    run = Run(spec, plan(spec, "binary", len(y), X.shape[1]), Path("unused"), Progress(enabled=False),
              started=time.monotonic())
    run.hard_deadline = time.monotonic()  # no time left: one step of the forest, not its 400 trees
    data = prepare_training(X.assign(y=y), "y", "binary")
    params = {**get_family("extra_trees").default_params("binary"), "n_estimators": 400}
    member, = final_members(run, data, [TrialOutcome(0, "extra_trees", params, COMPLETE, fold_scores=[0.9])], [1.0],
                            refit_share=1.25)
    assert run.final_model == "refit" and len(member.estimator[-1].estimators_) == 400 // 8


def test_lightgbm_bins_a_wide_table_coarser():
    family = get_family("lightgbm")
    rng = np.random.default_rng(0)
    y = np.tile([0, 1], 100)
    for n_features, bins in ((20, 255), (lightgbm_module.WIDE_FEATURES + 1, lightgbm_module.WIDE_MAX_BIN)):
        X = pd.DataFrame(rng.normal(size=(200, n_features)) + y[:, None], columns=[f"x{i}" for i in range(n_features)])
        model = family.build({**family.default_params("binary"), "n_estimators": 5}, "binary", 1, 0)
        family.fit(model, X, y)
        assert model.booster_.params.get("max_bin", 255) == bins


def test_cpus_busy_elsewhere_counts_other_processes_not_this_runs():
    """Each reading is compared with one taken just before, so that whatever else the
    machine runs meanwhile cancels out."""
    import os
    import signal
    import subprocess
    import sys
    import threading
    import time

    from automl.planner import cpus_busy_elsewhere

    before = cpus_busy_elsewhere()
    stop = threading.Event()
    ours = threading.Thread(target=lambda: [None for _ in iter(lambda: stop.is_set(), True)])
    ours.start()  # this process spinning: the run's own work, not load
    try:
        own_spinning = cpus_busy_elsewhere()
    finally:
        stop.set()
        ours.join()
    # an orphaned spinner (started through a shell that exits): another process, not a child of ours
    pid = int(subprocess.run(["sh", "-c", f"{sys.executable} -c 'while True: pass' >/dev/null 2>&1 & echo $!"],
                             capture_output=True, text=True, check=True).stdout)
    try:
        time.sleep(0.3)
        other_spinning = cpus_busy_elsewhere()
    finally:
        os.kill(pid, signal.SIGKILL)
    assert own_spinning - before < 0.5 < other_spinning - before
