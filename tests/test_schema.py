"""Prediction-time schema: missing columns named, extra ones ignored with a warning, unseen
categories and new missing values handled, coercible dtypes coerced, row order and count kept."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest

from automl.artifact import Member, Predictor
from automl.data import prepare_training
from automl.errors import DataWarning, InputError
from automl.models import get_family
from tests.conftest import automl_cli


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 400
    frame = pd.DataFrame({"x1": rng.normal(size=n), "x2": rng.normal(size=n),
                          "color": rng.choice(["red", "green", "blue"], n), "flag": rng.random(n) < 0.5})
    signal = frame["x1"] + (frame["color"] == "red") + 0.5 * frame["flag"]
    return frame.assign(target=(signal + rng.normal(scale=0.3, size=n) > 0.7).astype(int))


@pytest.fixture(scope="module")
def predictor(frame) -> Predictor:
    data = prepare_training(frame, "target", "binary")
    family = get_family("linear")
    estimator = family.build(family.default_params("binary"), "binary", 1, 0).fit(data.X, data.y)
    return Predictor(data.schema, data.target, "target", "roc_auc", [Member("linear_0", "linear", {}, 1.0, estimator)])


def features(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.drop(columns=["target"])


def test_every_missing_column_is_named(predictor, frame):
    with pytest.raises(InputError, match=r"2 column\(s\) the model uses are missing from the data: 'x2', 'color'"):
        predictor.predict(features(frame).drop(columns=["x2", "color"]))


def test_extra_columns_are_ignored_with_a_warning(predictor, frame):
    with pytest.warns(DataWarning, match="ignoring 2 column.*'note', 'id'"):
        extra = predictor.predict_matrix(features(frame).assign(note="x", id=range(len(frame))))
    np.testing.assert_array_equal(extra, predictor.predict_matrix(features(frame)))


def test_the_target_column_is_not_an_extra_column(predictor, frame, recwarn):
    predictor.predict(frame)
    assert not [w for w in recwarn if issubclass(w.category, DataWarning)]


def test_unseen_categories_and_new_missing_values_are_predicted(predictor, frame):
    new = features(frame).head(6).copy()
    new["color"] = ["purple", None, "red", "green", "blue", "orange"]
    new.loc[new.index[:3], "x1"] = np.nan
    new["flag"] = [None, True, False, True, None, False]
    proba = predictor.predict_matrix(new)
    assert proba.shape == (6, 2) and np.isfinite(proba).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)


def test_coercible_dtypes_are_coerced(predictor, frame):
    as_text = features(frame).astype({"x1": str, "x2": str})
    as_text["flag"] = features(frame)["flag"].map({True: "yes", False: "no"})
    np.testing.assert_allclose(predictor.predict_matrix(as_text), predictor.predict_matrix(features(frame)))


@pytest.mark.parametrize(("column", "value", "expected"), [
    ("x1", "abc", "column 'x1' is mostly numeric but holds text such as 'abc' \\(row 6\\)"),
    ("flag", "maybe", "column 'flag' should be true/false; found 'maybe'"),
])
def test_values_that_cannot_be_coerced_are_named(predictor, frame, column, value, expected):
    bad = features(frame).astype({column: object})
    bad.loc[bad.index[5], column] = value
    with pytest.raises(InputError, match=expected):
        predictor.predict(bad)


def test_a_categorical_column_may_hold_numbers_and_text(predictor, frame):
    """Only the model's numeric columns are looked at for stray text: in a categorical one, codes
    such as 10, 20 beside a word are categories the model never saw, not a broken number column."""
    codes = features(frame).assign(color=["10"] * (len(frame) - 1) + ["red"])
    proba = predictor.predict_matrix(codes)
    np.testing.assert_allclose(proba[-1], predictor.predict_matrix(features(frame).assign(color="red"))[-1])


def test_row_order_and_count_are_kept(predictor, frame):
    shuffled = features(frame).sample(frac=1, random_state=1)
    by_position = predictor.predict_matrix(features(frame))
    np.testing.assert_array_equal(predictor.predict_matrix(shuffled), by_position[shuffled.index.to_numpy()])
    doubled = pd.concat([features(frame), features(frame)])  # repeated index labels too
    assert len(predictor.predict(doubled)) == 2 * len(frame)


def test_cli_warns_on_one_line_and_refuses_missing_columns(predictor, frame, tmp_path):
    predictor.save(tmp_path / "model")
    features(frame).assign(note="x").to_csv(tmp_path / "extra.csv", index=False)
    extra = automl_cli("predict", tmp_path / "model", tmp_path / "extra.csv")
    assert extra.returncode == 0, extra.stderr
    assert extra.stderr == "warning: ignoring 1 column(s) the model was not trained on: 'note'\n"
    assert len(pd.read_csv(io.StringIO(extra.stdout))) == len(frame)
    features(frame).drop(columns=["x1"]).to_csv(tmp_path / "missing.csv", index=False)
    missing = automl_cli("predict", tmp_path / "model", tmp_path / "missing.csv")
    assert missing.returncode == 2
    assert missing.stderr == "error: 1 column(s) the model uses are missing from the data: 'x1'\n"
