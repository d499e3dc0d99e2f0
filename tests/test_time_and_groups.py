"""Fits end to end with ``data.time`` and ``data.groups``: folds, holdout and final model follow them."""

from __future__ import annotations

import json

import numpy as np

from automl.engine import run_fit
from automl.spec import load_spec
from tests.conftest import write_spec

SMALL = {"budget": {"time_s": 10, "max_trials": 4}, "models": {"include": ["lightgbm", "linear"]}}


def run_summary(result) -> dict:
    return json.loads((result.output_dir / "run.json").read_text())


def test_a_fit_with_time_folds_refits_its_members_on_all_rows(tmp_path, binary_frame):
    """An expanding window never trains on the latest rows: bagging its fold models would
    ship a model that never saw them, so the members are refit on every row."""
    frame = binary_frame.assign(day=np.arange(len(binary_frame)) // 5)
    spec = load_spec(write_spec(tmp_path, frame, data={"time": "day"}, validation={"method": "kfold"}, **SMALL))
    result = run_fit(spec)
    summary = run_summary(result)
    assert summary["validation"]["kind"] == "time" and summary["final_model"] == "refit"
    assert result.predictor.predict(frame.drop(columns=["target"])).shape == (len(frame),)


def test_a_fit_with_groups_keeps_each_group_in_one_fold_and_out_of_the_holdout(tmp_path, binary_frame):
    frame = binary_frame.assign(patient=np.arange(len(binary_frame)) % 40)
    spec = load_spec(write_spec(tmp_path, frame, data={"groups": "patient"},
                                validation={"method": "kfold", "test_size": 0.2}, **SMALL))
    result = run_fit(spec)
    summary = run_summary(result)
    assert summary["validation"]["kind"] == "group" and summary["holdout"] is not None
    assert "patient" not in summary["columns"]  # a group id is never a feature
