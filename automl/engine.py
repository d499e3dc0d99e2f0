"""One fit, end to end: data -> folds -> search on Ray -> ensemble -> final model -> outputs.

The whole fit ends within ``budget.time_s``: the search stops early enough to
leave time for the end phase (stopping, ensemble selection, refit, writing),
measured from the trials themselves.

Final model, the same way for every member of the ensemble: the members' own
fold models, bagged (see ``automl.bagging``), when every member's were small
enough to keep; they cost no fitting time and are exactly what the ensemble
was weighted on. Otherwise every member is refit on all training rows, one
extra fit each, which the search leaves time for; when the time left cannot
pay for it, the best single trial is the model.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split
from threadpoolctl import threadpool_limits

from automl import bagging
from automl.artifact import Member, Predictor, library_versions
from automl.data import TrainingData, infer_task, load_table, prepare_training
from automl.ensemble import select_ensemble
from automl.errors import InputError
from automl.execution import RayExecutor
from automl.metrics import Metric, all_scores, get_metric
from automl.models import get_family
from automl.planner import FamilyShares, Plan, plan
from automl.progress import Progress
from automl.report import write_report
from automl.search import Search, storage_url
from automl.spec import IN_MEMORY, Spec
from automl.trial import COMPLETE, PRUNED, TrialOutcome
from automl.validation import Folds, make_folds

RUN_FILES = ("study.db", "study.db-wal", "study.db-shm", "leaderboard.csv", "run.json", "report.html", "model")
STOP_MARGIN_S = 2.0
"""Kept back after the search for cancelling trials and stopping Ray (1.4-1.6 s measured on 2 cores)."""
SELECT_MARGIN_S = 1.0
"""The ensemble selection's time limit (it took 0.4-1.1 s with 10 candidates on 2 cores)."""
WRITE_MARGIN_S = 1.5
"""Kept back at the very end for writing the model, leaderboard, run.json and report
(0.5 s measured; up to 1.4 s more when the report's plotting library is not yet imported)."""
ENSEMBLE_CANDIDATES = 10
FIRST_RESULT_GRACE_S = 60.0


@dataclass
class RunResult:
    predictor: Predictor
    leaderboard: pd.DataFrame
    summary: dict[str, Any]
    output_dir: Path


def _existing_run_files(folder: Path, overwrite: bool) -> list[Path]:
    """Our files already in ``folder``; without ``overwrite`` their presence is an error."""
    existing = [folder / name for name in RUN_FILES if (folder / name).exists()]
    if existing and not overwrite:
        raise InputError(f"{folder} already holds a run ({existing[0].name}); pass --overwrite or another --output")
    return existing


def prepare_output_dir(folder: Path, overwrite: bool) -> Path:
    """Refuse to mix two runs in one folder; with ``overwrite``, remove only our own files."""
    for path in _existing_run_files(folder, overwrite):
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _split_holdout(frame: pd.DataFrame, spec: Spec, task: str) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    if spec.data.test:
        return frame, load_table(spec.data.test)
    if spec.validation.test_size:
        labelled = frame[frame[spec.data.target].notna()]
        stratify = labelled[spec.data.target] if task != "regression" else None
        train, test = train_test_split(labelled, test_size=spec.validation.test_size,
                                       random_state=spec.seed, stratify=stratify)
        return train, test
    return frame, None


def refit_estimate_s(outcome: TrialOutcome, n_folds: int) -> float:
    """Seconds to fit a configuration on all rows, from its k fold fits."""
    return outcome.fit_time_s / max(1, n_folds - 1)


class Run:
    """The state of one fit while it runs."""

    def __init__(self, spec: Spec, run_plan: Plan, output_dir: Path, progress: Progress, started: float):
        self.spec = spec
        self.plan = run_plan
        self.output_dir = output_dir
        self.progress = progress
        self.started = started
        self.hard_deadline = self.started + spec.budget.time_s
        self.outcomes: list[TrialOutcome] = []
        self.timings: dict[str, float] = {}
        self.ensemble_note = "not tried"
        self.final_model = ""
        """How the members were made: "bagged" fold models or "refit" on all rows."""

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    # -- the search phase -------------------------------------------------
    def best_outcomes(self, metric: Metric, n: int | None = None) -> list[TrialOutcome]:
        done = [o for o in self.outcomes if o.status == COMPLETE]
        ranked = sorted(done, key=lambda o: (-o.cv_score if metric.higher_is_better else o.cv_score, o.number))
        return ranked[:n] if n else ranked

    def search_deadline(self, metric: Metric, n_folds: int) -> float:
        """When the search must stop: leave room to refit the likely ensemble.

        Until a first trial completes, the search may run past the budget (by
        FIRST_RESULT_GRACE_S or the budget again, whichever is longer) rather than
        end with no model, as FLAML and AutoGluon do; ``run.json`` reports the overrun."""
        likely_members = self.best_outcomes(metric, 3 if self.spec.ensemble.enabled else 1)
        if not likely_members:
            return self.hard_deadline + max(FIRST_RESULT_GRACE_S, self.spec.budget.time_s)
        reserve = STOP_MARGIN_S + SELECT_MARGIN_S + WRITE_MARGIN_S + final_cost_s(likely_members, n_folds)
        return self.hard_deadline - reserve

    def search(self, data: TrainingData, folds: Folds, metric: Metric) -> None:
        hw = self.spec.hardware
        search = Search(self.plan.families, data.task, metric, storage_url(str(self.output_dir / "study.db")),
                        study_name=self.spec.name, seed=self.spec.seed, cpus_per_trial=hw.cpus_per_trial,
                        gpus_per_trial=hw.gpus_per_trial if hw.gpus else 0, max_trials=self.spec.budget.max_trials,
                        trial_time_limit_s=self.plan.trial_time_limit_s, portfolios=self.plan.portfolios,
                        shares=FamilyShares(self.plan.families, metric.higher_is_better),
                        max_model_bytes=bagging.MAX_FOLD_MODELS_BYTES)

        def record(outcome: TrialOutcome) -> None:
            self.outcomes.append(outcome)
            candidates = self.best_outcomes(metric)
            for dropped in candidates[ENSEMBLE_CANDIDATES:]:  # only candidates keep their fold models
                dropped.fold_models = None
            best = candidates[0] if candidates else None
            self.progress.trial_done(outcome, best, self.hard_deadline - time.monotonic())

        with RayExecutor(hw.ray_address, hw.cpus, hw.gpus, hw.cpus_per_trial) as executor:
            self.timings["ray_start_s"] = self.elapsed() - self.timings["load_s"]
            payload = executor.put((data, folds))
            all_outcomes = search.run(executor, payload, lambda: self.search_deadline(metric, len(folds)), record)
            loop_end = self.elapsed()
        self.outcomes = all_outcomes  # with the trials cancelled at the deadline
        self.timings["stop_s"] = self.elapsed() - loop_end

    # -- the final model --------------------------------------------------
    def select_members(self, data: TrainingData, folds: Folds,
                       metric: Metric) -> tuple[list[TrialOutcome], list[float], list[float] | None]:
        """The ensemble when it beats the best trial and its final model fits in the time left;
        otherwise the best trial alone (the leaderboard's top single model).
        Returns the members, their weights, and the ensemble's fold scores (None: no ensemble)."""
        ranked = self.best_outcomes(metric)
        if not ranked:
            raise InputError(f"no trial finished, even {FIRST_RESULT_GRACE_S:g}s past "
                             f"budget.time_s={self.spec.budget.time_s:g}; give the run more time")
        best_alone = [ranked[0]], [1.0], None
        if not self.spec.ensemble.enabled or len(ranked) < 2:
            self.ensemble_note = "disabled in the spec" if not self.spec.ensemble.enabled else "one trial finished"
            return best_alone
        candidates = ranked[:ENSEMBLE_CANDIDATES]
        selection = select_ensemble([c.oof for c in candidates], data.y, metric, self.spec.ensemble.size,
                                    [valid for _, valid in folds.splits], time_limit_s=SELECT_MARGIN_S)
        members = [candidates[i] for i in selection.weights]
        cost = final_cost_s(members, len(folds))
        if len(members) == 1:
            self.ensemble_note = "no blend beat the best single model"
            return best_alone
        if cost > self.hard_deadline - time.monotonic() - WRITE_MARGIN_S:
            self.ensemble_note = (f"skipped: refitting its {len(members)} members (~{cost:.1f}s) "
                                  "would overrun the budget")
            return best_alone
        self.ensemble_note = f"{len(members)} members"
        return members, list(selection.weights.values()), selection.fold_scores

    def final_members(self, data: TrainingData, members: list[TrialOutcome], weights: list[float]) -> list[Member]:
        """The members' fold models, bagged, when all were kept; otherwise each refit on all rows."""
        self.final_model = "bagged" if all_bagged(members) else "refit"
        n_jobs = self.spec.hardware.cpus or os.cpu_count() or 1
        fitted = []
        with threadpool_limits(limits=n_jobs):
            for outcome, weight in zip(members, weights, strict=True):
                if self.final_model == "bagged":
                    estimator = bagging.BaggedModel.from_packed(outcome.fold_models, data.task,
                                                                data.target.n_classes)
                else:
                    estimator = get_family(outcome.family).build(outcome.params, data.task, n_jobs, self.spec.seed)
                    estimator.fit(data.X, data.y)
                fitted.append(Member(model_name(outcome), outcome.family, outcome.params, weight, estimator))
        return fitted


def all_bagged(members: list[TrialOutcome]) -> bool:
    return all(m.fold_models is not None for m in members)


def final_cost_s(members: list[TrialOutcome], n_folds: int) -> float:
    """Seconds to make the final model from ``members``: nothing when their fold
    models were all kept, otherwise one fit on all rows each."""
    return 0.0 if all_bagged(members) else sum(refit_estimate_s(m, n_folds) for m in members)


def model_name(outcome: TrialOutcome) -> str:
    return f"{outcome.family}_{outcome.number}"


def _ensemble_row(members: list[TrialOutcome], weights: list[float], fold_scores: list[float]) -> dict:
    return {"model": "ensemble", "family": "ensemble", "cv_score": float(np.mean(fold_scores)),
            "cv_std": float(np.std(fold_scores)),
            "fit_time_s": round(sum(m.fit_time_s for m in members), 3),
            "predict_time_s": round(sum(m.predict_time_s for m in members), 3),
            "n_trials_family": len(members),
            "params": json.dumps({model_name(m): round(w, 4) for m, w in zip(members, weights, strict=True)}),
            "trial": -1}


def build_leaderboard(outcomes: list[TrialOutcome], metric: Metric, ensemble_row: dict | None) -> pd.DataFrame:
    per_family = pd.Series([o.family for o in outcomes]).value_counts().to_dict()
    rows = [{"model": model_name(o), "family": o.family, "cv_score": o.cv_score, "cv_std": o.cv_std,
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


def _holdout_scores(predictor: Predictor, test: pd.DataFrame, spec: Spec, metric: Metric) -> dict[str, Any]:
    target = spec.data.target
    test = test[test[target].notna()]
    y = predictor.target.encode(test[target])
    prediction = predictor.predict_matrix(test)
    scores = all_scores(predictor.task, y, prediction)
    return {"rows": len(test), "metric": metric.name, "score": scores.get(metric.name), "scores": scores}


def _load_and_check(spec: Spec, train: pd.DataFrame | None):
    """Everything that can be wrong with the input, found before any work starts."""
    if train is None and spec.data.train == IN_MEMORY:
        raise InputError("data.train is required")
    frame = load_table(train if train is not None else spec.data.train)
    if spec.data.target not in frame.columns:
        raise InputError(f"target column '{spec.data.target}' is not in the data")
    task = spec.task if spec.task != "auto" else infer_task(frame[spec.data.target])
    metric = get_metric(spec.metric, task)
    frame, holdout = _split_holdout(frame, spec, task)
    data = prepare_training(frame, spec.data.target, task, spec.data.drop, spec.data.groups, spec.data.time)
    folds = make_folds(task, data.y, spec.validation.folds, spec.seed, data.groups, data.times)
    run_plan = plan(spec, task, len(data.y), data.X.shape[1], len(folds))
    if holdout is not None:
        if spec.data.target not in holdout.columns:
            raise InputError(f"holdout data has no target column '{spec.data.target}'")
        labels = holdout[spec.data.target].dropna()
        data.target.encode(labels)  # a class the training rows never show fails here, not after the search
        data.schema.transform(holdout)
    return data, folds, metric, run_plan, holdout


def run_fit(spec: Spec, train: pd.DataFrame | None = None, overwrite: bool = False,
            progress: Progress | None = None, started: float | None = None) -> RunResult:
    """Fit a whole run from a validated spec; ``train`` replaces ``data.train`` when given.

    The budget counts from ``started`` (a ``time.monotonic()`` reading; the command
    line passes its own start, so imports count too), or from this call."""
    progress = progress or Progress(enabled=False)
    started = started if started is not None else time.monotonic()
    _existing_run_files(spec.output_dir, overwrite)  # refuse early, before loading anything
    data, folds, metric, run_plan, holdout = _load_and_check(spec, train)
    output_dir = prepare_output_dir(spec.output_dir, overwrite)  # only once the input is known good
    run = Run(spec, run_plan, output_dir, progress, started)
    run.timings["load_s"] = run.elapsed()
    progress.start(f"{spec.name}: {data.task}, {len(data.y)} rows, {data.X.shape[1]} features, "
                   f"metric {metric.name}, families {', '.join(f.name for f in run_plan.families)}, "
                   f"budget {spec.budget.time_s:g}s")

    try:
        predictor, leaderboard, summary = _search_and_finish(run, data, folds, metric, holdout)
    finally:
        progress.stop()
    return RunResult(predictor, leaderboard, summary, output_dir)


def _search_and_finish(run: Run, data: TrainingData, folds: Folds, metric: Metric,
                       holdout: pd.DataFrame | None) -> tuple[Predictor, pd.DataFrame, dict[str, Any]]:
    spec, output_dir = run.spec, run.output_dir
    run.search(data, folds, metric)
    search_end = run.elapsed()
    members, weights, ensemble_scores = run.select_members(data, folds, metric)
    run.timings["select_s"] = run.elapsed() - search_end
    fitted = run.final_members(data, members, weights)
    run.timings["final_model_s"] = run.elapsed() - search_end - run.timings["select_s"]
    run.timings["search_s"] = search_end - run.timings["load_s"]
    refit_end = run.elapsed()

    ensemble = _ensemble_row(members, weights, ensemble_scores) if ensemble_scores is not None else None
    leaderboard = build_leaderboard(run.outcomes, metric, ensemble)
    predictor = Predictor(data.schema, data.target, spec.data.target, metric.name, fitted,
                          meta={"spec": spec.model_dump(mode="json")})
    predictor.save(output_dir / "model")
    holdout = _holdout_scores(predictor, holdout, spec, metric) if holdout is not None else None
    run.timings["total_s"] = run.elapsed()
    summary = _summary(spec, run, data, metric, leaderboard, holdout, folds)
    leaderboard.to_csv(output_dir / "leaderboard.csv", index=False)
    write_report(output_dir / "report.html", summary, leaderboard, run.outcomes, metric)
    run.timings["total_s"] = run.elapsed()  # run.json, written last, counts the report too
    run.timings["write_s"] = run.timings["total_s"] - refit_end
    summary = _summary(spec, run, data, metric, leaderboard, holdout, folds)
    (output_dir / "run.json").write_text(json.dumps(summary, indent=2, default=str))
    run.progress.finish(leaderboard.iloc[0], holdout, run.elapsed())
    return predictor, leaderboard, summary


def _summary(spec: Spec, run: Run, data: TrainingData, metric: Metric, leaderboard: pd.DataFrame,
             holdout: dict | None, folds: Folds) -> dict[str, Any]:
    counts = pd.Series([o.status for o in run.outcomes]).value_counts().to_dict()
    best = leaderboard.iloc[0]
    return {
        "name": spec.name,
        "task": data.task,
        "metric": metric.name,
        "higher_is_better": metric.higher_is_better,
        "best_model": best["model"],  # what model/ holds: select_members picks the leaderboard's top
        "cv_score": float(best["cv_score"]),
        "holdout": holdout,
        "ensemble": run.ensemble_note,
        "final_model": run.final_model,
        "plan": run.plan.describe(),
        "rows": len(data.y),
        "dropped_rows_missing_target": data.n_dropped_rows,
        "folds": {"kind": folds.kind, "n": len(folds)},
        "columns": data.schema.describe(),
        "classes": data.target.classes,
        "trials": {"total": len(run.outcomes), "complete": counts.get(COMPLETE, 0),
                   "pruned": counts.get(PRUNED, 0), "failed": counts.get("failed", 0)},
        "timings": {k: round(v, 3) for k, v in run.timings.items()} | {"budget_s": spec.budget.time_s},
        "over_budget_s": round(max(0.0, run.timings["total_s"] - spec.budget.time_s), 3),
        "trial_log": [{"trial": o.number, "family": o.family, "status": o.status, "cv_score": o.cv_score,
                       "fold_scores": o.fold_scores, "fit_time_s": o.fit_time_s, "host": o.host,
                       "node_id": o.node_id, "pid": o.pid, "resources": o.resources,
                       "started_at": o.started_at, "ended_at": o.ended_at, "error": o.error}
                      for o in run.outcomes],
        "spec": spec.model_dump(mode="json"),
        "versions": library_versions(),
    }
