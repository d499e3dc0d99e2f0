"""Cross-validation folds, and out-of-fold predictions.

Folds are made once per run and shared by every trial, so trials are compared
on the same splits and their out-of-fold predictions can be ensembled.
Time-ordered folds leave the earliest block unpredicted, and a single split
(large data: see ``automl.planner.choose_validation``) predicts only its
validation rows; ``covered`` marks the rows that do have an out-of-fold prediction.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import (
    GroupKFold,
    GroupShuffleSplit,
    KFold,
    StratifiedKFold,
    TimeSeriesSplit,
    train_test_split,
)

from automl.errors import InputError


@dataclass(frozen=True)
class Folds:
    splits: list[tuple[np.ndarray, np.ndarray]]
    n_rows: int
    kind: str
    warnings: tuple[str, ...] = ()
    """What the folds could not be as asked, in words (the run prints and records them)."""

    def __len__(self) -> int:
        return len(self.splits)

    @property
    def refit_share(self) -> float:
        """All rows over the rows the folds trained on, together: what fitting on all
        rows costs against a trial's summed fold fits."""
        return self.n_rows / max(1, sum(len(train) for train, _ in self.splits))

    @property
    def in_time_order(self) -> bool:
        """Whether the folds validate on later times than they train on (``data.time``)."""
        return self.kind in ("time", "time split")

    @property
    def covered(self) -> np.ndarray:
        """Rows that some fold predicts out-of-fold."""
        mask = np.zeros(self.n_rows, dtype=bool)
        for _, valid in self.splits:
            mask[valid] = True
        return mask


def make_folds(task: str, y: np.ndarray, n_folds: int, seed: int,
               groups: np.ndarray | None = None, times: np.ndarray | None = None,
               split_size: float | None = None) -> Folds:
    """Stratified k-fold for classification, k-fold for regression, group k-fold
    when groups are given, and time-ordered (expanding window) folds when times are.
    With ``split_size``, one split of that share of the rows (groups, times and
    classes kept as the folds would keep them) instead of k folds."""
    n_rows = len(y)
    index = np.arange(n_rows)
    if split_size is not None:
        return _single_split(task, y, split_size, seed, groups, times)
    if n_folds >= n_rows:
        raise InputError(f"validation.folds={n_folds} needs more rows than folds; the data has {n_rows}")
    if times is not None:
        return Folds(_time_splits(times, n_folds), n_rows, "time")
    if groups is not None:
        n_groups = len(np.unique(groups))
        if n_groups < n_folds:
            raise InputError(f"data.groups has {n_groups} groups; validation.folds={n_folds} needs as many")
        splitter = GroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
        return Folds(list(splitter.split(index, y, groups)), n_rows, "group")
    if task == "regression":
        splitter = KFold(n_splits=n_folds, shuffle=True, random_state=seed)
        return Folds(list(splitter.split(index)), n_rows, "kfold")
    smallest = int(np.bincount(y).min())
    if smallest < 2:
        raise InputError("a target class has a single row; every class needs at least two")
    folds = min(n_folds, smallest)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    lowered = (f"{folds} folds instead of {n_folds}: the smallest target class has {smallest} rows, and "
               "every fold needs one of each class",) if folds < n_folds else ()
    return Folds(list(splitter.split(index, y)), n_rows, "stratified", lowered)


def _time_splits(times: np.ndarray, n_folds: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Expanding-window folds over distinct times, so rows sharing a time stay together."""
    distinct = np.unique(times)
    if len(distinct) <= n_folds:
        raise InputError(f"data.time has {len(distinct)} distinct values; validation.folds={n_folds} needs more")
    splits = []
    for train_times, valid_times in TimeSeriesSplit(n_splits=n_folds).split(distinct):
        splits.append((np.flatnonzero(np.isin(times, distinct[train_times])),
                       np.flatnonzero(np.isin(times, distinct[valid_times]))))
    return splits


def _single_split(task: str, y: np.ndarray, split_size: float, seed: int, groups: np.ndarray | None,
                  times: np.ndarray | None) -> Folds:
    """One train/validation split: the latest times, a share of the groups, or a
    (stratified) random share of the rows."""
    n_rows = len(y)
    index = np.arange(n_rows)
    if times is not None:
        distinct = np.unique(times)
        if len(distinct) < 2:
            raise InputError("data.time has a single distinct value; a time split needs two")
        first_valid = distinct[min(len(distinct) - 1, max(1, int(round(len(distinct) * (1 - split_size)))))]
        return Folds([(index[times < first_valid], index[times >= first_valid])], n_rows, "time split")
    if groups is not None:
        if len(np.unique(groups)) < 2:
            raise InputError("data.groups has a single group; a split needs two")
        splitter = GroupShuffleSplit(n_splits=1, test_size=split_size, random_state=seed)
        return Folds(list(splitter.split(index, y, groups)), n_rows, "group split")
    stratify = None
    if task != "regression":
        if int(np.bincount(y).min()) < 2:
            raise InputError("a target class has a single row; every class needs at least two")
        stratify = y
    train, valid = train_test_split(index, test_size=split_size, random_state=seed, stratify=stratify)
    return Folds([(np.sort(train), np.sort(valid))], n_rows, "stratified split" if stratify is not None else "split")


def holdout_rows(task: str, y: np.ndarray, test_size: float, seed: int, groups: np.ndarray | None = None,
                 times: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Rows to train on and rows to hold out (``validation.test_size``), split as a
    validation split is: the latest times, whole groups, or a stratified share."""
    return _single_split(task, y, test_size, seed, groups, times).splits[0]


def empty_oof(task: str, n_rows: int, n_classes: int) -> np.ndarray:
    """An out-of-fold prediction array, NaN until a fold fills it."""
    shape = (n_rows,) if task == "regression" else (n_rows, n_classes)
    return np.full(shape, np.nan)
