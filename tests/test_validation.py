"""Cross-validation folds: stratified, k-fold, group and time-ordered."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from automl.errors import InputError
from automl.validation import empty_oof, make_folds


def assert_partition(folds, n_rows):
    """Every row is validated exactly once, and never trained on in its own fold."""
    seen = np.concatenate([valid for _, valid in folds.splits])
    assert np.array_equal(np.sort(seen), np.arange(n_rows))
    for train, valid in folds.splits:
        assert len(np.intersect1d(train, valid)) == 0
        assert len(train) + len(valid) == n_rows
    assert folds.covered.all()


def test_stratified_keeps_class_ratios():
    y = np.array([0] * 150 + [1] * 50 + [2] * 25)
    rng = np.random.default_rng(0)
    rng.shuffle(y)
    folds = make_folds("multiclass", y, 5, seed=0)
    assert folds.kind == "stratified"
    assert len(folds) == 5
    assert_partition(folds, len(y))
    for _, valid in folds.splits:
        counts = np.bincount(y[valid], minlength=3)
        assert counts.tolist() == [30, 10, 5]


def test_stratified_binary_imbalanced():
    y = np.array([1] * 10 + [0] * 90)
    folds = make_folds("binary", y, 5, seed=3)
    assert_partition(folds, 100)
    for train, valid in folds.splits:
        assert y[valid].sum() == 2
        assert y[train].sum() == 8


def test_folds_are_shuffled_and_seeded():
    y = np.arange(100) % 2
    first = make_folds("binary", y, 5, seed=0)
    again = make_folds("binary", y, 5, seed=0)
    other = make_folds("binary", y, 5, seed=1)
    for (_, a), (_, b) in zip(first.splits, again.splits, strict=True):
        assert np.array_equal(a, b)
    assert any(not np.array_equal(a, b)
               for (_, a), (_, b) in zip(first.splits, other.splits, strict=True))
    # shuffled: the first fold is not just the first rows
    assert not np.array_equal(np.sort(first.splits[0][1]), np.arange(20))


def test_regression_kfold():
    y = np.random.default_rng(0).normal(size=53)
    folds = make_folds("regression", y, 4, seed=0)
    assert folds.kind == "kfold"
    assert len(folds) == 4
    assert_partition(folds, 53)
    sizes = sorted(len(valid) for _, valid in folds.splits)
    assert sizes == [13, 13, 13, 14]


def test_group_folds_never_split_a_group():
    rng = np.random.default_rng(0)
    groups = rng.integers(0, 17, size=200)
    y = rng.integers(0, 2, size=200)
    folds = make_folds("binary", y, 5, seed=0, groups=groups)
    assert folds.kind == "group"
    assert len(folds) == 5
    assert_partition(folds, 200)
    for train, valid in folds.splits:
        assert set(groups[train]).isdisjoint(groups[valid])


def test_group_folds_with_string_groups_for_regression():
    groups = np.array([f"store-{i % 6}" for i in range(60)], dtype=object)
    y = np.linspace(0, 1, 60)
    folds = make_folds("regression", y, 3, seed=0, groups=groups)
    assert folds.kind == "group"
    for train, valid in folds.splits:
        assert set(groups[train]).isdisjoint(groups[valid])


def test_too_few_groups():
    groups = np.repeat([1, 2, 3], 10)
    with pytest.raises(InputError) as info:
        make_folds("binary", np.arange(30) % 2, 5, seed=0, groups=groups)
    assert "3 groups" in str(info.value) and "5" in str(info.value)


def test_time_folds_validate_on_later_rows():
    rng = np.random.default_rng(0)
    times = rng.permutation(np.arange(100)).astype(float)  # distinct, not in row order
    y = rng.normal(size=100)
    folds = make_folds("regression", y, 4, seed=0, times=times)
    assert folds.kind == "time"
    assert len(folds) == 4
    for train, valid in folds.splits:
        assert len(train) > 0 and len(valid) > 0
        assert times[valid].min() > times[train].max()
        assert len(np.intersect1d(train, valid)) == 0
    # expanding window: each fold trains on more rows than the one before
    sizes = [len(train) for train, _ in folds.splits]
    assert sizes == sorted(sizes) and len(set(sizes)) == len(sizes)


def test_time_folds_leave_the_earliest_block_uncovered():
    times = np.random.default_rng(1).permutation(100)
    folds = make_folds("binary", np.arange(100) % 2, 4, seed=0, times=times)
    covered = folds.covered
    assert not covered.all()
    assert not covered[times == times.min()].any()  # the earliest row has no OOF prediction
    assert covered[times == times.max()].all()
    # exactly the rows before the first validation block are uncovered
    first_valid_time = times[folds.splits[0][1]].min()
    assert np.array_equal(covered, times >= first_valid_time)
    # each covered row is validated once
    seen = np.concatenate([valid for _, valid in folds.splits])
    assert len(seen) == len(np.unique(seen)) == covered.sum()


def test_time_folds_with_datetimes():
    stamps = np.array(np.datetime64("2024-01-01") + np.random.default_rng(2).permutation(60),
                      dtype="datetime64[ns]")
    folds = make_folds("regression", np.zeros(60), 3, seed=0, times=stamps)
    for train, valid in folds.splits:
        assert stamps[valid].min() > stamps[train].max()


def test_time_folds_do_not_split_a_timestamp():
    times = np.repeat(np.arange(20), 5)  # e.g. five rows per day
    folds = make_folds("regression", np.zeros(100), 5, seed=0, times=times)
    for train, valid in folds.splits:
        assert times[valid].min() > times[train].max()


def test_single_row_class():
    y = np.array([0] * 20 + [1] * 20 + [2])
    with pytest.raises(InputError, match="single row"):
        make_folds("multiclass", y, 5, seed=0)


def test_rare_class_reduces_folds_but_keeps_it_in_every_fold():
    y = np.array([0] * 40 + [1] * 3)
    folds = make_folds("binary", y, 5, seed=0)
    assert len(folds) == 3
    assert_partition(folds, 43)
    for train, valid in folds.splits:
        assert (y[valid] == 1).sum() == 1 and (y[train] == 1).sum() == 2


def test_empty_oof():
    reg = empty_oof("regression", 7, 0)
    assert reg.shape == (7,) and np.isnan(reg).all()
    clf = empty_oof("multiclass", 7, 3)
    assert clf.shape == (7, 3) and np.isnan(clf).all()


@pytest.mark.parametrize("times", [None, np.arange(12)])
def test_more_folds_than_rows_is_an_input_error(times):
    with pytest.raises(InputError, match="validation.folds"):
        make_folds("regression", np.linspace(0, 1, 12), 20, seed=0, times=times)


def test_fewer_stratified_folds_than_asked_for_say_so():
    y = np.array([0] * 40 + [1] * 3)
    folds = make_folds("binary", y, 5, seed=0)
    assert len(folds) == 3
    assert folds.warnings == ("3 folds instead of 5: the smallest target class has 3 rows, and every fold "
                              "needs one of each class",)
    assert make_folds("binary", np.array([0, 1] * 20), 5, seed=0).warnings == ()


@pytest.mark.parametrize("column", ["time", "groups"])
def test_a_carved_holdout_keeps_groups_whole_and_is_the_latest_period(column):
    from automl.inputs import split_holdout
    from automl.spec import build_spec

    rng = np.random.default_rng(0)
    n = 400
    frame = pd.DataFrame({"x": rng.normal(size=n), "day": rng.permutation(n) // 4, "team": rng.integers(0, 40, n),
                          "y": rng.integers(0, 2, n)})
    data = {"train": "x.csv", "target": "y", **({"time": "day"} if column == "time" else {"groups": "team"})}
    spec = build_spec({"data": data, "validation": {"test_size": 0.25}})
    train, test = split_holdout(frame, spec, "binary")
    assert len(train) + len(test) == n and 0.15 * n < len(test) < 0.35 * n
    if column == "time":
        assert train["day"].max() < test["day"].min()
    else:
        assert set(train["team"]).isdisjoint(test["team"])
