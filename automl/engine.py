"""One fit, end to end: data -> folds -> search on Ray -> ensemble -> final model -> outputs.

The whole fit ends within ``budget.time_s``: the search stops early enough to
leave time for the end phase (stopping, ensemble selection, refit, writing),
measured from the trials themselves.

Final model, the same way for every member of the ensemble: the members' own
fold models, bagged (see ``automl.bagging``), when every member's were small
enough to keep; they cost no fitting time and are exactly what the ensemble
was weighted on. Otherwise every member is refit on all training rows, one
extra fit each, which the search leaves time for; when the time left cannot
pay for it, the best single trial is the model. Time-ordered folds keep no
fold models: an expanding window never trains on the latest rows, so the
members are always refit on all of them.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
from threadpoolctl import threadpool_limits

from automl import atomic, bagging
from automl.artifact import Member, Predictor, library_versions
from automl.assess import (
    Checks,
    Diagnostics,
    FittedMembers,
    feature_importance,
    gap_warnings,
    holdout_scores,
)
from automl.checkpoint import ELAPSED_ATTR, FINGERPRINT_ATTR, TRIALS_DIR, OutcomeStore, fingerprint
from automl.data import (
    TrainingData,
    check_columns,
    check_target,
    load_table,
    prepare_training,
    release_reader_memory,
    time_values,
)
from automl.drift import REFERENCE_FILE, build_reference
from automl.ensemble import EnsembleSelection, select_ensemble
from automl.errors import InputError
from automl.evaluate import scores_of
from automl.execution import backend_name, local, make_executor
from automl.fairness import fairness_report
from automl.folder_lock import locked_folder
from automl.metrics import Metric, get_metric, score_or_nan
from automl.models import get_family
from automl.planner import (
    FIRST_RESULT_SHARE,
    GIB,
    FamilyShares,
    MemoryBudget,
    Plan,
    memory_budget_bytes,
    plan,
)
from automl.prediction import BaggedModel, weighted_mean
from automl.profile import DataProfile, profile_data
from automl.progress import Progress
from automl.report import write_report
from automl.search import Search, storage_url
from automl.spec import IN_MEMORY, Spec
from automl.trial import COMPLETE, FAILED, PRUNED, TrialOutcome, Workload, subsample
from automl.validation import Folds, holdout_rows, make_folds

RUN_FILES = ("study.db", "study.db-wal", "study.db-shm", "leaderboard.csv", "run.json", "report.html", "model",
             TRIALS_DIR)
SELECT_SHARE, SELECT_MAX_S = 0.05, 1.0
"""The ensemble selection's time limit: this share of the budget, at most SELECT_MAX_S
(it took 0.4-1.1 s with 10 candidates on 2 cores; it keeps what it has at its limit)."""
WRITE_MARGIN_S = 1.0
"""Kept back at the very end for writing the model, leaderboard, run.json and report
(0.35-0.7 s measured, plots included; the plotting library is imported with the engine)."""
ASSEMBLY_MARGIN_S = 0.5
"""Putting the final model together (unpacking 15 bagged fold models took 0.5 s on adult)."""
CHECKS_MARGIN_S = 1.0
"""Holdout scores for every row and fairness, with a holdout or sensitive columns (0.6 s
for adult's 16k holdout rows and two sensitive columns)."""
IMPORTANCE_SHARE, IMPORTANCE_MIN_S, IMPORTANCE_MAX_S = 0.05, 0.5, 10.0
"""Permutation importance gets this share of the budget, within these bounds (it is reserved)."""
ENSEMBLE_CANDIDATES = 10
"""Trials the ensemble is selected from: the best this many, and each family's best
(see ``Run.ensemble_candidates``)."""
ENSEMBLE_RESERVE_SHARE = 0.2
"""The search stops early to leave time for refitting the likely ensemble's members only
while that takes at most this share of the budget: at 1M rows, refitting two forests and
HGB was estimated at 137 s of 300, the search stopped at 160 s, and the ensemble was
then skipped anyway for a bagged LightGBM that needed no refit."""
MIN_SEARCH_S = 5.0
"""The search gets at least this long to make a first model, even when loading the data
took the whole budget (a budget of a few seconds; the first worker may wait for its
model libraries' imports, 3-5 s on a loaded 2-core machine): the run reports its overrun."""


@dataclass
class RunResult:
    predictor: Predictor
    leaderboard: pd.DataFrame
    summary: dict[str, Any]
    output_dir: Path


def _existing_run_files(folder: Path, overwrite: bool) -> list[Path]:
    """Our files already in ``folder``; without ``overwrite`` their presence is an error."""
    if folder.exists() and not folder.is_dir():
        raise InputError(f"output {folder} is a file, not a folder")
    existing = [folder / name for name in RUN_FILES if (folder / name).exists()]
    if existing and not overwrite:
        raise InputError(f"{folder} already holds a run ({existing[0].name}); pass --overwrite or another --output")
    return existing


def prepare_output_dir(folder: Path, overwrite: bool) -> Path:
    """Refuse to mix two runs in one folder; with ``overwrite``, remove only our own files."""
    for path in _existing_run_files(folder, overwrite):
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    atomic.remove_leftovers(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _split_holdout(frame: pd.DataFrame, spec: Spec, task: str) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    if spec.data.test:
        return frame, load_table(spec.data.test)
    if spec.validation.test_size:
        labelled = frame[frame[spec.data.target].notna()]
        groups, time = spec.data.groups, spec.data.time
        check_columns(labelled, [c for c in (groups, time) if c], "data.groups/data.time")
        train, test = holdout_rows(task, pd.factorize(labelled[spec.data.target])[0], spec.validation.test_size,
                                   spec.seed, labelled[groups].to_numpy() if groups else None,
                                   time_values(labelled[time]) if time else None)
        return labelled.iloc[train], labelled.iloc[test]
    return frame, None


def refit_estimate_s(outcome: TrialOutcome, refit_share: float) -> float:
    """Seconds to fit a configuration on all rows, from its fold fits (``Folds.refit_share``)."""
    return outcome.fit_time_s * refit_share


class Run:
    """The state of one fit while it runs."""

    def __init__(self, spec: Spec, run_plan: Plan, output_dir: Path, progress: Progress, started: float,
                 spent_before_s: float = 0.0):
        self.spec = spec
        self.plan = run_plan
        self.output_dir = output_dir
        self.progress = progress
        self.started = started
        self.spent_before_s = spent_before_s
        """What an interrupted run had spent of the budget, when this one resumes it."""
        self.hard_deadline = self.started + max(0.0, spec.budget.time_s - spent_before_s)
        self.interrupted = False
        self.resumed = False
        self.outcomes: list[TrialOutcome] = []
        self.timings: dict[str, float] = {}
        self.ensemble_note = "not tried"
        self.final_model = ""
        """How the members were made: "bagged" fold models or "refit" on all rows."""
        self.holdout_share = 0.0
        """Holdout rows per training row: what scoring a refit model on the holdout costs."""
        self.backend = backend_name(spec.hardware)
        self.memory: MemoryBudget | None = None
        self.sampling_notes: set[tuple[str, str]] = set()
        self.stop_margin_s = 0.0
        """Kept back after the search for cancelling trials and stopping the executor (its ``close_s``)."""
        self.search_started = started
        """When the search began (a ``time.monotonic()`` reading)."""
        self.machinery_warnings: list[str] = []
        """What the execution backend went on without (a lost helper actor, say)."""

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    # -- the search phase -------------------------------------------------
    def best_outcomes(self, metric: Metric, n: int | None = None) -> list[TrialOutcome]:
        done = [o for o in self.outcomes if o.status == COMPLETE]
        ranked = sorted(done, key=lambda o: (-o.cv_score if metric.higher_is_better else o.cv_score, o.number))
        return ranked[:n] if n else ranked

    def ensemble_candidates(self, metric: Metric) -> list[TrialOutcome]:
        """The best ENSEMBLE_CANDIDATES trials, then each other family's best, best first.
        Among the top ten alone, on small data, the leading family's near-copies left the
        other families nothing to add: on titanic the ensemble never beat its best trial."""
        ranked = self.best_outcomes(metric)
        top = ranked[:ENSEMBLE_CANDIDATES]
        families = {o.family for o in top}
        for outcome in ranked[ENSEMBLE_CANDIDATES:]:
            if outcome.family not in families:
                families.add(outcome.family)
                top.append(outcome)
        return top

    def search_deadline(self, metric: Metric, refit_share: float) -> float:
        """When the search must stop: leave room to refit the likely ensemble, or only the
        best trial where the ensemble's refits would take more than ENSEMBLE_RESERVE_SHARE
        of the budget (the ensemble is then made only if its refits fit in what is left).
        The budget is never extended: the first trials are made small enough to finish
        early (``TrialClock``), and they stop growing at their time limit."""
        likely_members = self.best_outcomes(metric, 3 if self.spec.ensemble.enabled else 1)
        if not likely_members:
            return max(self.hard_deadline - self.end_reserve_s(), self.search_started + MIN_SEARCH_S)
        cost = final_cost_s(likely_members, refit_share, self.holdout_share)
        if cost > ENSEMBLE_RESERVE_SHARE * self.spec.budget.time_s:
            cost = final_cost_s(likely_members[:1], refit_share, self.holdout_share)
        return self.hard_deadline - self.end_reserve_s() - cost

    def end_reserve_s(self) -> float:
        """What the end phase takes besides any refit: stopping, selection, then ``after_refit_s``."""
        return self.stop_margin_s + select_limit_s(self.spec) + self.after_refit_s()

    def after_refit_s(self) -> float:
        """What the end phase takes after the refits: assembly, checks, importance, writing."""
        return ASSEMBLY_MARGIN_S + self.checks_margin_s() + WRITE_MARGIN_S + importance_limit_s(self.spec)

    def checks_margin_s(self) -> float:
        return CHECKS_MARGIN_S if self.holdout_share or self.spec.data.sensitive else 0.0

    def search(self, workload: Workload, metric: Metric, workload_fingerprint: str) -> None:
        data, folds = workload.data, workload.folds
        hw = self.spec.hardware
        search = Search(self.plan.families, data.task, metric, storage_url(str(self.output_dir / "study.db")),
                        study_name=self.spec.name, seed=self.spec.seed, cpus_per_trial=self.plan.cpus_per_trial,
                        gpus_per_trial=hw.gpus_per_trial if hw.gpus else 0, max_trials=self.spec.budget.max_trials,
                        trial_time_limit_s=self.plan.trial_time_limit_s, portfolios=self.plan.portfolios,
                        shares=FamilyShares(self.plan.families, metric.higher_is_better),
                        max_model_bytes=0 if folds.in_time_order else bagging.MAX_FOLD_MODELS_BYTES,
                        outcome_store=OutcomeStore(self.output_dir / TRIALS_DIR))
        search.study.set_user_attr(FINGERPRINT_ATTR, workload_fingerprint)
        self.outcomes = list(search.recovered)
        import_model_modules(self.ensemble_candidates(metric))

        def record(outcome: TrialOutcome) -> None:
            search.study.set_user_attr(ELAPSED_ATTR, self.spent_before_s + self.elapsed())
            self.outcomes.append(outcome)
            self._warn_sampled_once(outcome)
            candidates = self.ensemble_candidates(metric)
            kept = {id(candidate) for candidate in candidates}
            for other in self.outcomes:  # only candidates keep their fold models
                if id(other) not in kept:
                    other.fold_models = None
            import_model_modules(candidates)
            best = candidates[0] if candidates else None
            self.progress.trial_done(outcome, best, self.hard_deadline - time.monotonic())

        with make_executor(hw, self.plan.cpus_per_trial) as executor:
            self.stop_margin_s = executor.close_s
            search.memory = self.memory = memory_budget(self.spec, workload, executor.slots)
            self.timings["executor_start_s"] = self.elapsed() - self.timings["load_s"]
            search.clock = self.plan.clock
            search.pruning = len(folds) > 1
            payload = executor.put(workload)
            self.search_started = time.monotonic()
            all_outcomes = search.run(executor, payload, lambda: self.search_deadline(metric, folds.refit_share),
                                      record, on_warning=self._warn_machinery)
            loop_end = self.elapsed()
        self.outcomes = search.recovered + all_outcomes  # with the trials cancelled at the deadline
        for message in failure_warnings(self.outcomes):
            self._warn_machinery(message)
        self.interrupted = search.interrupted
        self.timings["stop_s"] = self.elapsed() - loop_end

    def _warn_machinery(self, message: str) -> None:
        self.machinery_warnings.append(message)
        self.progress.warn(message)

    def _warn_sampled_once(self, outcome: TrialOutcome) -> None:
        """Say, the first time for each family and reason, that a budget cut or skipped its trials."""
        kind = "skipped" if (outcome.error or "").startswith("skipped:") else outcome.sample_reason
        if kind and (outcome.family, kind) not in self.sampling_notes:
            self.sampling_notes.add((outcome.family, kind))
            self.progress.warn(sampling_warnings([outcome], self.memory)[0])

    # -- the final model --------------------------------------------------
    def select_members(self, data: TrainingData, folds: Folds,
                       metric: Metric) -> tuple[list[TrialOutcome], list[float], list[float] | None]:
        """The ensemble when it beats the best trial and its final model fits in the time left;
        otherwise the best trial alone (the leaderboard's top single model).
        Returns the members, their weights, and the ensemble's fold scores (None: no ensemble)."""
        ranked = self.best_outcomes(metric)
        if not ranked:
            raise InputError(f"no trial finished within budget.time_s={self.spec.budget.time_s:g}; "
                             "give the run more time")
        best_alone = [ranked[0]], [1.0], None
        if not self.spec.ensemble.enabled or len(ranked) < 2:
            self.ensemble_note = "disabled in the spec" if not self.spec.ensemble.enabled else "one trial finished"
            return best_alone
        select_until = time.monotonic() + select_limit_s(self.spec)
        candidates = self.ensemble_candidates(metric)
        members, selection = self._blend(candidates, data, folds, metric, select_until)
        if len(members) == 1:
            self.ensemble_note = "no blend beat the best single model"
            return best_alone
        cost = final_cost_s(members, folds.refit_share, self.holdout_share)
        if cost > self.hard_deadline - time.monotonic() - WRITE_MARGIN_S:
            overrun = f"refitting its {len(members)} members (~{cost:.1f}s) would overrun the budget"
            kept = [c for c in candidates if c.fold_models is not None]
            members, selection = self._blend(kept, data, folds, metric, select_until) if len(kept) > 1 else ([], None)
            if len(members) < 2 or not metric.is_better(selection.score, ranked[0].cv_score):
                self.ensemble_note = f"skipped: {overrun}"
                return best_alone
            self.ensemble_note = f"{len(members)} members whose fold models were kept: {overrun}"
        else:
            self.ensemble_note = f"{len(members)} members"
        return members, list(selection.weights.values()), selection.fold_scores

    def _blend(self, candidates: list[TrialOutcome], data: TrainingData, folds: Folds, metric: Metric,
               until: float) -> tuple[list[TrialOutcome], EnsembleSelection]:
        """The greedy ensemble of ``candidates`` (see ``automl.ensemble``), selected until
        the monotonic time ``until``, and its members."""
        selection = select_ensemble([c.oof for c in candidates], data.y, metric, self.spec.ensemble.size,
                                    [valid for _, valid in folds.splits], time_limit_s=until - time.monotonic())
        return [candidates[i] for i in selection.weights], selection

    def final_members(self, data: TrainingData, members: list[TrialOutcome], weights: list[float]) -> list[Member]:
        """The members' fold models, bagged, when all were kept; otherwise each refit on all
        rows, learners that grow stopping in time for the end phase (``refit_limit_s``)."""
        self.final_model = "bagged" if all_bagged(members) else "refit"
        n_jobs = self.spec.hardware.cpus or os.cpu_count() or 1
        fitted = []
        with threadpool_limits(limits=n_jobs):
            for index, (outcome, weight) in enumerate(zip(members, weights, strict=True)):
                if self.final_model == "bagged":
                    estimator = BaggedModel.from_packed(outcome.fold_models, data.task,
                                                                data.target.n_classes, n_jobs)
                else:
                    family = get_family(outcome.family)
                    estimator = family.build(outcome.params, data.task, n_jobs, self.spec.seed)
                    rows = subsample(np.arange(len(data.y)), outcome.train_rows, self.spec.seed)
                    family.fit(estimator, data.X.iloc[rows], data.y[rows],
                               time_limit_s=self.refit_limit_s(len(members) - index))
                fitted.append(Member(model_name(outcome), outcome.family, outcome.params, weight, estimator))
        return fitted

    def refit_limit_s(self, refits_left: int) -> float:
        """A refit's even share of the time left before the end phase's own reserve. Its
        estimate comes from the trial's fit time, but a trial's learners may have stopped
        growing at its limit: refit whole, a forest of 1M rows took 305 s, past the budget."""
        return max(0.0, self.hard_deadline - time.monotonic() - self.after_refit_s()) / refits_left


def memory_budget(spec: Spec, workload: Workload, slots: int) -> MemoryBudget:
    """Each trial's share of ``budget.memory_gb`` (see ``MemoryBudget``)."""
    data, folds = workload.data, workload.folds
    data_bytes = data.X.memory_usage(deep=True).sum() + data.y.nbytes
    if workload.holdout is not None:
        data_bytes += workload.holdout.memory_usage(deep=True).sum()
    train_rows = max(len(train_idx) for train_idx, _ in folds.splits)
    return MemoryBudget.share(memory_budget_bytes(spec.budget.memory_gb), float(data_bytes), slots, train_rows,
                              data.X.shape[1], data.target.n_classes, len(folds))


BUDGET_FAILURES = ("skipped:", "cancelled:")
"""Errors of trials the budget left out or stopped: choices, not failures of the family."""


def failure_warnings(outcomes: list[TrialOutcome]) -> list[str]:
    """One line per family every trial of which failed, with the first failure's message
    (each trial's is in run.json's trial log, with the end of its traceback)."""
    lines = []
    for family in dict.fromkeys(o.family for o in outcomes):
        tried = [o for o in outcomes if o.family == family and not (o.error or "").startswith(BUDGET_FAILURES)]
        if tried and all(o.status == FAILED for o in tried):
            lines.append(f"every {family} trial failed ({len(tried)}), the first with: {tried[0].error}")
    return lines


def sampling_warnings(outcomes: list[TrialOutcome], memory: MemoryBudget | None) -> list[str]:
    """One line per family and reason for trials the memory or time budget subsampled or skipped."""
    if memory is None:
        return []
    per_trial = f"{memory.per_trial_bytes / GIB:.2g} GB a trial may use (budget.memory_gb)"
    why = {"memory": f"estimated to need more than the {per_trial}",
           "time": ("estimated to take longer on all rows than it could: the first model must come within "
                    f"{FIRST_RESULT_SHARE:.0%} of budget.time_s, later trials within their time limit")}
    lines = []
    for family in dict.fromkeys(o.family for o in outcomes):
        for reason, text in why.items():
            cut = [o.train_rows for o in outcomes if o.family == family and o.train_rows and o.sample_reason == reason]
            if cut:
                lines.append(f"{reason}: {len(cut)} {family} trial(s) fit on a subsample (as few as {min(cut):,} "
                             f"of {memory.train_rows:,} rows per fold): {text}")
        skipped = [o.error for o in outcomes if o.family == family and (o.error or "").startswith("skipped:")]
        too_large = sum(1 for error in skipped if error.startswith("skipped: needs"))
        if too_large:
            lines.append(f"memory: {too_large} {family} trial(s) skipped: too large for the {per_trial} "
                         "even on a tenth of the rows")
        if len(skipped) > too_large:
            lines.append(f"time: {len(skipped) - too_large} {family} trial(s) skipped: too slow for their time "
                         "even on a tenth of the rows")
    return lines


def all_bagged(members: list[TrialOutcome]) -> bool:
    return all(m.fold_models is not None for m in members)


def final_cost_s(members: list[TrialOutcome], refit_share: float, holdout_share: float = 0.0) -> float:
    """Seconds to make the final model from ``members`` and score it on the holdout:
    nothing when their fold models were all kept (the trials already predicted the
    holdout with them), otherwise one fit on all rows each and a holdout prediction
    (from the trials' prediction times: their validation rows add up to all rows)."""
    if all_bagged(members):
        return 0.0
    return sum(refit_estimate_s(m, refit_share) + m.predict_time_s * holdout_share for m in members)


def model_name(outcome: TrialOutcome) -> str:
    return f"{outcome.family}_{outcome.number}"


def _ensemble_row(members: list[TrialOutcome], weights: list[float], fold_scores: list[float],
                  holdout_score: float) -> dict:
    return {"model": "ensemble", "family": "ensemble", "train_score": float("nan"),
            "cv_score": float(np.mean(fold_scores)), "holdout_score": holdout_score,
            "cv_std": float(np.std(fold_scores)),
            "fit_time_s": round(sum(m.fit_time_s for m in members), 3),
            "predict_time_s": round(sum(m.predict_time_s for m in members), 3),
            "n_trials_family": len(members),
            "params": json.dumps({model_name(m): round(w, 4) for m, w in zip(members, weights, strict=True)}),
            "trial": -1}


def build_leaderboard(outcomes: list[TrialOutcome], metric: Metric, ensemble_row: dict | None,
                      holdout: dict[int, float] | None = None) -> pd.DataFrame:
    """One row per completed trial (and the ensemble), best CV score first. ``train_score``
    is the fold models' mean score on their own training rows; ``holdout_score`` their
    mean prediction's score on the holdout (NaN without one)."""
    holdout = holdout or {}
    per_family = pd.Series([o.family for o in outcomes]).value_counts().to_dict()
    rows = [{"model": model_name(o), "family": o.family, "train_score": o.train_score, "cv_score": o.cv_score,
             "holdout_score": holdout.get(o.number, float("nan")), "cv_std": o.cv_std,
             "fit_time_s": round(o.fit_time_s, 3), "predict_time_s": round(o.predict_time_s, 3),
             "n_trials_family": per_family[o.family], "params": json.dumps(o.params, sort_keys=True),
             "trial": o.number}
            for o in outcomes if o.status == COMPLETE]
    if ensemble_row:
        rows.append(ensemble_row)
    board = pd.DataFrame(rows)
    board = board.sort_values(["cv_score", "trial"], ascending=[not metric.higher_is_better, True],
                              kind="stable", na_position="last").reset_index(drop=True)
    board.insert(0, "rank", np.arange(1, len(board) + 1))
    return board


@dataclass
class Inputs:
    """A fit's input, checked: everything that can be wrong is found before any work starts."""

    data: TrainingData
    folds: Folds
    metric: Metric
    plan: Plan
    profile: DataProfile
    reference: dict[str, Any]
    """The drift reference of the training rows, kept with the model."""
    holdout: pd.DataFrame | None
    """Holdout rows that have a target value, as given."""
    deduplicated_rows: int = 0
    fingerprint: str = ""
    """The spec and data this search is made of (a resumed run must match it)."""
    holdout_X: pd.DataFrame | None = None
    """The holdout rows as model-ready features."""


def _load_and_check(spec: Spec, train: pd.DataFrame | None) -> Inputs:
    if train is None and spec.data.train == IN_MEMORY:
        raise InputError("data.train is required")
    frame = load_table(train if train is not None else spec.data.train)
    target = spec.data.target
    task = check_target(frame, target, spec.task)
    get_metric(spec.metric, task)  # a metric wrong for the task is refused before the data's long checks
    profile = profile_data(frame, target, task, spec.seed, spec.data.deduplicate)
    deduplicated = 0
    if spec.data.deduplicate:  # before the holdout is carved: no row may be in both
        deduplicated = int(frame.duplicated().sum())
        frame = frame.drop_duplicates()
    frame, holdout = _split_holdout(frame, spec, task)
    data = prepare_training(frame, target, task, spec.data.drop, spec.data.groups, spec.data.time,
                            spec.data.sensitive, spec.data.positive_class, profile.kinds)
    metric = get_metric(spec.metric, task, data.target.positive)
    run_plan = plan(spec, task, len(data.y), data.X.shape[1])
    folds = make_folds(task, data.y, run_plan.validation.folds, spec.seed, data.groups, data.times,
                       run_plan.validation.split_size)
    holdout, holdout_X = _checked_holdout(holdout, data, spec) if holdout is not None else (None, None)
    reference = build_reference(frame[frame[target].notna()], data.schema, target, task)
    return Inputs(data, folds, metric, run_plan, profile, reference, holdout, deduplicated,
                  fingerprint(spec.model_dump(mode="json"), frame, holdout), holdout_X)


def _checked_holdout(holdout: pd.DataFrame, data: TrainingData,
                     spec: Spec) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The holdout's labelled rows and their model-ready features; refuses a holdout
    the run could not score, before the search rather than after it."""
    target = spec.data.target
    if target not in holdout.columns:
        raise InputError(f"holdout data has no target column '{target}'")
    missing = [c for c in spec.data.sensitive if c not in holdout.columns]
    if missing:
        raise InputError(f"holdout data has no data.sensitive column '{missing[0]}'")
    holdout = holdout[holdout[target].notna()]
    if holdout.empty:
        raise InputError("holdout data has no rows with a target value")
    data.target.encode(holdout[target])  # a class the training rows never show fails here
    return holdout, data.schema.transform(holdout)


def run_fit(spec: Spec, train: pd.DataFrame | None = None, overwrite: bool = False,
            progress: Progress | None = None, started: float | None = None, resume: bool = False) -> RunResult:
    """Fit a whole run from a validated spec; ``train`` replaces ``data.train`` when given.

    The budget counts from ``started`` (a ``time.monotonic()`` reading; the command
    line passes its own start, so imports count too), or from this call. With
    ``resume``, an interrupted run in the output folder goes on: its finished trials
    are kept, and it gets the part of the budget it had not spent (with no run there
    to resume, it starts one)."""
    progress = progress or Progress(enabled=False)
    started = started if started is not None else time.monotonic()
    with locked_folder(spec.output_dir):  # one run at a time in a folder
        if resume and not _holds_study(spec):  # killed before its first trial was asked for: begin
            _refuse_another_study(spec)
            progress.warn(f"nothing to resume in {spec.output_dir}: starting the run")
            resume = False
            overwrite = overwrite or (spec.output_dir / "study.db").is_file()  # a study file with no study in it
        if not resume:
            _existing_run_files(spec.output_dir, overwrite)  # refuse early, before loading anything
        if backend_name(spec.hardware) == "local":
            local.start_early()  # its workers' imports overlap loading the data
        try:
            return _fit(spec, train, overwrite, progress, started, resume)
        finally:
            local.discard_spare()  # started early but never used: the input was refused


def _fit(spec: Spec, train: pd.DataFrame | None, overwrite: bool, progress: Progress, started: float,
         resume: bool) -> RunResult:
    inputs = _load_and_check(spec, train)
    release_reader_memory()  # the frame as read is gone: its memory, not only the data prepared from it
    data = inputs.data
    spent_before_s = 0.0
    if resume:
        spent_before_s = resumable_run(spec, inputs.fingerprint)
        output_dir = spec.output_dir
        atomic.remove_leftovers(output_dir)
    else:
        output_dir = prepare_output_dir(spec.output_dir, overwrite)  # only once the input is known good
    run = Run(spec, inputs.plan, output_dir, progress, started, spent_before_s)
    run.resumed = resume
    run.timings["load_s"] = run.elapsed()
    validation = inputs.plan.validation
    validated = f"{len(inputs.folds)}-fold" if validation.method == "kfold" else "one split"
    progress.start(f"{spec.name}: {data.task}, {len(data.y)} rows, {data.X.shape[1]} features, "
                   f"metric {inputs.metric.name}, families {', '.join(f.name for f in inputs.plan.families)}, "
                   f"validation {validated}, {inputs.plan.cpus_per_trial} CPU(s) per trial, "
                   f"budget {spec.budget.time_s:g}s")
    for warning in [*inputs.profile.warnings, *inputs.folds.warnings]:
        progress.warn(warning)
    try:
        predictor, leaderboard, summary = _search_and_finish(run, inputs)
    finally:
        progress.stop()
    return RunResult(predictor, leaderboard, summary, output_dir)


def _study_names(spec: Spec) -> list[str]:
    """The studies in the output folder's study.db (none when there is no file)."""
    path = spec.output_dir / "study.db"
    return optuna.get_all_study_names(storage=storage_url(str(path))) if path.is_file() else []


def _holds_study(spec: Spec) -> bool:
    """Whether the output folder's study.db holds this spec's study (a run killed while
    starting may leave the file without it)."""
    return spec.name in _study_names(spec)


def _refuse_another_study(spec: Spec) -> None:
    """A resume must not start afresh over another run's study: a spec file renamed
    changes the run's name (its default), and starting would delete that run."""
    others = _study_names(spec)
    if others:
        raise InputError(f"{spec.output_dir} holds the run '{others[0]}', not '{spec.name}' (the spec's name, "
                         "by default its file's): resume it under that name, or start afresh with --overwrite")


def resumable_run(spec: Spec, expected_fingerprint: str) -> float:
    """Check the output folder holds a run of this spec and data to resume; returns
    the seconds it had spent (refuses, with InputError, anything else)."""
    study = optuna.load_study(study_name=spec.name, storage=storage_url(str(spec.output_dir / "study.db")))
    if study.user_attrs.get(FINGERPRINT_ATTR) not in (None, expected_fingerprint):
        raise InputError(f"the run in {spec.output_dir} was made from another spec or other data; "
                         "resume it with the same ones, or start afresh with --overwrite")
    return float(study.user_attrs.get(ELAPSED_ATTR, 0.0))


def _search_and_finish(run: Run, inputs: Inputs) -> tuple[Predictor, pd.DataFrame, dict[str, Any]]:
    spec, output_dir, data, folds, metric = run.spec, run.output_dir, inputs.data, inputs.folds, inputs.metric
    holdout_X = inputs.holdout_X
    run.holdout_share = len(holdout_X) / len(data.y) if holdout_X is not None else 0.0
    run.search(Workload(data, folds, holdout_X), metric, inputs.fingerprint)
    if run.interrupted:
        run.progress.warn(f"interrupted: finishing with the {len(run.best_outcomes(metric))} trials that completed")
    search_end = run.elapsed()
    members, weights, ensemble_scores = run.select_members(data, folds, metric)
    run.timings["select_s"] = run.elapsed() - search_end
    fitted = run.final_members(data, members, weights)
    run.timings["final_model_s"] = run.elapsed() - search_end - run.timings["select_s"]
    run.timings["search_s"] = search_end - run.timings["load_s"]
    final_end = run.elapsed()

    predictor = Predictor(data.schema, data.target, spec.data.target, metric.name, fitted,
                          meta={"spec": spec.model_dump(mode="json")})
    predictor.save(output_dir / "model", {REFERENCE_FILE: json.dumps(inputs.reference)})
    checks = assess_run(run, inputs, predictor, members, weights, holdout_X)
    ensemble = (_ensemble_row(members, weights, ensemble_scores, checks.ensemble_holdout)
                if ensemble_scores is not None else None)
    leaderboard = build_leaderboard(run.outcomes, metric, ensemble, checks.row_holdout)
    checks.warnings = _gap_warnings(leaderboard, metric, checks.holdout)
    run.timings["assess_s"] = run.elapsed() - final_end
    run.timings["total_s"] = run.elapsed()
    summary = _summary(run, inputs, leaderboard, checks)
    atomic.write_text(output_dir / "leaderboard.csv", leaderboard.to_csv(index=False))
    write_report(output_dir / "report.html", summary, leaderboard, run.outcomes, metric, checks)
    run.timings["total_s"] = run.elapsed()  # run.json, written last, counts the report too
    run.timings["write_s"] = run.timings["total_s"] - final_end - run.timings["assess_s"]
    summary = _summary(run, inputs, leaderboard, checks)
    atomic.write_text(output_dir / "run.json", json.dumps(summary, indent=2, default=str))
    for warning in checks.warnings:
        run.progress.warn(warning)
    run.progress.finish(leaderboard.iloc[0], checks.holdout, run.elapsed())
    return predictor, leaderboard, summary


def assess_run(run: Run, inputs: Inputs, predictor: Predictor, members: list[TrialOutcome],
               weights: list[float], holdout_X: pd.DataFrame | None) -> Checks:
    """Holdout scores (every trial and the final model), diagnostics, feature importance and
    fairness: on the holdout when there is one, otherwise out of fold."""
    data, metric, spec = inputs.data, inputs.metric, run.spec
    estimators = FittedMembers([m.estimator for m in predictor.members], weights, data.task, data.target.n_classes)
    if holdout_X is not None:
        y = data.target.encode(inputs.holdout[spec.data.target])
        member_mean = weighted_mean([m.holdout_prediction for m in members], weights)
        bagged_prediction = member_mean if run.final_model == "bagged" else None  # what the model predicts
        prediction = bagged_prediction if bagged_prediction is not None else estimators.predict_matrix(holdout_X)
        holdout = scores_of(predictor, y, prediction)
        ensemble_holdout = score_or_nan(metric, y, member_mean) if member_mean is not None else float("nan")
        diagnostics = Diagnostics(y, prediction, "holdout")
        sensitive = inputs.holdout[spec.data.sensitive].reset_index(drop=True)
        importance_on = (_importance_model(run, inputs, predictor, weights), holdout_X, y, "holdout")
    else:
        covered = inputs.folds.covered
        holdout, ensemble_holdout = None, float("nan")
        diagnostics = Diagnostics(data.y[covered], weighted_mean([m.oof for m in members], weights)[covered],
                                  "out-of-fold predictions")
        sensitive = data.sensitive[covered].reset_index(drop=True) if data.sensitive is not None else None
        importance_on = _importance_rows_without_holdout(run, inputs, predictor, weights)
    time_left = max(0.0, run.hard_deadline - time.monotonic() - WRITE_MARGIN_S)
    importance = feature_importance(*importance_on, metric=metric, time_limit_s=min(importance_limit_s(spec),
                                                                                     time_left), seed=spec.seed)
    fairness = (fairness_report(diagnostics.y, diagnostics.prediction, sensitive, data.task, metric,
                                diagnostics.source) if spec.data.sensitive else None)
    row_holdout = holdout_scores(run.outcomes, diagnostics.y, metric) if holdout is not None else {}
    return Checks(holdout, row_holdout, ensemble_holdout, diagnostics, importance, fairness)


def _importance_rows_without_holdout(run: Run, inputs: Inputs, predictor: Predictor, weights: list[float]):
    """Rows no model saw: the first fold's validation rows, predicted by the members' first
    fold models when they were bagged; otherwise the training rows, and the source says so."""
    data = inputs.data
    model = _importance_model(run, inputs, predictor, weights)
    if run.final_model == "bagged":
        _, valid_idx = inputs.folds.splits[0]
        return model, data.X.iloc[valid_idx], data.y[valid_idx], "CV fold 1 (rows its models never saw)"
    return model, data.X, data.y, "training rows (the model was fit on them: importance may be overstated)"


def _importance_model(run: Run, inputs: Inputs, predictor: Predictor, weights: list[float]) -> FittedMembers:
    """The model whose permutation importance is measured: a bagged model's first fold
    models (k times cheaper to predict with than all k, and the same kind of model),
    otherwise the final members."""
    data = inputs.data
    bagged = run.final_model == "bagged"
    estimators = [m.estimator.models[0] if bagged else m.estimator for m in predictor.members]
    return FittedMembers(estimators, weights, data.task, data.target.n_classes)


def import_model_modules(candidates: list[TrialOutcome]) -> list[threading.Thread]:
    """Start importing what loading the candidates' models needs (torch for the MLP) in the
    background, while the search runs: the end phase's reserve does not count seconds of
    imports, and the search loop goes on meanwhile. Loading a model before the import ends
    waits for it (Python's per-module import lock). Returns the threads started."""
    needed = {m for outcome in candidates for m in get_family(outcome.family).model_modules} - set(sys.modules)
    threads = [threading.Thread(target=importlib.import_module, args=(module,), name=f"import {module}", daemon=True)
               for module in sorted(needed)]
    for thread in threads:
        thread.start()
    return threads


def select_limit_s(spec: Spec) -> float:
    return min(SELECT_MAX_S, SELECT_SHARE * spec.budget.time_s)


def importance_limit_s(spec: Spec) -> float:
    """Seconds for permutation importance: IMPORTANCE_SHARE of the budget, within bounds."""
    return min(IMPORTANCE_MAX_S, max(IMPORTANCE_MIN_S, IMPORTANCE_SHARE * spec.budget.time_s))


def _gap_warnings(leaderboard: pd.DataFrame, metric: Metric, holdout: dict | None) -> list[str]:
    """Large gaps of the best model: its train, CV and holdout scores."""
    best = leaderboard.iloc[0]
    holdout_score = holdout["score"] if holdout else None
    return gap_warnings(best["model"], float(best["train_score"]), float(best["cv_score"]), float(best["cv_std"]),
                        holdout_score, metric)


def _summary(run: Run, inputs: Inputs, leaderboard: pd.DataFrame, checks: Checks) -> dict[str, Any]:
    spec, data, metric, folds = run.spec, inputs.data, inputs.metric, inputs.folds
    counts = pd.Series([o.status for o in run.outcomes]).value_counts().to_dict()
    best = leaderboard.iloc[0]
    return {
        "name": spec.name,
        "task": data.task,
        "metric": metric.name,
        "higher_is_better": metric.higher_is_better,
        "best_model": best["model"],  # what model/ holds: select_members picks the leaderboard's top
        "cv_score": float(best["cv_score"]),
        "holdout": checks.holdout,
        "warnings": (inputs.profile.warnings + list(inputs.folds.warnings) + run.machinery_warnings
                     + sampling_warnings(run.outcomes, run.memory) + checks.warnings),
        "large_gap": bool(checks.warnings),
        "ensemble": run.ensemble_note,
        "interrupted": run.interrupted,
        "resumed": run.resumed,
        "final_model": run.final_model,
        "backend": run.backend,
        "memory_gb_per_trial": round(run.memory.per_trial_bytes / GIB, 3) if run.memory else None,
        "plan": run.plan.describe(),
        "rows": len(data.y),
        "dropped_rows_missing_target": data.n_dropped_rows,
        "deduplicated_rows": inputs.deduplicated_rows,
        "folds": {"kind": folds.kind, "n": len(folds)},
        "validation": run.plan.validation.describe() | {"kind": folds.kind, "n": len(folds)},
        "cpus_per_trial": run.plan.cpus_per_trial,
        "columns": data.schema.describe(),
        "classes": data.target.classes,
        "profile": inputs.profile.to_dict(),
        "feature_importance": {"source": checks.importance.source, "note": checks.importance.note,
                               "features": checks.importance.rows},
        "fairness": checks.fairness,
        "trials": {"total": len(run.outcomes), "complete": counts.get(COMPLETE, 0),
                   "pruned": counts.get(PRUNED, 0), "failed": counts.get("failed", 0)},
        "timings": {k: round(v, 3) for k, v in run.timings.items()} | {"budget_s": spec.budget.time_s},
        "over_budget_s": round(max(0.0, run.timings["total_s"] - spec.budget.time_s), 3),
        "trial_log": [{"trial": o.number, "family": o.family, "status": o.status, "train_score": o.train_score,
                       "cv_score": o.cv_score, "fold_scores": o.fold_scores, "fit_time_s": o.fit_time_s,
                       "train_rows": o.train_rows,
                       "host": o.host, "node_id": o.node_id, "pid": o.pid, "resources": o.resources,
                       "started_at": o.started_at, "ended_at": o.ended_at, "error": o.error,
                       "traceback": o.traceback}
                      for o in run.outcomes],
        "spec": spec.model_dump(mode="json"),
        "versions": library_versions(),
    }
