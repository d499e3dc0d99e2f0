"""The planner: which model families a run tries, given the task, data and budget.

A family is tried when the spec allows it, it supports the task, and the budget
can pay for it: a family that knows its cost (the MLP) must fit at least
MIN_AFFORDABLE_TRIALS trials of its default configuration into the budget, or it
would take slots from cheaper families without getting far enough to win (measured
on the shared benchmarks: with one trial's worth of budget, the MLP cut the other
families' trials by two thirds and lowered the final score). Families left out
are reported with the reason, in ``run.json``. An explicit ``models.include`` is
always honoured.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from automl.errors import InputError
from automl.models import ModelFamily, family_names, get_family
from automl.spec import Spec

TRIAL_SHARE = 0.25
MIN_TRIAL_LIMIT_S = 10.0
MIN_AFFORDABLE_TRIALS = 20


def trial_time_limit_s(budget_s: float) -> float:
    """No trial may hold a worker longer than a quarter of the budget (10 s at least):
    one slow configuration must not take the time the search needs for the rest."""
    return max(MIN_TRIAL_LIMIT_S, TRIAL_SHARE * budget_s)


@dataclass
class Plan:
    families: list[ModelFamily]
    skipped: dict[str, str] = field(default_factory=dict)
    trial_time_limit_s: float = float("inf")

    def describe(self) -> dict:
        return {"families": [f.name for f in self.families], "skipped": self.skipped,
                "trial_time_limit_s": self.trial_time_limit_s}


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
    return Plan(chosen, skipped, limit)
