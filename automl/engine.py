"""One fit, end to end, in the five steps of training:

1. the data, loaded and checked, and the plan made for it (``automl.inputs``);
2. the search: trials on the executor until the budget says stop (``Run.search``);
3. the final model: ensemble and members (``automl.final_model``);
4. checks on the holdout or out of fold (``automl.assess``);
5. the outputs: model, leaderboard, report and run.json (``automl.outputs``).

The whole fit ends within ``budget.time_s``: the search stops early enough to
leave time for the end phase, measured from the trials themselves (``automl.budget``).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from automl import atomic, bagging
from automl.artifact import Member, Predictor
from automl.assess import assess_run
from automl.budget import RunClock
from automl.checkpoint import (
    ELAPSED_ATTR,
    FINGERPRINT_ATTR,
    TRIALS_DIR,
    OutcomeStore,
    holds_study,
    refuse_another_study,
    resumable_run,
    storage_url,
)
from automl.data import release_reader_memory
from automl.drift import REFERENCE_FILE
from automl.execution import backend_name, local, make_executor
from automl.final_model import (
    calibrate_members,
    ensemble_candidates,
    final_members,
    import_in_background,
    import_model_modules,
    mitigate_members,
    select_members,
)
from automl.folder_lock import locked_folder
from automl.inference import ROUNDING, InferenceBudget
from automl.inputs import Inputs, load_and_check
from automl.metrics import Metric
from automl.outputs import (
    build_leaderboard,
    ensemble_row,
    existing_run_files,
    failure_warnings,
    leaderboard_gap_warnings,
    model_name,
    prepare_output_dir,
    sampling_warnings,
    shipped_row,
    start_line,
    write_outputs,
)
from automl.planner import (
    FamilyShares,
    MemoryBudget,
    Plan,
    memory_budget,
)
from automl.progress import Progress
from automl.report import PLOTTING_MODULE
from automl.retrain import PriorModel, comparison
from automl.search import Search
from automl.spec import Spec
from automl.trial import COMPLETE, TrialOutcome, Workload


@dataclass
class RunResult:
    predictor: Predictor
    leaderboard: pd.DataFrame
    summary: dict[str, Any]
    output_dir: Path


class Run(RunClock):
    """The state of one fit while it runs (its clock: ``automl.budget.RunClock``)."""

    def __init__(self, spec: Spec, run_plan: Plan, output_dir: Path, progress: Progress, started: float,
                 spent_before_s: float = 0.0):
        super().__init__(spec, started, spent_before_s)
        self.plan = run_plan
        self.output_dir = output_dir
        self.progress = progress
        self.interrupted = False
        self.resumed = False
        self.outcomes: list[TrialOutcome] = []
        self.timings: dict[str, float] = {}
        self.ensemble_note = "not tried"
        self.calibration: dict[str, Any] = {"method": "none", "reason": "not tried"}
        """What ``calibrate_members`` decided, for run.json."""
        self.final_model = ""
        """How the members were made: "bagged" fold models, "refit" on all rows, or "mixed" (some of each)."""
        self.refit_for_budget = False
        """Whether the inference budget chose members refit on all rows (``select_members``)."""
        self.inference: dict[str, Any] = {}
        """The inference budget and what it cost the final model's CV score, for run.json."""
        self.budget: InferenceBudget | None = None
        self.predicted_rows = 0
        """Rows each trial predicted over its folds (what its ``predict_time_s`` is for)."""
        self.shipped_model = ""
        """The leaderboard's name for what model/ holds: "ensemble", or one trial's."""
        self.prior: PriorModel | None = None
        """The model a retrain starts from (``automl.retrain``)."""
        self.retrain: dict[str, Any] | None = None
        """A retrain's comparison of the previous model and the new one, for run.json."""
        self.backend = backend_name(spec.hardware)
        self.memory: MemoryBudget | None = None
        self.sampling_notes: set[tuple[str, str]] = set()
        self.machinery_warnings: list[str] = []
        """What the execution backend went on without (a lost helper actor, say)."""

    # -- the search phase -------------------------------------------------
    def best_outcomes(self, metric: Metric, n: int | None = None) -> list[TrialOutcome]:
        done = [o for o in self.outcomes if o.status == COMPLETE]
        ranked = sorted(done, key=lambda o: (-o.cv_score if metric.higher_is_better else o.cv_score, o.number))
        return ranked[:n] if n else ranked

    def likely_members(self, metric: Metric) -> list[TrialOutcome]:
        """The trials the final model will likely be made of, best first (for its time reserve)."""
        return self.best_outcomes(metric, 3 if self.spec.ensemble.enabled else 1)

    def inference_budget(self, best: TrialOutcome, n_rows: int, overhead_ms: float = 0.0) -> InferenceBudget:
        """``predict.max_ms_per_row`` on this data, with ``best`` the best trial so far and
        ``overhead_ms`` the features' cost a row (``automl.inference.features_ms_per_row``)."""
        return InferenceBudget.resolve(self.spec.predict.max_ms_per_row, best, self.predicted_rows, n_rows,
                                       self.spec.predict.refit_full, overhead_ms)

    def note_inference_cost(self, members: list[TrialOutcome], fitted: list[Member],
                            ensemble_scores: list[float] | None, metric: Metric) -> None:
        """Record the final model's cost per row and CV score (run.json), and say what the
        inference budget cost, where it changed the model."""
        self.shipped_model = "ensemble" if ensemble_scores is not None else model_name(members[0])
        score = float(np.mean(ensemble_scores)) if ensemble_scores is not None else members[0].cv_score
        self.inference |= {"ms_per_row": self.budget.final_ms(members, [m.estimator for m in fitted]),
                           "cv_score": score}
        limit = self.inference["max_ms_per_row"]  # the budget the model was chosen within (None: none)
        if limit is not None and self.inference["ms_per_row"] > limit * (1 + ROUNDING) and self.final_model != "refit":
            self.progress.warn(f"the final model takes ~{self.inference['ms_per_row']:.4g} ms a row, over "
                               f"predict.max_ms_per_row={limit:.4g}: no time was left to refit its members")
        if "unlimited_cv_score" in self.inference:
            lost = (self.inference["unlimited_cv_score"] - score) * (1 if metric.higher_is_better else -1)
            self.inference["cv_score_lost"] = lost
            self.progress.note(f"inference budget {limit:.4g} ms a row: the final model "
                               f"takes ~{self.inference['ms_per_row']:.4g}, cv {score:.5g} against "
                               f"{self.inference['unlimited_cv_score']:.5g} without the budget ({lost:.4g} lost)")

    def search(self, workload: Workload, metric: Metric, workload_fingerprint: str) -> None:
        data, folds = workload.data, workload.folds
        hw = self.spec.hardware
        search = Search(self.plan.families, data.task, metric, storage_url(str(self.output_dir / "study.db")),
                        study_name=self.spec.name, seed=self.spec.seed, cpus_per_trial=self.plan.cpus_per_trial,
                        max_trials=self.spec.budget.max_trials,
                        trial_time_limit_s=self.plan.trial_time_limit_s, portfolios=self.plan.portfolios,
                        shares=FamilyShares(self.plan.families, metric.higher_is_better),
                        max_model_bytes=0 if folds.in_time_order else bagging.MAX_FOLD_MODELS_BYTES,
                        outcome_store=OutcomeStore(self.output_dir / TRIALS_DIR),
                        warm_start=self.prior.configs if self.prior else ())
        search.study.set_user_attr(FINGERPRINT_ATTR, workload_fingerprint)
        self.outcomes = list(search.recovered)
        import_model_modules(ensemble_candidates(self, metric))
        import_in_background({PLOTTING_MODULE})

        def record(outcome: TrialOutcome) -> None:
            search.study.set_user_attr(ELAPSED_ATTR, self.spent_before_s + self.elapsed())
            self.outcomes.append(outcome)
            self._warn_sampled_once(outcome)
            candidates = ensemble_candidates(self, metric)
            kept = {id(candidate) for candidate in candidates}
            for other in self.outcomes:  # only candidates keep their fold models and out-of-fold predictions
                if id(other) not in kept:
                    other.fold_models = other.oof = None  # 8 bytes a row each: 7.6 MB a trial on 950k rows
            import_model_modules(candidates)
            best = candidates[0] if candidates else None
            self.progress.trial_done(outcome, best, self.hard_deadline - time.monotonic())

        with make_executor(hw, self.plan.cpus_per_trial) as executor:
            self.stop_margin_s = executor.close_s
            search.memory = self.memory = memory_budget(self.spec, workload, executor.slots)
            self.timings["executor_start_s"] = self.elapsed() - self.timings["load_s"]
            self.plan.use_gpus(self.spec, executor.gpus, len(data.y), data.X.shape[1])
            search.use_gpus(self.plan.gpus_per_trial, executor.gpus)
            search.start_gpu_workers(executor)
            search.clock = self.plan.clock
            # a retrain without a search refits the previous members: none is stopped early for scoring worse
            search.pruning = len(folds) > 1 and not (self.prior is not None and self.prior.weights is not None)
            payload = executor.put(workload)
            self.predicted_rows = int(folds.covered.sum())  # once: the deadline below is read on every turn
            self.search_started = time.monotonic()

            def deadline() -> float:
                likely = self.likely_members(metric)
                candidates = ensemble_candidates(self, metric) if self.spec.ensemble.enabled else likely
                refit = bool(likely) and self.inference_budget(likely[0], len(data.y)).expects_refit(likely[0])
                return self.search_deadline(likely, candidates, folds.refit_share, len(data.y), refit)

            all_outcomes = search.run(executor, payload, deadline, record, on_warning=self._warn_machinery)
            loop_end = self.elapsed()
            if executor.gpu_workers_ready_after_s:  # the slowest GPU worker's start and warm-up
                self.timings["gpu_worker_start_s"] = max(executor.gpu_workers_ready_after_s)
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

def run_fit(spec: Spec, train: pd.DataFrame | None = None, overwrite: bool = False,
            progress: Progress | None = None, started: float | None = None, resume: bool = False,
            prior: PriorModel | None = None) -> RunResult:
    """Fit a whole run from a validated spec; ``train`` replaces ``data.train`` when given.

    The budget counts from ``started`` (a ``time.monotonic()`` reading; the command
    line passes its own start, so imports count too), or from this call. With
    ``resume``, an interrupted run in the output folder goes on: its finished trials
    are kept, and it gets the part of the budget it had not spent (with no run there
    to resume, it starts one). ``prior``: the model a retrain starts from (``automl.retrain``)."""
    progress = progress or Progress(enabled=False)
    started = started if started is not None else time.monotonic()
    with locked_folder(spec.output_dir):  # one run at a time in a folder
        if resume and not holds_study(spec):  # killed before its first trial was asked for: begin
            refuse_another_study(spec)
            progress.warn(f"nothing to resume in {spec.output_dir}: starting the run")
            resume = False
            overwrite = overwrite or (spec.output_dir / "study.db").is_file()  # a study file with no study in it
        if not resume:
            existing_run_files(spec.output_dir, overwrite)  # refuse early, before loading anything
        if backend_name(spec.hardware) == "local":
            local.start_early()  # its workers' imports overlap loading the data
        return _fit(spec, train, overwrite, progress, started, resume, prior)


def _fit(spec: Spec, train: pd.DataFrame | None, overwrite: bool, progress: Progress, started: float,
         resume: bool, prior: PriorModel | None = None) -> RunResult:
    inputs = load_and_check(spec, train)
    release_reader_memory()  # the frame as read is gone: its memory, not only the data prepared from it
    spent_before_s = 0.0
    if resume:
        spent_before_s = resumable_run(spec, inputs.fingerprint)
        output_dir = spec.output_dir
        atomic.remove_leftovers(output_dir)
    else:
        output_dir = prepare_output_dir(spec.output_dir, overwrite)  # only once the input is known good
    run = Run(spec, inputs.plan, output_dir, progress, started, spent_before_s)
    run.resumed, run.prior = resume, prior
    run.timings["load_s"] = run.elapsed()
    progress.start(start_line(spec, inputs))
    for warning in [*inputs.profile.warnings, *inputs.folds.warnings]:
        progress.warn(warning)
    try:
        predictor, leaderboard, summary = _search_and_finish(run, inputs)
    finally:
        progress.stop()
    return RunResult(predictor, leaderboard, summary, output_dir)


def _search_and_finish(run: Run, inputs: Inputs) -> tuple[Predictor, pd.DataFrame, dict[str, Any]]:
    spec, output_dir, data, folds, metric = run.spec, run.output_dir, inputs.data, inputs.folds, inputs.metric
    holdout_X = inputs.holdout_X
    run.holdout_share = len(holdout_X) / len(data.y) if holdout_X is not None else 0.0
    run.search(Workload(data, folds, holdout_X), metric, inputs.fingerprint)
    if run.interrupted:
        run.progress.warn(f"interrupted: finishing with the {len(run.best_outcomes(metric))} trials that completed")
    search_end = run.elapsed()
    members, weights, ensemble_scores = select_members(run, data, folds, metric)
    calibration = calibrate_members(run, members, weights, data, folds, metric)
    mitigation = mitigate_members(run, members, weights, data, folds, calibration)
    run.timings["select_s"] = run.elapsed() - search_end
    fitted = final_members(run, data, members, weights, folds.refit_share)
    run.note_inference_cost(members, fitted, ensemble_scores, metric)
    run.timings["final_model_s"] = run.elapsed() - search_end - run.timings["select_s"]
    run.timings["search_s"] = search_end - run.timings["load_s"]
    final_end = run.elapsed()

    predictor = Predictor(data.schema, data.target, spec.data.target, metric.name, fitted,
                          meta={"spec": spec.model_dump(mode="json")}, calibration=calibration, mitigation=mitigation)
    predictor.save(output_dir / "model", {REFERENCE_FILE: json.dumps(inputs.reference)})
    checks = assess_run(run, inputs, predictor, members, weights, holdout_X)
    models_ms = run.inference["ms_per_row"] - run.inference["features_ms_per_row"]
    ensemble = (ensemble_row(members, weights, ensemble_scores, checks.ensemble_holdout, models_ms)
                if ensemble_scores is not None else None)
    leaderboard = build_leaderboard(run.outcomes, metric, ensemble, checks.row_holdout, run.predicted_rows)
    checks.warnings = leaderboard_gap_warnings(leaderboard, metric, checks.holdout, run.shipped_model)
    if run.prior is not None and checks.holdout is not None:
        run.retrain = comparison(run.prior, inputs.holdout, checks.holdout["score"], data.task)
    run.timings["assess_s"] = run.elapsed() - final_end
    summary = write_outputs(run, inputs, leaderboard, checks, final_end)
    for warning in checks.warnings:
        run.progress.warn(warning)
    run.progress.finish(shipped_row(leaderboard, run.shipped_model), checks.holdout, run.elapsed())
    return predictor, leaderboard, summary


