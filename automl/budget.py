"""Budget policy, in one place: how a fit spends ``budget.time_s``.

The search: each trial's time limit, the share of the budget a first model must come
within, when k-fold is affordable and when a trial gets every CPU, how long the first
model's confirmation may run, and how much of a trial's time a fold's fit may take.
The end phase: what stopping, ensemble selection, refits, checks and writing take,
and so when the search must stop (``RunClock``). Each figure is measured, not guessed
(the measurements sit next to each constant); ``automl.planner`` turns them into
estimates for this run's data and machine.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from automl.spec import Spec

if TYPE_CHECKING:
    from automl.trial import TrialOutcome

# -- the search: trials, their limits and threads --------------------------------
TRIAL_SHARE = 0.25
MIN_TRIAL_LIMIT_S = 10.0
MIN_AFFORDABLE_TRIALS = 20
"""A family is left out when the budget pays for fewer trials of it than this."""
FIRST_RESULT_SHARE = 0.1
"""Until a first trial completes the run has no model: trials asked for until then are made
to finish within this share of the budget, so that a first model comes early at any size."""
CV_MIN_TRIALS = 10
"""``validation.method: auto`` keeps k folds while the budget, on all the run's CPUs, pays for
this many trials of the first family's default configuration; fewer, and the search would be
little more than the portfolio's first entries."""
FEW_TRIALS_PER_CPU = 4
"""``hardware.cpus_per_trial: auto``: when fewer trials than this per CPU fit in the budget,
each trial gets all the run's CPUs (up to MAX_AUTO_CPUS_PER_TRIAL), so models come sooner."""
MAX_AUTO_CPUS_PER_TRIAL = 8
BUSY_CPU_SHARE, BUSY_SAMPLE_S = 0.5, 0.2
"""Where other processes keep this share of the CPUs busy (measured over BUSY_SAMPLE_S
when a trial would get several), a trial gets one CPU (see ``choose_cpus_per_trial``)."""
CONFIRM_LIMIT_FACTOR = 2.0
"""The run's first model, when it was cut short to come early, runs again in full on up to
this many times the per-trial limit (half the budget instead of a quarter): where trials
are that slow, the strongest family's whole configuration beats more families' first
tries. On 5k rows x 2,000 columns at 60 s, LightGBM's 400 rounds take ~25 s."""
FIT_SHARE_OF_LIMIT = 0.7
"""Of the time a trial has left, a fold's fit may take this share of its even part; the rest
is for predicting, scoring and returning (a fit stopped for time keeps what it grew)."""


def trial_time_limit_s(budget_s: float) -> float:
    """No trial may hold a worker longer than a quarter of the budget (10 s at least):
    one slow configuration must not take the time the search needs for the rest."""
    return max(MIN_TRIAL_LIMIT_S, TRIAL_SHARE * budget_s)


# -- the end phase: what stopping, selection, refits, checks and writing take -----
SELECT_SHARE, SELECT_MAX_S = 0.05, 1.0
"""The ensemble selection's time limit: this share of the budget, at most SELECT_MAX_S
(it took 0.4-1.1 s with 10 candidates on 2 cores; it keeps what it has at its limit)."""


WRITE_MARGIN_S = 1.0
"""Kept back at the very end for writing the model, leaderboard, run.json and report
(0.35-0.7 s measured, plots included; the plotting library is imported in the background during the search)."""


ASSEMBLY_MARGIN_S = 0.5
"""Putting the final model together (unpacking 15 bagged fold models took 0.5 s on adult)."""


CHECKS_MARGIN_S = 1.0
"""Holdout scores for every row and fairness, with a holdout or sensitive columns (0.6 s
for adult's 16k holdout rows and two sensitive columns)."""


IMPORTANCE_SHARE, IMPORTANCE_MIN_S, IMPORTANCE_MAX_S = 0.05, 0.5, 10.0
"""Permutation importance gets this share of the budget, within these bounds (it is reserved)."""


ENSEMBLE_RESERVE_SHARE = 0.2
"""The search stops early to leave time for refitting the likely ensemble's members only
while that takes at most this share of the budget: at 1M rows, refitting two forests and
HGB was estimated at 137 s of 300, the search stopped at 160 s, and the ensemble was
then skipped anyway for a bagged LightGBM that needed no refit."""


MIN_SEARCH_S = 5.0
"""The search gets at least this long to make a first model, even when loading the data
took the whole budget (a budget of a few seconds; the first worker may wait for its
model libraries' imports, 3-5 s on a loaded 2-core machine): the run reports its overrun."""


def refit_estimate_s(outcome: TrialOutcome, refit_share: float) -> float:
    """Seconds to fit a configuration on all rows, from its fold fits (``Folds.refit_share``)."""
    return outcome.fit_time_s * refit_share


REFIT_ALL_SHARE, REFIT_ALL_MAX_ROWS = 0.15, 5_000
"""Members whose fold models were kept are refit on all rows too when the data has fewer
rows than REFIT_ALL_MAX_ROWS and all the members' refits together are estimated at
REFIT_ALL_SHARE of the budget at most. Measured at 60 s on the shared datasets (a run's
members and weights, refit against their fold models bagged, scored on the test split), the
refit won on all seven sets under 5,000 rows: wine_white (log loss 0.7468 against 0.7753),
soybean (0.1469 against 0.1512), sonar (AUC 0.9435 against 0.9375), auto_imports (RMSE 2557
against 2607), ionosphere, titanic and quake; it lost on mammography (8,387 rows: AUC 0.9643
against 0.9668) and adult (32,561: 0.9285 against 0.9288). On few rows a model fit on all of
them is worth more than k fit on (k-1)/k; on more, the k models' average is worth more than
the rows each missed. Where refits are costly, the kept fold models save them: at 10% of the
budget wine_white's members (refits estimated at 6.8 s of 60) were left bagged in one run of
two (log loss 0.7521 against 0.7468)."""


def refits_all(members: list[TrialOutcome], refit_share: float, budget_s: float, n_rows: int,
               refit_full: bool = False) -> bool:
    """Whether every member is refit on all rows, kept fold models or not: when the spec asks
    for it (``predict.refit_full``), or on small data where it is cheap (``REFIT_ALL_SHARE``)."""
    return refit_full or (n_rows < REFIT_ALL_MAX_ROWS
                          and sum(refit_estimate_s(m, refit_share) for m in members) <= REFIT_ALL_SHARE * budget_s)


def final_cost_s(members: list[TrialOutcome], refit_share: float, holdout_share: float = 0.0,
                 refit_all: bool = False) -> float:
    """Seconds to make the final model from ``members`` and score it on the holdout: one fit
    on all rows and a holdout prediction for each member refit (from the trial's prediction
    time: its validation rows add up to all rows); nothing for one bagged (its trial already
    predicted the holdout with its fold models). Every member is refit with ``refit_all``,
    else only those whose fold models were not kept."""
    return sum(refit_estimate_s(m, refit_share) + m.predict_time_s * holdout_share
               for m in members if refit_all or m.fold_models is None)


def select_limit_s(spec: Spec) -> float:
    return min(SELECT_MAX_S, SELECT_SHARE * spec.budget.time_s)


def importance_limit_s(spec: Spec) -> float:
    """Seconds for permutation importance: IMPORTANCE_SHARE of the budget, within bounds."""
    return min(IMPORTANCE_MAX_S, max(IMPORTANCE_MIN_S, IMPORTANCE_SHARE * spec.budget.time_s))


class RunClock:
    """A fit's clock: its hard deadline, and when the search must stop so that the end
    phase (stopping, selection, refits, checks, writing) has the time it needs."""

    def __init__(self, spec: Spec, started: float, spent_before_s: float = 0.0):
        self.spec = spec
        self.started = started
        self.spent_before_s = spent_before_s
        """What an interrupted run had spent of the budget, when this one resumes it."""
        self.hard_deadline = started + max(0.0, spec.budget.time_s - spent_before_s)
        self.holdout_share = 0.0
        """Holdout rows per training row: what scoring a refit model on the holdout costs."""
        self.stop_margin_s = 0.0
        """Kept back after the search for cancelling trials and stopping the executor (its ``close_s``)."""
        self.search_started = started
        """When the search began (a ``time.monotonic()`` reading)."""

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def search_deadline(self, likely_members: list[TrialOutcome], candidates: list[TrialOutcome],
                        refit_share: float, n_rows: int, refit_expected: bool = False) -> float:
        """When the search must stop: where refitting the likely members is cheap
        (``refits_all``), leave room to refit every ensemble candidate (``candidates``: the
        members are among them), or REFIT_ALL_SHARE of the budget if less (members that
        cost more are not all refit); otherwise to refit the likely members
        (``likely_members``, best first) whose fold models were not kept, or only the best
        where those refits would take more than ENSEMBLE_RESERVE_SHARE of the budget (the
        ensemble is then made only if its refits fit in what is left). Where the inference
        budget will likely have the members refit (``refit_expected``: their fold models
        bagged exceed it), every likely member's refit counts, kept fold models or not. The
        budget is never
        extended: the first trials are made small enough to finish early (``TrialClock``),
        and they stop growing at their time limit."""
        if not likely_members:
            return max(self.hard_deadline - self.end_reserve_s(), self.search_started + MIN_SEARCH_S)
        budget_s = self.spec.budget.time_s
        if refits_all(likely_members, refit_share, budget_s, n_rows, self.spec.predict.refit_full):
            likely_cost = final_cost_s(likely_members, refit_share, self.holdout_share, refit_all=True)
            cost = min(final_cost_s(candidates, refit_share, self.holdout_share, refit_all=True),
                       max(REFIT_ALL_SHARE * budget_s, likely_cost))
        else:
            cost = final_cost_s(likely_members, refit_share, self.holdout_share, refit_expected)
            if cost > ENSEMBLE_RESERVE_SHARE * budget_s:
                cost = final_cost_s(likely_members[:1], refit_share, self.holdout_share, refit_expected)
        return self.hard_deadline - self.end_reserve_s() - cost

    def end_reserve_s(self) -> float:
        """What the end phase takes besides any refit: stopping, selection, then ``after_refit_s``."""
        return self.stop_margin_s + select_limit_s(self.spec) + self.after_refit_s()

    def after_refit_s(self) -> float:
        """What the end phase takes after the refits: assembly, checks, importance, writing."""
        return ASSEMBLY_MARGIN_S + self.checks_margin_s() + WRITE_MARGIN_S + importance_limit_s(self.spec)

    def checks_margin_s(self) -> float:
        return CHECKS_MARGIN_S if self.holdout_share or self.spec.data.sensitive else 0.0

    def refit_time_left_s(self) -> float:
        """The time left for refits, before the end phase's own reserve."""
        return max(0.0, self.hard_deadline - time.monotonic() - self.after_refit_s())

    def refit_limit_s(self, estimate_s: float, estimates_left_s: float) -> float:
        """A refit's share of the time left for refits, in proportion to its estimate
        (``estimate_s``) among those left to make (``estimates_left_s``, its own included).
        Its estimate comes from the trial's fit time, but a trial's learners may have stopped
        growing at its limit: refit whole, a forest of 1M rows took 305 s, past the budget.
        Even shares cut soybean's MLP (2 s estimated, five LightGBM refits of 0.2-0.5 s
        beside it) after a few epochs: log loss 0.35 against 0.16 refit whole."""
        share = estimate_s / estimates_left_s if estimates_left_s > 0 else 1.0
        return self.refit_time_left_s() * share
