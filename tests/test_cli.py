"""The command line end to end: real fits through the console script, then predict."""

from __future__ import annotations

import io
import json

import pandas as pd
import pytest

from automl.cli import run_command
from tests.conftest import automl_cli, write_spec

LEADERBOARD_COLUMNS = ["rank", "model", "family", "train_score", "cv_score", "holdout_score", "cv_std",
                       "fit_time_s", "predict_time_s", "predict_ms_per_row",
                       "n_trials_family", "params"]


def _fit_and_predict(tmp_path, frame, **spec):
    spec.setdefault("budget", {"time_s": 15})
    spec["budget"].setdefault("max_trials", 4)  # the fit ends when they are done, before its budget
    spec.setdefault("models", {"include": ["lightgbm", "linear", "knn"]})  # no torch start-up: test_mlp has it
    spec_path = write_spec(tmp_path, frame, **spec)
    fitted = automl_cli("fit", spec_path, "--quiet")
    assert fitted.returncode == 0, fitted.stderr
    run = tmp_path / "run"
    board = pd.read_csv(run / "leaderboard.csv")
    summary = json.loads((run / "run.json").read_text())
    features = frame.drop(columns=["target"]).sample(frac=1, random_state=1)
    features.to_csv(tmp_path / "new.csv", index=False)
    predicted = automl_cli("predict", run / "model", tmp_path / "new.csv")
    assert predicted.returncode == 0, predicted.stderr
    return board, summary, features, pd.read_csv(io.StringIO(predicted.stdout))


def test_fit_binary_then_predict(tmp_path, binary_frame):
    board, summary, features, predictions = _fit_and_predict(
        tmp_path, binary_frame, metric="roc_auc", validation={"folds": 3, "test_size": 0.25}, budget={"time_s": 20})
    assert list(board.columns[: len(LEADERBOARD_COLUMNS)]) == LEADERBOARD_COLUMNS
    assert board["cv_score"].is_monotonic_decreasing  # roc_auc: best (highest) first
    assert summary["task"] == "binary" and summary["higher_is_better"] is True
    assert summary["holdout"]["score"] > 0.95
    assert summary["timings"]["total_s"] <= 20 + 3
    assert len(predictions) == len(features)
    assert set(predictions["target"]) <= {0, 1}
    # the same rows, in the order given: predictions agree with the labels in that order
    agreement = (predictions["target"].to_numpy() == binary_frame.loc[features.index, "target"].to_numpy()).mean()
    assert agreement > 0.9


def test_fit_multiclass_then_predict_proba(tmp_path, multiclass_frame):
    board, summary, features, predictions = _fit_and_predict(tmp_path, multiclass_frame)
    assert summary["task"] == "multiclass" and summary["metric"] == "log_loss"
    assert board["cv_score"].is_monotonic_increasing  # log_loss: best (lowest) first
    assert set(predictions["target"]) <= {"setosa", "versicolor", "virginica"}
    proba = automl_cli("predict", tmp_path / "run", tmp_path / "new.csv", "--proba", "-o", tmp_path / "p.csv")
    assert proba.returncode == 0, proba.stderr
    table = pd.read_csv(tmp_path / "p.csv")
    assert list(table.columns) == ["setosa", "versicolor", "virginica"]
    assert len(table) == len(features)
    assert table.sum(axis=1).round(6).eq(1).all()


def test_fit_regression_then_predict_and_leaderboard(tmp_path, regression_frame):
    board, summary, features, predictions = _fit_and_predict(tmp_path, regression_frame, metric="rmse")
    assert summary["task"] == "regression"
    assert summary["cv_score"] < regression_frame["target"].std()  # better than predicting the mean
    assert len(predictions) == len(features) and predictions["target"].notna().all()
    shown = automl_cli("leaderboard", tmp_path / "run")
    assert shown.returncode == 0 and board.loc[0, "model"] in shown.stdout and "predict_ms_per_row" in shown.stdout
    for name in ("report.html", "run.json", "study.db", "model/model.joblib", "model/meta.json"):
        assert (tmp_path / "run" / name).exists(), name


def _one_line_error(result) -> str:
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


@pytest.mark.parametrize("spec, expected", [
    ({"metric": "accuracy_of_doom"}, "metric"),
    ({"budget": {"time_s": -5}}, "budget.time_s"),
    ({"colour": "blue"}, "colour"),
    ({"data": {"target": "no_such_column"}}, "no_such_column"),
    ({"models": {"include": ["xgboost_deluxe"]}}, "xgboost_deluxe"),
])
def test_bad_input_exits_2_with_one_line(tmp_path, binary_frame, spec, expected):
    line = _one_line_error(automl_cli("fit", write_spec(tmp_path, binary_frame, **spec)))
    assert expected in line


def test_missing_spec_file_and_bad_model_dir(tmp_path):
    assert "not found" in _one_line_error(automl_cli("fit", tmp_path / "nope.yaml"))
    (tmp_path / "data.csv").write_text("a,b\n1,2\n")
    assert "model folder" in _one_line_error(automl_cli("predict", tmp_path, tmp_path / "data.csv"))


def test_unparseable_spec(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text("data: [unclosed\n")
    assert "cannot be parsed" in _one_line_error(automl_cli("fit", path))


def test_refuses_to_overwrite_a_run(tmp_path, binary_frame):
    spec = write_spec(tmp_path, binary_frame)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "run.json").write_text("{}")
    assert "--overwrite" in _one_line_error(automl_cli("fit", spec))
    assert (tmp_path / "run" / "run.json").read_text() == "{}"  # nothing lost


def test_schema_prints_json_schema():
    result = automl_cli("schema")
    assert result.returncode == 0
    schema = json.loads(result.stdout)
    assert "data" in schema["properties"] and "DataSpec" in json.dumps(schema)


def test_bad_holdout_fails_before_the_search_and_keeps_the_old_run(tmp_path, binary_frame):
    binary_frame.drop(columns=["target"]).to_csv(tmp_path / "test.csv", index=False)
    spec = write_spec(tmp_path, binary_frame, data={"test": "test.csv"})
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "run.json").write_text("{}")
    line = _one_line_error(automl_cli("fit", spec, "--overwrite"))
    assert "holdout" in line and "target" in line
    assert (tmp_path / "run" / "run.json").read_text() == "{}"  # the old run is untouched


def test_an_unknown_command_is_a_usage_error_that_lists_the_commands(capsys):
    assert run_command(["refit", "spec.yaml"]) == 2
    err = capsys.readouterr().err
    assert "Usage:" in err and "No such command 'refit'" in err and "internal error" not in err
    assert "commands: fit, predict, evaluate" in err
