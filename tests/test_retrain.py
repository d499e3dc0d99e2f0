"""automl retrain: the previous pipeline refit on new rows, --only-if-drift, and the warm-started search."""

from __future__ import annotations

import json

import numpy as np
import pytest

from automl.api import AutoML
from automl.artifact import load_predictor
from automl.engine import run_fit
from automl.spec import load_spec
from tests.conftest import automl_here, write_spec


@pytest.fixture(scope="module")
def previous(tmp_path_factory, binary_frame):
    """A run fitted on the first 400 rows."""
    folder = tmp_path_factory.mktemp("previous")
    spec = load_spec(write_spec(folder, binary_frame.iloc[:400], budget={"time_s": 12, "max_trials": 5},
                                models={"include": ["lightgbm", "linear"]}))
    return run_fit(spec).output_dir


def _trial_configs(run_dir) -> list[tuple[str, dict]]:
    log = json.loads((run_dir / "run.json").read_text())["trial_log"]
    return [(trial["family"], trial["params"]) for trial in sorted(log, key=lambda t: t["trial"])]


def test_only_if_drift_leaves_a_resample_alone_and_retrains_on_shifted_rows(tmp_path, previous, binary_frame, capsys):
    resample = binary_frame.iloc[:400].sample(350, random_state=0)
    resample.to_csv(tmp_path / "same.csv", index=False)
    assert automl_here("retrain", previous, tmp_path / "same.csv", "-o", tmp_path / "same-run", "--only-if-drift") == 0
    assert "not retrained" in capsys.readouterr().out and not (tmp_path / "same-run").exists()

    shifted = binary_frame.iloc[400:].assign(mean_radius=lambda f: f["mean_radius"] + 10)
    shifted.to_csv(tmp_path / "shifted.csv", index=False)
    run = tmp_path / "shifted-run"
    assert automl_here("retrain", previous, tmp_path / "shifted.csv", "-o", run, "--only-if-drift", "--quiet") == 0
    summary = json.loads((run / "run.json").read_text())
    compared = summary["retrain"]
    assert compared["holdout_rows"] == pytest.approx(0.2 * len(shifted), abs=1)
    assert compared["previous_score"] is not None and 0 <= compared["new_score"] <= 1
    assert "Retrained: previous against new" in (run / "report.html").read_text()

    old, new = load_predictor(previous), load_predictor(run)
    # the same pipeline: the previous members' configurations, and only those, with their weights
    old_members = sorted(old.members, key=lambda m: -m.weight)
    assert [family for family, _ in _trial_configs(run)] == [m.family for m in old_members]
    assert sorted(m.weight for m in new.members) == pytest.approx(sorted(m.weight for m in old.members))
    features = shifted.drop(columns=["target"])
    assert not np.allclose(old.predict_proba(features).to_numpy(), new.predict_proba(features).to_numpy())


def test_a_warm_started_retrain_runs_the_previous_configurations_first(tmp_path, previous, binary_frame):
    model = AutoML.load(previous)
    retrained = model.retrain(binary_frame.iloc[400:], output=tmp_path / "run", search_s=6)
    old = sorted(load_predictor(previous).members, key=lambda m: -m.weight)
    configs = _trial_configs(tmp_path / "run")
    assert len(configs) > len(old)  # the search went on after them
    for (family, params), member in zip(configs, old, strict=False):
        assert family == member.family
        assert params == member.config  # the configuration the previous search had proposed
    assert retrained.summary_["retrain"]["search"] == "a warm-started search"
    assert isinstance(retrained.predict(binary_frame.iloc[400:].drop(columns=["target"])), np.ndarray)


def test_retraining_on_rows_without_the_models_columns_is_refused(tmp_path, previous, binary_frame, capsys):
    binary_frame.iloc[400:].drop(columns=["mean_radius"]).to_csv(tmp_path / "new.csv", index=False)
    assert automl_here("retrain", previous, tmp_path / "new.csv", "-o", tmp_path / "run") == 2
    assert "lacks 1 column(s) the model uses: mean_radius" in capsys.readouterr().err
    binary_frame.iloc[400:].drop(columns=["target"]).to_csv(tmp_path / "unlabelled.csv", index=False)
    assert automl_here("retrain", previous, tmp_path / "unlabelled.csv", "-o", tmp_path / "run") == 2
    assert "no target column 'target'" in capsys.readouterr().err
