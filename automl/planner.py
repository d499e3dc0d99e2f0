"""The planner: which model families a run tries, in what order, and with what share of the budget.

A family is tried when the spec allows it, it supports the task, and the budget
can pay for it: a family that knows its cost (the MLP) must fit at least
MIN_AFFORDABLE_TRIALS trials of its default configuration into the budget, or it
would take slots from cheaper families without getting far enough to win (measured
on the shared benchmarks: with one trial's worth of budget, the MLP cut the other
families' trials by two thirds and lowered the final score). Families left out
are reported with the reason, in ``run.json``. An explicit ``models.include`` is
always honoured.

Every chosen family's best-known configuration is tried first, so each family
is seen at its best before any is tuned. After that, budget shares decide
which family gets the next trial (see ``FamilyShares``), and that trial is the
family's next untried portfolio configuration, or, once those are spent, one
the sampler proposes. A family that is losing never spends the budget on its
further portfolio entries (measured on adult at 60 s: queueing every family's
whole portfolio up front used all 12 trials of the run on it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from automl.errors import InputError
from automl.models import ModelFamily, family_names, get_family
from automl.spec import Spec

TRIAL_SHARE = 0.25
MIN_TRIAL_LIMIT_S = 10.0
MIN_AFFORDABLE_TRIALS = 20
MIN_SAMPLE_SHARE, MIN_SAMPLE_ROWS = 0.1, 100
"""A trial too large for its memory runs on a subsample of at least this share of its rows
(and this many); below that it is skipped."""


def trial_time_limit_s(budget_s: float) -> float:
    """No trial may hold a worker longer than a quarter of the budget (10 s at least):
    one slow configuration must not take the time the search needs for the rest."""
    return max(MIN_TRIAL_LIMIT_S, TRIAL_SHARE * budget_s)


class FamilyShares:
    """Which family gets the next trial, once every family has had its first.

    Families are ranked by their best cross-validated score so far; the best
    gets a share of 1/2 of the trial cost, the second 1/4, and so on (halved at
    each rank, normalised), and the next trial goes to the family furthest below
    its share. Cost is counted in each family's ``relative_cost`` per trial, not
    in seconds, so the same results give the same choices (determinism). A
    family keeps a small share however it ranks, so a family that starts badly
    can still catch up, while most of the budget tunes what is winning.
    """

    def __init__(self, families: list[ModelFamily], higher_is_better: bool):
        self.order = [family.name for family in families]
        self.cost = {family.name: family.relative_cost for family in families}
        self.higher_is_better = higher_is_better

    def shares(self, best_scores: dict[str, float]) -> dict[str, float]:
        sign = -1.0 if self.higher_is_better else 1.0
        scored = sorted((n for n in self.order if n in best_scores), key=lambda n: sign * best_scores[n])
        ranked = scored + [n for n in self.order if n not in best_scores]  # no result yet: last, in plan order
        raw = {name: 0.5 ** rank for rank, name in enumerate(ranked)}
        total = sum(raw.values())
        return {name: value / total for name, value in raw.items()}

    def next_family(self, best_scores: dict[str, float], trials: dict[str, int]) -> str:
        shares = self.shares(best_scores)
        used = {name: trials.get(name, 0) * self.cost[name] for name in self.order}
        spent = sum(used.values()) or 1.0
        return max(self.order, key=lambda name: (shares[name] - used[name] / spent, -self.order.index(name)))


GIB = 2**30


def memory_budget_bytes(memory_gb: float | None) -> float:
    """``budget.memory_gb`` in bytes; null: the memory this machine has available now."""
    if memory_gb is not None:
        return memory_gb * GIB
    import psutil

    return float(psutil.virtual_memory().available)


@dataclass(frozen=True)
class MemoryBudget:
    """What one trial may take of ``budget.memory_gb``, and how a larger one is made to fit.

    The driver holds the data once and every worker a copy of it; what is left is
    shared evenly between the trials that run at once. A trial whose family
    estimates more than its share fits on a random subsample of each fold's
    training rows (estimates grow about linearly with rows), so it still
    predicts every validation row; one that would need less than MIN_SAMPLE_SHARE
    of the rows is skipped."""

    per_trial_bytes: float
    train_rows: int
    """Training rows of one fold fit."""
    n_features: int
    n_classes: int
    n_folds: int

    @classmethod
    def share(cls, total_bytes: float, data_bytes: float, slots: int, train_rows: int, n_features: int,
              n_classes: int, n_folds: int) -> MemoryBudget:
        per_trial = (total_bytes - data_bytes) / max(1, slots) - data_bytes
        return cls(max(0.0, per_trial), train_rows, n_features, n_classes, n_folds)

    def need_bytes(self, family: ModelFamily, params: dict[str, Any], rows: int | None = None) -> float:
        return family.estimated_trial_bytes(params, rows or self.train_rows, self.n_features, self.n_classes,
                                            self.n_folds)

    def rows_for(self, family: ModelFamily, params: dict[str, Any]) -> int | None:
        """None: the trial fits as it is; otherwise the rows to fit each fold on (0: skip it)."""
        need = self.need_bytes(family, params)
        if need <= self.per_trial_bytes:
            return None
        rows = int(self.train_rows * self.per_trial_bytes / need)
        return rows if rows >= max(MIN_SAMPLE_ROWS, MIN_SAMPLE_SHARE * self.train_rows) else 0


FIRST_ROUND_SHARE = 0.5
WALL_OVER_FIT = 2.5
"""A trial's wall time over its fitting time at a few thousand rows (predictions, train
scores, per-tree costs that do not shrink with the rows): 2.2-2.7 measured on adult at 6,000."""


@dataclass(frozen=True)
class FirstRound:
    """Until a first trial completes, a run has no model: the trials asked for until then
    must finish within the budget. One whose default configuration is estimated to take
    over FIRST_ROUND_SHARE of the search's time (the family's ``fold_fit_s``, times the
    folds and WALL_OVER_FIT) fits each fold on a subsample that is not, as FLAML starts large data on a
    sample. Later trials have the time limit the search has left."""

    search_s: float
    """Seconds from the search's start to the moment it must stop."""
    train_rows: int
    n_features: int
    n_folds: int

    def rows_for(self, family: ModelFamily) -> int | None:
        """None: the trial fits in time as it is; otherwise the rows to fit each fold on."""
        estimate = self.n_folds * WALL_OVER_FIT * family.fold_fit_s(self.train_rows, self.n_features)
        allowed = FIRST_ROUND_SHARE * max(0.0, self.search_s)
        if estimate <= allowed:
            return None
        return min(self.train_rows, max(MIN_SAMPLE_ROWS, int(self.train_rows * allowed / estimate)))


@dataclass
class Plan:
    families: list[ModelFamily]
    skipped: dict[str, str] = field(default_factory=dict)
    trial_time_limit_s: float = float("inf")
    portfolios: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    """Each chosen family's proven configurations, best first."""

    def describe(self) -> dict:
        return {"families": [f.name for f in self.families], "skipped": self.skipped,
                "trial_time_limit_s": self.trial_time_limit_s,
                "portfolio_sizes": {name: len(configs) for name, configs in self.portfolios.items()}}


def plan(spec: Spec, task: str, n_rows: int, n_features: int, n_folds: int) -> Plan:
    limit = trial_time_limit_s(spec.budget.time_s)
    affordable = spec.budget.time_s / MIN_AFFORDABLE_TRIALS
    names = spec.models.include or family_names()
    chosen, skipped = [], {}
    for name in names:
        if name in spec.models.exclude:  # checked first: an excluded family's library is never imported
            skipped[name] = "excluded by the spec"
            continue
        family = get_family(name)
        estimate = family.estimated_trial_s(n_rows, n_features, n_folds)
        if not family.supports(task):
            skipped[name] = f"does not support {task} tasks"
        elif estimate is not None and estimate > affordable and not spec.models.include:
            skipped[name] = (f"a trial would take about {estimate:.1f}s: the budget pays for fewer than "
                             f"{MIN_AFFORDABLE_TRIALS}")
        else:
            chosen.append(family)
    if not chosen:
        raise InputError(f"models: no model family left to try for a {task} task")
    return Plan(chosen, skipped, limit, {family.name: family.portfolio(task) for family in chosen})
