"""The data profile: planted problems are found, a clean table raises no false alarm."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from automl.data import prepare_training
from automl.profile import profile_data
from tests.conftest import automl_cli


@pytest.fixture(scope="module")
def planted(binary_frame) -> pd.DataFrame:
    """Breast cancer rows with a duplicate block, a constant, an id and a leaking column."""
    frame = binary_frame.iloc[:, :6].assign(target=binary_frame["target"]).copy()
    frame["constant"] = 7
    frame["row_id"] = np.arange(len(frame))
    frame["diagnosis_code"] = frame["target"].map({0: "M", 1: "B"})  # the label, spelt differently
    duplicates = frame.iloc[:12].copy()
    duplicates["row_id"] = frame["row_id"].iloc[:12]  # exact copies, id included
    return pd.concat([frame, duplicates], ignore_index=True)


def test_profile_flags_planted_problems(planted):
    profile = profile_data(planted, "target", "binary")
    assert profile.rows == len(planted)
    assert profile.duplicate_rows == 12
    assert profile.constant == ["constant"]
    assert [s["column"] for s in profile.leakage_suspects] == ["diagnosis_code"]
    assert set(profile.class_balance) == {"0", "1"}
    assert sum(profile.class_balance.values()) == pytest.approx(1.0, abs=1e-3)
    text = " ".join(profile.warnings)
    assert "12 exact duplicate rows" in text and "constant columns, dropped: constant" in text
    assert "leakage suspect: column 'diagnosis_code'" in text


def test_profile_finds_an_id_column_and_high_cardinality(binary_frame):
    frame = binary_frame.iloc[:, :3].assign(target=binary_frame["target"]).copy()
    frame["customer"] = [f"c{i:05d}" for i in range(len(frame))]
    frame["city"] = [f"city{i % 80}" for i in range(len(frame))]
    frame.loc[: int(len(frame) * 0.6), "mean_radius"] = np.nan
    profile = profile_data(frame, "target", "binary")
    assert profile.id_like == ["customer"]
    assert profile.high_cardinality == {"city": 80}
    assert any("'mean_radius' is missing in 60%" in w for w in profile.warnings)
    assert profile.leakage_suspects == []


def test_near_copy_of_a_regression_target(regression_frame):
    frame = regression_frame.copy()
    frame["target_in_cents"] = frame["target"] * 100 + np.random.default_rng(0).normal(0, 1, len(frame))
    profile = profile_data(frame, "target", "regression")
    suspects = {s["column"]: s["reason"] for s in profile.leakage_suspects}
    assert list(suspects) == ["target_in_cents"]
    assert "near copy" in suspects["target_in_cents"]


def test_imbalanced_target_is_warned(binary_frame):
    rare = binary_frame[binary_frame["target"] == 0].iloc[:10]
    frame = pd.concat([binary_frame[binary_frame["target"] == 1], rare], ignore_index=True)
    profile = profile_data(frame, "target", "binary")
    assert profile.class_balance["0"] < 0.05
    assert any(w.startswith("imbalanced target: class '0'") for w in profile.warnings)


def test_profile_command_json_and_html(tmp_path, planted):
    planted.to_csv(tmp_path / "data.csv", index=False)
    result = automl_cli("profile", tmp_path / "data.csv", "--target", "target", "--json",
                        "--html", tmp_path / "profile.html")
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert found["duplicate_rows"] == 12 and found["leakage_suspects"][0]["column"] == "diagnosis_code"
    page = (tmp_path / "profile.html").read_text()
    assert "diagnosis_code" in page and "12 exact duplicate rows" in page
    missing = automl_cli("profile", tmp_path / "data.csv", "--target", "nope")
    assert missing.returncode == 2 and "target column 'nope'" in missing.stderr


def test_a_column_the_profile_reports_dropped_is_dropped_from_the_model():
    """The row numbers of all rows are consecutive, those of the training part after a
    random holdout are not: the kind is decided once, on all rows, and the schema follows."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"row": np.arange(300), "x": rng.normal(size=300), "y": rng.integers(0, 2, 300)})
    profile = profile_data(frame, "y", "binary")
    assert "row" in profile.id_like
    training_part = frame.sample(frac=0.75, random_state=0)
    assert "row" in [c.name for c in prepare_training(training_part, "y", "binary").schema.used]  # alone: a feature
    data = prepare_training(training_part, "y", "binary", kinds=profile.kinds)
    assert [c.name for c in data.schema.used] == ["x"]
