"""What a fit leaves in its output folder: the leaderboard, run.json, the report (the
model folder is ``automl.artifact``'s), and the warning lines they carry."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from automl import atomic
from automl.artifact import library_versions
from automl.assess import (
    Checks,
    gap_warnings,
)
from automl.budget import FIRST_RESULT_SHARE
from automl.checkpoint import TRIALS_DIR
from automl.errors import InputError
from automl.inference import ms_per_row
from automl.metrics import Metric
from automl.planner import GIB, MemoryBudget
from automl.report import write_report
from automl.spec import Spec
from automl.trial import COMPLETE, FAILED, PRUNED, TrialOutcome

if TYPE_CHECKING:
    from automl.engine import Run
    from automl.inputs import Inputs

RUN_FILES = ("study.db", "study.db-wal", "study.db-shm", "leaderboard.csv", "run.json", "report.html", "model",
             TRIALS_DIR)


def existing_run_files(folder: Path, overwrite: bool) -> list[Path]:
    """Our files already in ``folder``; without ``overwrite`` their presence is an error."""
    if folder.exists() and not folder.is_dir():
        raise InputError(f"output {folder} is a file, not a folder")
    existing = [folder / name for name in RUN_FILES if (folder / name).exists()]
    if existing and not overwrite:
        raise InputError(f"{folder} already holds a run ({existing[0].name}); pass --overwrite or another --output")
    return existing


def prepare_output_dir(folder: Path, overwrite: bool) -> Path:
    """Refuse to mix two runs in one folder; with ``overwrite``, remove only our own files."""
    for path in existing_run_files(folder, overwrite):
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    atomic.remove_leftovers(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def model_name(outcome: TrialOutcome) -> str:
    return f"{outcome.family}_{outcome.number}"


def ensemble_row(members: list[TrialOutcome], weights: list[float], fold_scores: list[float],
                  holdout_score: float, ms_per_row: float) -> dict:
    return {"model": "ensemble", "family": "ensemble", "train_score": float("nan"),
            "cv_score": float(np.mean(fold_scores)), "holdout_score": holdout_score,
            "cv_std": float(np.std(fold_scores)),
            "fit_time_s": round(sum(m.fit_time_s for m in members), 3),
            "predict_time_s": round(sum(m.predict_time_s for m in members), 3),
            "predict_ms_per_row": ms_per_row, "n_trials_family": len(members),
            "params": json.dumps({model_name(m): round(w, 4) for m, w in zip(members, weights, strict=True)}),
            "trial": -1}


def build_leaderboard(outcomes: list[TrialOutcome], metric: Metric, ensemble_row: dict | None,
                      holdout: dict[int, float] | None = None, predicted_rows: int = 0) -> pd.DataFrame:
    """One row per completed trial (and the ensemble), best CV score first. ``train_score``
    is the fold models' mean score on their own training rows; ``holdout_score`` their
    mean prediction's score on the holdout (NaN without one); ``predict_ms_per_row`` one
    fitted model's time per row as the trial predicted its ``predicted_rows`` validation
    rows (the ensemble's: the final model's, from its members')."""
    holdout = holdout or {}
    per_family = pd.Series([o.family for o in outcomes]).value_counts().to_dict()
    rows = [{"model": model_name(o), "family": o.family, "train_score": o.train_score, "cv_score": o.cv_score,
             "holdout_score": holdout.get(o.number, float("nan")), "cv_std": o.cv_std,
             "fit_time_s": round(o.fit_time_s, 3), "predict_time_s": round(o.predict_time_s, 3),
             "predict_ms_per_row": ms_per_row(o, predicted_rows),
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


def shipped_row(leaderboard: pd.DataFrame, shipped: str) -> pd.Series:
    """The leaderboard's row of the model in model/ (its top, unless the inference budget ruled that out)."""
    return leaderboard[leaderboard["model"] == shipped].iloc[0]


def leaderboard_gap_warnings(leaderboard: pd.DataFrame, metric: Metric, holdout: dict | None,
                             shipped: str) -> list[str]:
    """Large gaps of the shipped model: its train, CV and holdout scores."""
    best = shipped_row(leaderboard, shipped)
    holdout_score = holdout["score"] if holdout else None
    return gap_warnings(best["model"], float(best["train_score"]), float(best["cv_score"]), float(best["cv_std"]),
                        holdout_score, metric)


def run_summary(run: Run, inputs: Inputs, leaderboard: pd.DataFrame, checks: Checks) -> dict[str, Any]:
    spec, data, metric, folds = run.spec, inputs.data, inputs.metric, inputs.folds
    counts = pd.Series([o.status for o in run.outcomes]).value_counts().to_dict()
    best = shipped_row(leaderboard, run.shipped_model)
    return {
        "name": spec.name,
        "task": data.task,
        "metric": metric.name,
        "higher_is_better": metric.higher_is_better,
        "best_model": best["model"],  # what model/ holds
        "cv_score": float(best["cv_score"]),
        "holdout": checks.holdout,
        "warnings": (inputs.profile.warnings + list(inputs.folds.warnings) + run.machinery_warnings
                     + sampling_warnings(run.outcomes, run.memory) + checks.warnings),
        "large_gap": bool(checks.warnings),
        "ensemble": run.ensemble_note,
        "calibration": run.calibration,
        "interrupted": run.interrupted,
        "resumed": run.resumed,
        "final_model": run.final_model,
        "refit_full": {"asked": spec.predict.refit_full, "done": run.final_model == "refit"},
        "inference": run.inference,
        **({"retrain": run.retrain} if run.retrain is not None else {}),
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
        **run_timings(run),
        "trial_log": [{"trial": o.number, "family": o.family, "params": o.params, "status": o.status,
                       "train_score": o.train_score,
                       "cv_score": o.cv_score, "fold_scores": o.fold_scores, "fit_time_s": o.fit_time_s,
                       "predict_time_s": o.predict_time_s, "start_wait_s": o.start_wait_s,
                       "verdict_wait_s": o.verdict_wait_s, "train_rows": o.train_rows,
                       "host": o.host, "node_id": o.node_id, "pid": o.pid, "resources": o.resources,
                       "started_at": o.started_at, "ended_at": o.ended_at, "error": o.error,
                       "traceback": o.traceback}
                      for o in run.outcomes],
        "spec": spec.model_dump(mode="json"),
        "versions": library_versions(),
    }


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
        too_few = [error for error in skipped if error.startswith("skipped: its first trial")]
        if too_large:
            lines.append(f"memory: {too_large} {family} trial(s) skipped: too large for the {per_trial} "
                         "even on a tenth of the rows")
        if too_few:
            lines.append(f"time: {family} not tried: {too_few[0].removeprefix('skipped: ')}")
        if len(skipped) > too_large + len(too_few):
            lines.append(f"time: {len(skipped) - too_large - len(too_few)} {family} trial(s) skipped: too slow "
                         "for their time even on a tenth of the rows")
    return lines


def start_line(spec: Spec, inputs: Inputs) -> str:
    """The line a fit starts with: the data, the metric, the families, validation, threads, budget."""
    data, run_plan = inputs.data, inputs.plan
    validated = f"{len(inputs.folds)}-fold" if run_plan.validation.method == "kfold" else "one split"
    return (f"{spec.name}: {data.task}, {len(data.y)} rows, {data.X.shape[1]} features, "
            f"metric {inputs.metric.name}, families {', '.join(f.name for f in run_plan.families)}, "
            f"validation {validated}, {run_plan.cpus_per_trial} CPU(s) per trial, budget {spec.budget.time_s:g}s")


def write_outputs(run: Run, inputs: Inputs, leaderboard: pd.DataFrame, checks: Checks, final_end: float) -> dict:
    """Write leaderboard.csv, report.html and, last, run.json (whose timings count the
    report's writing too); returns the run's summary, as run.json holds it."""
    folder = run.output_dir
    run.timings["total_s"] = run.elapsed()
    summary = run_summary(run, inputs, leaderboard, checks)
    atomic.write_text(folder / "leaderboard.csv", leaderboard.to_csv(index=False))
    write_report(folder / "report.html", summary, leaderboard, run.outcomes, inputs.metric, checks)
    run.timings["total_s"] = run.elapsed()
    run.timings["write_s"] = run.timings["total_s"] - final_end - run.timings["assess_s"]
    summary.update(run_timings(run))
    atomic.write_text(folder / "run.json", json.dumps(summary, indent=2, default=str))
    return summary


def run_timings(run: Run) -> dict[str, Any]:
    """run.json's timing entries: each phase's seconds, and the overrun of the budget."""
    budget_s = run.spec.budget.time_s
    return {"timings": {k: round(v, 3) for k, v in run.timings.items()} | {"budget_s": budget_s},
            "over_budget_s": round(max(0.0, run.timings["total_s"] - budget_s), 3)}
