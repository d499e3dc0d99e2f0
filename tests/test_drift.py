"""Drift against the training reference: none for a resample, flagged for a shift."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from automl.data import FeatureSchema
from automl.drift import MAJOR, NONE, build_reference, compare, ks_statistic, psi


@pytest.fixture(scope="module")
def train() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 4000
    return pd.DataFrame({
        "income": rng.lognormal(10, 0.5, n),
        "age": rng.integers(18, 90, n).astype(float),
        "city": rng.choice(["paris", "lyon", "nice", "lille"], n, p=[0.4, 0.3, 0.2, 0.1]),
        "target": rng.integers(0, 2, n),
    })


@pytest.fixture(scope="module")
def reference(train) -> dict:
    features = train.drop(columns=["target"])
    return build_reference(train, FeatureSchema.infer(features), "target", "binary")


def test_psi_and_ks_by_hand():
    assert psi([0.5, 0.5], [0.5, 0.5]) == 0.0
    assert psi([0.5, 0.5], [0.25, 0.75]) == pytest.approx(0.25 * np.log(0.5) * -1 + 0.25 * np.log(1.5))
    quantiles = np.linspace(0, 1, 1001)  # a uniform reference on [0, 1]
    assert ks_statistic(quantiles, np.array([0.5] * 10)) == pytest.approx(0.5, abs=0.002)


def test_a_resample_of_the_training_data_shows_no_drift(train, reference):
    resample = train.sample(len(train), replace=True, random_state=1)
    result = compare(reference, resample)
    assert result["verdict"] == "no drift"
    assert {c["column"] for c in result["columns"]} == {"income", "age", "city", "target"}
    for column in result["columns"]:
        assert column["level"] == NONE
        assert column["psi"] < 0.02
        assert column["ks"] is None or column["ks"] < 0.05


def test_a_shifted_column_is_flagged(train, reference):
    shifted = train.sample(2000, random_state=2).assign(income=lambda f: f["income"] * 1.6)
    result = compare(reference, shifted)
    levels = {c["column"]: c["level"] for c in result["columns"]}
    assert levels == {"income": MAJOR, "age": NONE, "city": NONE, "target": NONE}
    assert result["verdict"] == "drift" and result["drifted_columns"] == ["income"]


def test_new_categories_and_missing_values_count_as_drift(train, reference):
    new = train.sample(2000, random_state=3).drop(columns=["target"])
    new["city"] = np.where(np.arange(len(new)) % 2 == 0, "marseille", new["city"])
    new.loc[new.index[:600], "age"] = np.nan
    result = compare(reference, new)
    rows = {c["column"]: c for c in result["columns"]}
    assert rows["city"]["level"] == MAJOR
    assert rows["age"]["missing_share_new"] == pytest.approx(0.3) and rows["age"]["level"] == MAJOR
    assert result["absent_columns"] == ["target"]  # new data need not carry the label
