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
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
from threadpoolctl import threadpool_limits

from automl.artifact import Member
from automl.budget import WRITE_MARGIN_S, final_cost_s, refit_estimate_s, refits_all, select_limit_s
from automl.calibration import Temperature, calibrate
from automl.data import TrainingData
from automl.ensemble import EnsembleSelection, fold_scores, select_ensemble
from automl.errors import InputError
from automl.inference import InferenceBudget, features_ms_per_row
from automl.metrics import Metric
from automl.mitigation import GroupThresholds
from automl.models import get_family
from automl.outputs import model_name
from automl.prediction import BaggedModel, weighted_mean
from automl.trial import COMPLETE, TrialOutcome, in_time_order, subsample
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


class Choice(NamedTuple):
    """A final model chosen: its members, their weights, the blend's fold scores (None: a
    single trial) and whether the members are refit on all rows (else as the budget rules)."""

    members: list[TrialOutcome]
    weights: list[float]
    fold_scores: list[float] | None
    refit: bool = False

    @property
    def score(self) -> float:
        return float(np.mean(self.fold_scores)) if self.fold_scores is not None else self.members[0].cv_score


def select_members(run: Run, data: TrainingData, folds: Folds,
                   metric: Metric) -> tuple[list[TrialOutcome], list[float], list[float] | None]:
    """The ensemble when it beats the best trial and its final model fits in the time left;
    otherwise the best trial alone (the leaderboard's top single model). Where the inference
    budget (``automl.inference``) rules those out, the best within it.
    Returns the members, their weights, and the ensemble's fold scores (None: no ensemble)."""
    ranked = run.best_outcomes(metric)
    if not ranked:
        raise InputError(f"no trial finished within budget.time_s={run.spec.budget.time_s:g}; "
                         "give the run more time")
    run.budget = budget = run.inference_budget(ranked[0], len(data.y), features_ms_per_row(data.schema, data.X))
    run.inference = {"asked": run.spec.predict.max_ms_per_row, "max_ms_per_row": None,
                     "features_ms_per_row": budget.overhead_ms}
    if run.prior is not None and run.prior.weights is not None:
        return _prior_members(run, data, folds, metric)
    until = time.monotonic() + select_limit_s(run.spec)  # every selection below shares the end phase's time for it
    unlimited = _unlimited_members(run, ranked, data, folds, metric, until)
    if budget.fits(unlimited.members, refit=False):
        return unlimited[:3]
    note = run.ensemble_note
    chosen = _members_within(run, budget, data, folds, metric, until)
    if run.spec.predict.max_ms_per_row == "auto":
        chosen, budget = _auto_choice(run, budget, chosen, unlimited, data, folds, metric, until)
        if chosen is None:  # nothing cheaper scored within the tolerance: the model as chosen with no budget
            run.ensemble_note = note
            return unlimited[:3]
    run.refit_for_budget = chosen.refit
    run.ensemble_note += f"; within predict.max_ms_per_row={budget.max_ms_per_row:.4g}"
    run.inference |= {"max_ms_per_row": budget.max_ms_per_row, "unlimited_cv_score": unlimited.score}
    return chosen[:3]


def _prior_members(run: Run, data: TrainingData, folds: Folds,
                   metric: Metric) -> tuple[list[TrialOutcome], list[float], list[float] | None]:
    """A retrain without a search: the previous members, each retried on the new rows as the
    trial of its number, blended with the previous weights (over those that completed) and
    made in the previous form (refit, or bagged)."""
    prior = run.prior
    done = {o.number: o for o in run.outcomes if o.status == COMPLETE}
    pairs = [(done[n], w) for n, w in enumerate(prior.weights) if n in done]
    if not pairs:
        raise InputError("no configuration of the previous model finished on the new data within "
                         f"budget.time_s={run.spec.budget.time_s:g}")
    members = [outcome for outcome, _ in pairs]
    total = sum(weight for _, weight in pairs)
    weights = [weight / total for _, weight in pairs]
    run.refit_for_budget = prior.refit
    run.ensemble_note = f"the previous model's {len(members)} of {len(prior.weights)} members and weights"
    if len(members) == 1:
        return members, [1.0], None
    blend = weighted_mean([m.oof for m in members], weights)
    return members, weights, fold_scores(blend, data.y, metric, [valid for _, valid in folds.splits])


def _auto_choice(run: Run, budget: InferenceBudget, chosen: Choice, unlimited: Choice, data: TrainingData,
                 folds: Folds, metric: Metric, until: float) -> tuple[Choice | None, InferenceBudget]:
    """``max_ms_per_row: auto`` on a large table: the model chosen within the smallest budget,
    from the best single model's cost refit and doubling, whose CV score is within one
    standard error of the unlimited model's (the one-standard-error rule of Breiman et al.;
    the error from the unlimited model's fold scores). None when no budget below the
    unlimited model's own cost gets there."""
    scores = unlimited.fold_scores or unlimited.members[0].fold_scores
    tolerance = float(np.std(scores, ddof=1) / np.sqrt(len(scores))) if len(scores) > 1 else 0.0
    ceiling = budget.cost_ms(unlimited.members, refit=False)
    while budget.max_ms_per_row < ceiling:
        if abs(unlimited.score - chosen.score) <= tolerance or metric.is_better(chosen.score, unlimited.score):
            return chosen, budget
        budget = budget.scaled(2.0)
        chosen = _members_within(run, budget, data, folds, metric, until)
    return None, budget


def _unlimited_members(run: Run, ranked: list[TrialOutcome], data: TrainingData, folds: Folds, metric: Metric,
                       until: float) -> Choice:
    """The ensemble, or the best trial alone, with no inference budget."""
    best_alone = Choice([ranked[0]], [1.0], None)
    if not run.spec.ensemble.enabled or len(ranked) < 2:
        run.ensemble_note = "disabled in the spec" if not run.spec.ensemble.enabled else "one trial finished"
        return best_alone
    candidates = ensemble_candidates(run, metric)
    members, selection = _blend(run, candidates, data, folds, metric, until)
    if len(members) == 1:
        run.ensemble_note = "no blend beat the best single model"
        return best_alone
    cost = final_cost_s(members, folds.refit_share, run.holdout_share)
    if cost > run.hard_deadline - time.monotonic() - WRITE_MARGIN_S:
        refits = sum(m.fold_models is None for m in members)
        overrun = f"refitting {refits} of its {len(members)} members (~{cost:.1f}s) would overrun the budget"
        kept = [c for c in candidates if c.fold_models is not None]
        members, selection = _blend(run, kept, data, folds, metric, until) if len(kept) > 1 else ([], None)
        if len(members) < 2 or not metric.is_better(selection.score, ranked[0].cv_score):
            run.ensemble_note = f"skipped: {overrun}"
            return best_alone
        run.ensemble_note = f"{len(members)} members whose fold models were kept: {overrun}"
    else:
        run.ensemble_note = f"{len(members)} members"
    return Choice(members, list(selection.weights.values()), selection.fold_scores)


def _members_within(run: Run, budget: InferenceBudget, data: TrainingData, folds: Folds, metric: Metric,
                    until: float) -> Choice:
    """The best blend (or single trial, without an ensemble) within ``budget``: of the fold
    models bagged, or refit on all rows where that scores better within it (its score is
    estimated from the fold models, as AutoGluon's refit_full does). With no trial within
    the budget even refit, the fastest one, refit."""
    # the trials whose out-of-fold predictions were kept, but not those cut short: their
    # costs were measured on smaller models than their refit grows (their configuration ran again)
    kept = ensemble_candidates(run, metric)
    candidates = [c for c in kept if not c.cut_short] or kept
    rounds = run.spec.ensemble.size if run.spec.ensemble.enabled else 1
    choices = []
    for refit in ([False] if not budget.refit_forced else []) + [True]:
        affordable = [c for c in candidates if budget.fits([c], refit)]
        if affordable:
            costs = [budget.member_ms(c, refit) for c in affordable]
            members, selection = _blend(run, affordable, data, folds, metric, until, rounds, costs,
                                        budget.models_limit_ms)
            single = len(members) == 1
            choices.append(Choice(members, [1.0] if single else list(selection.weights.values()),
                                  None if single else selection.fold_scores, refit))
    if not choices:
        fastest = min(candidates, key=budget.model_ms)
        run.ensemble_note = (f"no model predicts within predict.max_ms_per_row={budget.max_ms_per_row:.4g}: "
                             f"the fastest, {model_name(fastest)} ({budget.model_ms(fastest):.4g} ms a row), refit")
        run.progress.warn(run.ensemble_note)
        return Choice([fastest], [1.0], None, refit=True)
    chosen = choices[0]  # bagged, unless the refit members score better within the budget
    if len(choices) > 1 and metric.is_better(choices[1].score, chosen.score):
        chosen = choices[1]
    members = chosen.members
    run.ensemble_note = f"{len(members)} member{'s' if len(members) > 1 else ''}" + (", refit" if chosen.refit else "")
    return chosen


def _blend(run: Run, candidates: list[TrialOutcome], data: TrainingData, folds: Folds, metric: Metric,
           until: float, rounds: int | None = None, costs: list[float] | None = None,
           max_cost: float = np.inf) -> tuple[list[TrialOutcome], EnsembleSelection]:
    """The greedy ensemble of ``candidates`` (see ``automl.ensemble``), selected until
    the monotonic time ``until``, and its members; ``costs`` and ``max_cost`` as there."""
    selection = select_ensemble([c.oof for c in candidates], data.y, metric, rounds or run.spec.ensemble.size,
                                [valid for _, valid in folds.splits], time_limit_s=until - time.monotonic(),
                                costs=costs, max_cost=max_cost)
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


def mitigate_members(run: Run, members: list[TrialOutcome], weights: list[float], data: TrainingData,
                     folds: Folds, calibration: Temperature | None) -> GroupThresholds | None:
    """Per-group thresholds on the final blend (``fairness.mitigate``), fitted on its
    calibrated out-of-fold probabilities (see ``automl.mitigation``); None: not asked for."""
    if run.spec.fairness.mitigate == "none":
        return None
    covered = folds.covered
    oof = weighted_mean([m.oof for m in members], weights)[covered]
    oof = calibration.apply(oof) if calibration is not None else oof
    return GroupThresholds.fit(run.spec.fairness.mitigate, oof[:, 1], data.y[covered],
                               data.sensitive[covered].reset_index(drop=True))


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
    asked = run.spec.predict.refit_full or run.refit_for_budget
    refit_all = (refits_all(members, refit_share, run.spec.budget.time_s, len(data.y), asked)
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
            fitted.append(Member(model_name(outcome), outcome.family, params, weight, estimator, outcome.params))
    return fitted
