"""Fits end to end with ``data.time`` and ``data.groups``: folds, holdout and final model follow them."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import log_loss

from automl.engine import run_fit
from automl.models import get_family
from automl.spec import load_spec
from automl.trial import in_time_order
from tests.conftest import write_spec

SMALL = {"budget": {"time_s": 10, "max_trials": 4}, "models": {"include": ["lightgbm", "linear"]}}


def _summary(result) -> dict:
    return json.loads((result.output_dir / "run.json").read_text())


def test_a_fit_with_time_folds_refits_its_members_on_all_rows(tmp_path, binary_frame):
    """An expanding window never trains on the latest rows: bagging its fold models would
    ship a model that never saw them, so the members are refit on every row."""
    frame = binary_frame.assign(day=np.arange(len(binary_frame)) // 5)
    spec = load_spec(write_spec(tmp_path, frame, data={"time": "day"}, validation={"method": "kfold"}, **SMALL))
    result = run_fit(spec)
    summary = _summary(result)
    assert summary["validation"]["kind"] == "time" and summary["final_model"] == "refit"
    assert result.predictor.predict(frame.drop(columns=["target"])).shape == (len(frame),)


def test_a_fit_with_groups_keeps_each_group_in_one_fold_and_out_of_the_holdout(tmp_path, binary_frame):
    frame = binary_frame.assign(patient=np.arange(len(binary_frame)) % 40)
    spec = load_spec(write_spec(tmp_path, frame, data={"groups": "patient"},
                                validation={"method": "kfold", "test_size": 0.2}, **SMALL))
    result = run_fit(spec)
    summary = _summary(result)
    assert summary["validation"]["kind"] == "group" and summary["holdout"] is not None
    assert "patient" not in summary["columns"]  # a group id is never a feature


def _time_ordered_table(rows: int = 600):
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(rows, 4)), columns=list("abcd"))
    y = (X["a"] + 0.3 * rng.normal(size=rows) > 0).to_numpy().astype(int)
    return X, y


def test_boosting_in_time_order_early_stops_on_the_latest_rows():
    X, y = _time_ordered_table()
    family = get_family("hist_gradient_boosting")
    model = family.fit(family.build(family.default_params("binary"), "binary", 1, 0), X, y, in_time_order=True)
    booster = model[-1]
    latest = X.iloc[540:]  # the last tenth
    expected = -log_loss(y[540:], model.predict_proba(latest))  # sklearn's early-stopping score: minus the loss
    assert booster.validation_score_[-1] == pytest.approx(expected, rel=1e-6)


def test_the_mlp_in_time_order_watches_the_latest_rows(monkeypatch):
    from automl.models._tabular_mlp import TabularMLP

    seen = {}

    def record(self, network, numeric, codes, targets, train_rows, valid_rows, deadline):
        seen.update(train=train_rows, valid=valid_rows)
        raise StopIteration  # enough: the split is what is tested

    monkeypatch.setattr(TabularMLP, "_train", record)
    X, y = _time_ordered_table(200)
    with pytest.raises(StopIteration):
        get_family("mlp").fit(get_family("mlp").build(get_family("mlp").default_params("binary"), "binary", 1, 0),
                              X, y, in_time_order=True)
    assert list(seen["train"]) == list(range(180)) and list(seen["valid"]) == list(range(180, 200))


def test_trials_fit_their_rows_oldest_first():
    times = np.array([5, 1, 4, 2, 3])
    assert list(in_time_order(np.array([0, 2, 4]), times)) == [4, 2, 0]
    assert list(in_time_order(np.array([0, 2, 4]), None)) == [0, 2, 4]
