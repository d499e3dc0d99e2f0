"""The final model: the ensemble chosen over the trials, and each member made.

Where refitting every member is cheap (``automl.budget.refits_all``: small data), or the
spec asks for it (``predict.refit_full``), each is refit on all training rows, which the
search leaves time for. Otherwise a member is
its own fold models, bagged (see ``automl.prediction.BaggedModel``), where they were
small enough to keep: they cost no fitting time and are exactly what the ensemble was
weighted on; a member whose fold models were not kept is refit, one extra fit. When
the time left cannot pay for those refits, the blend of the trials whose fold models
were kept, or the best single trial, is the model. Time-ordered folds keep no fold
models: an expanding window never trains on the latest rows, so the members are
always refit on all of them.
"""

from __future__ import annotations

import importlib
import sys
import threading
import time
from typing import TYPE_CHECKING

import numpy as np
from threadpoolctl import threadpool_limits

from automl.artifact import Member
from automl.budget import WRITE_MARGIN_S, final_cost_s, refit_estimate_s, refits_all, select_limit_s
from automl.calibration import Temperature, calibrate
from automl.data import TrainingData
from automl.ensemble import EnsembleSelection, select_ensemble
from automl.errors import InputError
from automl.metrics import Metric
from automl.models import get_family
from automl.outputs import model_name
from automl.prediction import BaggedModel, weighted_mean
from automl.trial import TrialOutcome, in_time_order, subsample
from automl.validation import Folds

if TYPE_CHECKING:
    from automl.engine import Run

ENSEMBLE_CANDIDATES = 10
"""Trials the ensemble is selected from: the best this many, and each family's best
(see ``ensemble_candidates``)."""


def import_model_modules(candidates: list[TrialOutcome]) -> list[threading.Thread]:
    """Start importing what loading the candidates' models needs (torch for the MLP) in the
    background, while the search runs (see ``import_in_background``)."""
    return import_in_background({m for outcome in candidates for m in get_family(outcome.family).model_modules})


def import_in_background(modules: set[str]) -> list[threading.Thread]:
    """Start importing ``modules`` (those not imported yet) in background threads, while the
    search runs: the end phase's reserve does not count seconds of imports, and the search
    loop goes on meanwhile. Using a module before its import ends waits for it (Python's
    per-module import lock). Returns the threads started."""
    threads = [threading.Thread(target=importlib.import_module, args=(module,), name=f"import {module}", daemon=True)
               for module in sorted(modules - set(sys.modules))]
    for thread in threads:
        thread.start()
    return threads


def ensemble_candidates(run: Run, metric: Metric) -> list[TrialOutcome]:
    """The best ENSEMBLE_CANDIDATES trials, then each other family's best, best first.
    Among the top ten alone, on small data, the leading family's near-copies left the
    other families nothing to add: on titanic the ensemble never beat its best trial."""
    ranked = run.best_outcomes(metric)
    top = ranked[:ENSEMBLE_CANDIDATES]
    families = {o.family for o in top}
    for outcome in ranked[ENSEMBLE_CANDIDATES:]:
        if outcome.family not in families:
            families.add(outcome.family)
            top.append(outcome)
    return top


def select_members(run: Run, data: TrainingData, folds: Folds,
                   metric: Metric) -> tuple[list[TrialOutcome], list[float], list[float] | None]:
    """The ensemble when it beats the best trial and its final model fits in the time left;
    otherwise the best trial alone (the leaderboard's top single model).
    Returns the members, their weights, and the ensemble's fold scores (None: no ensemble)."""
    ranked = run.best_outcomes(metric)
    if not ranked:
        raise InputError(f"no trial finished within budget.time_s={run.spec.budget.time_s:g}; "
                         "give the run more time")
    best_alone = [ranked[0]], [1.0], None
    if not run.spec.ensemble.enabled or len(ranked) < 2:
        run.ensemble_note = "disabled in the spec" if not run.spec.ensemble.enabled else "one trial finished"
        return best_alone
    select_until = time.monotonic() + select_limit_s(run.spec)
    candidates = ensemble_candidates(run, metric)
    members, selection = _blend(run, candidates, data, folds, metric, select_until)
    if len(members) == 1:
        run.ensemble_note = "no blend beat the best single model"
        return best_alone
    cost = final_cost_s(members, folds.refit_share, run.holdout_share)
    if cost > run.hard_deadline - time.monotonic() - WRITE_MARGIN_S:
        refits = sum(m.fold_models is None for m in members)
        overrun = f"refitting {refits} of its {len(members)} members (~{cost:.1f}s) would overrun the budget"
        kept = [c for c in candidates if c.fold_models is not None]
        members, selection = _blend(run, kept, data, folds, metric, select_until) if len(kept) > 1 else ([], None)
        if len(members) < 2 or not metric.is_better(selection.score, ranked[0].cv_score):
            run.ensemble_note = f"skipped: {overrun}"
            return best_alone
        run.ensemble_note = f"{len(members)} members whose fold models were kept: {overrun}"
    else:
        run.ensemble_note = f"{len(members)} members"
    return members, list(selection.weights.values()), selection.fold_scores


def _blend(run: Run, candidates: list[TrialOutcome], data: TrainingData, folds: Folds, metric: Metric,
           until: float) -> tuple[list[TrialOutcome], EnsembleSelection]:
    """The greedy ensemble of ``candidates`` (see ``automl.ensemble``), selected until
    the monotonic time ``until``, and its members."""
    selection = select_ensemble([c.oof for c in candidates], data.y, metric, run.spec.ensemble.size,
                                [valid for _, valid in folds.splits], time_limit_s=until - time.monotonic())
    return [candidates[i] for i in selection.weights], selection


def calibrate_members(run: Run, members: list[TrialOutcome], weights: list[float], data: TrainingData,
                      folds: Folds, metric: Metric) -> Temperature | None:
    """A temperature for the final blend's probabilities, fitted on its out-of-fold ones
    (see ``automl.calibration``); what was decided goes to ``run.calibration``."""
    if data.task == "regression":
        run.calibration = {"method": "none", "reason": "regression"}
        return None
    oof = weighted_mean([m.oof for m in members], weights)
    covered = folds.covered
    temperature, run.calibration = calibrate(oof[covered], data.y[covered], metric, run.spec.seed)
    return temperature


def final_members(run: Run, data: TrainingData, members: list[TrialOutcome], weights: list[float],
                  refit_share: float) -> list[Member]:
    """Each member refit on all rows, with the rounds its early-stopped fold models kept
    (``refit_params``), learners that grow stopping in time for the end phase
    (``refit_limit_s``); or, where its fold models were kept and refitting every member is
    not cheap (``refits_all``) or no time is left for it, its fold models bagged.

    A refit gets the threads a trial got (``Plan.cpus_per_trial``: one on small data): with
    OpenMP threads that sleep at barriers (``automl/__init__``), two threads fit soybean's
    LightGBM in 14.5 s against 0.9 s on one, and adult's in 8.3 s against 1.5 s, so refits
    on every core ran far past their estimates and stopped short (25 of 245 rounds)."""
    refit_all = (refits_all(members, refit_share, run.spec.budget.time_s, len(data.y), run.spec.predict.refit_full)
                 and final_cost_s(members, refit_share, run.holdout_share, refit_all=True) <= run.refit_time_left_s())
    to_refit = [outcome for outcome in members if refit_all or outcome.fold_models is None]
    run.final_model = "bagged" if not to_refit else "refit" if len(to_refit) == len(members) else "mixed"
    estimates_left_s = sum(refit_estimate_s(outcome, refit_share) for outcome in to_refit)
    n_jobs = run.plan.cpus_per_trial  # threads that paid in the trials, which the refit estimates come from
    fitted = []
    with threadpool_limits(limits=n_jobs):
        for outcome, weight in zip(members, weights, strict=True):
            params = outcome.params
            if outcome.fold_models is not None and not refit_all:
                estimator = BaggedModel.from_packed(outcome.fold_models, data.task, data.target.n_classes, n_jobs)
            else:
                family = get_family(outcome.family)
                params = outcome.refit_params or outcome.params
                estimator = family.build(params, data.task, n_jobs, run.spec.seed)
                rows = in_time_order(subsample(np.arange(len(data.y)), outcome.train_rows, run.spec.seed), data.times)
                estimate_s = refit_estimate_s(outcome, refit_share)
                family.fit(estimator, data.X.iloc[rows], data.y[rows], in_time_order=data.times is not None,
                           time_limit_s=run.refit_limit_s(estimate_s, estimates_left_s))
                estimates_left_s -= estimate_s
            fitted.append(Member(model_name(outcome), outcome.family, params, weight, estimator))
    return fitted
