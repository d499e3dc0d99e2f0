"""fairness.mitigate: fairlearn's thresholds per group, fitted on out-of-fold predictions, in the artifact."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from fairlearn.metrics import demographic_parity_difference

from automl.artifact import load_predictor
from automl.engine import run_fit
from automl.errors import InputError
from automl.mitigation import GroupThresholds
from automl.spec import build_spec, load_spec
from tests.conftest import automl_here, write_spec


def _biased(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """Scores that favour group "a": its members are positive more often and scored higher."""
    rng = np.random.default_rng(seed)
    group = rng.choice(["a", "b"], n)
    y = (rng.random(n) < np.where(group == "a", 0.6, 0.3)).astype(int)
    scores = np.clip(0.5 * y + np.where(group == "a", 0.25, 0.0) + rng.normal(0, 0.2, n), 0, 1)
    return scores, y, pd.DataFrame({"group": group})


def test_demographic_parity_thresholds_even_out_the_selection_rates():
    scores, y, sensitive = _biased(4_000, seed=0)
    matrix = np.column_stack([1 - scores, scores])
    before = demographic_parity_difference(y, np.argmax(matrix, axis=1), sensitive_features=sensitive["group"])
    thresholds = GroupThresholds.fit("demographic_parity", scores, y, sensitive)
    new_scores, new_y, new_sensitive = _biased(4_000, seed=1)  # rows it was not fitted on
    mitigated = thresholds.apply(np.column_stack([1 - new_scores, new_scores]), new_sensitive)
    after = demographic_parity_difference(new_y, np.argmax(mitigated, axis=1),
                                          sensitive_features=new_sensitive["group"])
    assert before > 0.3 and after < before / 4
    assert np.allclose(mitigated.sum(axis=1), 1.0)
    with pytest.raises(InputError, match="mitigates bias by column 'group'"):
        thresholds.sensitive_of(new_sensitive.rename(columns={"group": "other"}))


def test_a_mitigated_fit_records_before_and_after_and_needs_the_sensitive_column_to_predict(tmp_path, binary_frame,
                                                                                           capsys):
    """The sensitive column is not a feature (data.drop): the thresholds still read it."""
    rng = np.random.default_rng(0)
    frame = binary_frame.assign(group=np.where(rng.random(len(binary_frame)) < 0.2 + 0.6 * binary_frame["target"],
                                               "a", "b"))
    spec = write_spec(tmp_path, frame, budget={"time_s": 12, "max_trials": 4}, models={"include": ["linear"]},
                      data={"sensitive": ["group"], "drop": ["group"]}, fairness={"mitigate": "demographic_parity"},
                      validation={"folds": 3, "test_size": 0.3})
    run_fit(load_spec(spec))
    fairness = json.loads((tmp_path / "run" / "run.json").read_text())["fairness"]
    gaps = fairness["mitigation"]["columns"]["group"]["demographic_parity_difference"]
    assert fairness["source"] == "holdout" and gaps["after"] < gaps["before"]
    assert set(fairness["mitigation"]["accuracy"]) == {"before", "after"}
    assert fairness["unmitigated"]["columns"]["group"]["demographic_parity_difference"] == gaps["before"]
    assert "Mitigation: demographic parity" in (tmp_path / "run" / "report.html").read_text()

    rows = frame.drop(columns=["target"]).head(20)
    rows.to_csv(tmp_path / "rows.csv", index=False)
    capsys.readouterr()
    assert automl_here("predict", tmp_path / "run", tmp_path / "rows.csv") == 0
    predicted = capsys.readouterr()
    assert len(predicted.out.splitlines()) == 21 and not predicted.err
    rows.drop(columns=["group"]).to_csv(tmp_path / "no-group.csv", index=False)
    assert automl_here("predict", tmp_path / "run", tmp_path / "no-group.csv") == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: the model mitigates bias by column 'group' (fairness.mitigate: demographic_parity): "
        "the data to predict must have it"]
    assert load_predictor(tmp_path / "run").mitigation.constraint == "demographic_parity"
    assert "group" not in load_predictor(tmp_path / "run").schema.required_columns

    frame.to_csv(tmp_path / "new.csv", index=False)  # a retrain keeps the sensitive column for the thresholds
    assert automl_here("retrain", tmp_path / "run", tmp_path / "new.csv", "-o", tmp_path / "re",
                       "--quiet") == 0, capsys.readouterr().err
    assert json.loads((tmp_path / "re" / "run.json").read_text())["retrain"]["previous_score"] is not None


@pytest.mark.parametrize(("settings", "message"), [
    ({"fairness": {"mitigate": "equalized_odds"}}, "fairness.mitigate needs data.sensitive"),
    ({"fairness": {"mitigate": "demographic_parity"}, "data": {"sensitive": ["s"]}, "task": "regression"},
     "applies to binary tasks"),
    ({"fairness": {"mitigate": "fair"}, "data": {"sensitive": ["s"]}}, "demographic_parity"),
])
def test_the_spec_refuses_a_mitigation_it_cannot_apply(settings, message):
    raw = {"data": {"train": "x.csv", "target": "y"}}
    for key, value in settings.items():
        raw[key] = {**raw.get(key, {}), **value} if isinstance(value, dict) else value
    with pytest.raises(Exception, match=message):
        build_spec(raw)
