"""Step one of a fit: the training table loaded and checked, the holdout carved or
read, the data profiled and prepared, and the plan and folds made for it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from automl.checkpoint import fingerprint
from automl.data import (
    TrainingData,
    check_columns,
    check_target,
    load_table,
    prepare_training,
    time_values,
)
from automl.drift import build_reference
from automl.errors import InputError
from automl.metrics import Metric, get_metric
from automl.planner import (
    Plan,
    plan,
)
from automl.profile import DataProfile, profile_data
from automl.spec import IN_MEMORY, Spec
from automl.validation import Folds, holdout_rows, make_folds


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


def load_and_check(spec: Spec, train: pd.DataFrame | None) -> Inputs:
    if train is None and spec.data.train == IN_MEMORY:
        raise InputError("data.train is required")
    frame = load_table(train if train is not None else spec.data.train)
    target = spec.data.target
    task = check_target(frame, target, spec.task)
    get_metric(spec.metric, task)  # a metric wrong for the task is refused before the data's long checks
    if spec.fairness.mitigate != "none" and task != "binary":
        raise InputError(f"fairness.mitigate applies to binary tasks; this one is {task}")
    profile = profile_data(frame, target, task, spec.seed, spec.data.deduplicate)
    deduplicated = 0
    if spec.data.deduplicate:  # before the holdout is carved: no row may be in both
        deduplicated = int(frame.duplicated().sum())
        frame = frame.drop_duplicates()
    frame, holdout = split_holdout(frame, spec, task)
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


def split_holdout(frame: pd.DataFrame, spec: Spec, task: str) -> tuple[pd.DataFrame, pd.DataFrame | None]:
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
