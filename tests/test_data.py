"""Loading tables, inferring task and column kinds, the feature schema and target encoding."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from automl.data import (
    BOOLEAN,
    CATEGORICAL,
    CONSTANT,
    DATETIME,
    ID_LIKE,
    NUMERIC,
    TEXT,
    FeatureSchema,
    TargetEncoder,
    column_kinds,
    infer_kind,
    infer_task,
    load_table,
    prepare_training,
)
from automl.errors import InputError


def sample_frame(n: int = 60, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "num": rng.normal(size=n),
        "count": rng.integers(0, 5, size=n),
        "color": rng.choice(["red", "green", "blue"], size=n),
        "flag": rng.random(n) < 0.5,
        "target": rng.choice(["yes", "no"], size=n),
    })


# --- load_table ------------------------------------------------------------------------------

def test_load_csv(tmp_path):
    frame = sample_frame()
    path = tmp_path / "train.csv"
    frame.to_csv(path, index=False)
    loaded = load_table(path)
    assert list(loaded.columns) == list(frame.columns)
    assert len(loaded) == len(frame)
    np.testing.assert_allclose(loaded["num"], frame["num"])
    assert loaded["color"].tolist() == frame["color"].tolist()
    assert loaded["target"].tolist() == frame["target"].tolist()


def test_load_csv_from_string_path(tmp_path):
    frame = sample_frame()
    frame.to_csv(tmp_path / "train.csv", index=False)
    assert load_table(str(tmp_path / "train.csv")).shape == frame.shape


def test_load_parquet(tmp_path):
    frame = sample_frame()
    path = tmp_path / "train.parquet"
    frame.to_parquet(path)
    loaded = load_table(path)
    pd.testing.assert_frame_equal(loaded.reset_index(drop=True), frame, check_dtype=False)


def test_load_table_passes_a_frame_through():
    frame = sample_frame()
    assert load_table(frame) is frame


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_table(tmp_path / "absent.csv")


@pytest.mark.parametrize("name", ["data.xlsx", "data.json", "data"])
def test_unsupported_extension(tmp_path, name):
    path = tmp_path / name
    path.write_text("a,b\n1,2\n")
    with pytest.raises(InputError) as info:
        load_table(path)
    assert "unsupported" in str(info.value)
    assert "\n" not in str(info.value)


def test_parquet_that_is_not_parquet(tmp_path):
    path = tmp_path / "fake.parquet"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(InputError, match="cannot read"):
        load_table(path)


@pytest.mark.parametrize("text", ["", "a,b\n"])
def test_empty_csv(tmp_path, text):
    path = tmp_path / "empty.csv"
    path.write_text(text)
    with pytest.raises(InputError):
        load_table(path)


# --- infer_task ------------------------------------------------------------------------------

@pytest.mark.parametrize("values, task", [
    (["yes", "no", "yes", "no"], "binary"),
    ([0, 1, 1, 0, 1], "binary"),
    ([True, False, True], "binary"),
    ([1.5, 2.5, 1.5], "binary"),
    (["cat", "dog", "bird", "cat"], "multiclass"),
    ([0, 1, 2, 3, 2, 1], "multiclass"),
    ([0.0, 1.0, 2.0, 1.0], "multiclass"),
    ([0.1, 0.5, 2.3, 1.7, 9.9], "regression"),
    (list(range(50)), "regression"),  # too many integer values for classes
])
def test_infer_task(values, task):
    assert infer_task(pd.Series(values, name="y")) == task


def test_infer_task_ignores_missing_values():
    assert infer_task(pd.Series(["a", None, "b", np.nan], name="y")) == "binary"


def test_infer_task_needs_two_values():
    with pytest.raises(InputError, match="'y'"):
        infer_task(pd.Series([1, 1, 1, None], name="y"))


# --- infer_kind --------------------------------------------------------------------------------

def test_kind_numeric():
    rng = np.random.default_rng(0)
    assert infer_kind(pd.Series(rng.normal(size=100))) == NUMERIC
    assert infer_kind(pd.Series(rng.integers(0, 10, size=100))) == NUMERIC
    assert infer_kind(pd.Series([1.0, np.nan, 3.0, 2.0])) == NUMERIC


def test_kind_categorical():
    assert infer_kind(pd.Series(["a", "b", "c", "a", None] * 20)) == CATEGORICAL
    assert infer_kind(pd.Series(pd.Categorical(["x", "y", "x"]))) == CATEGORICAL


@pytest.mark.parametrize("values", [
    ["2024-01-05", "2023-12-31", "2022-06-15", None] * 5,
    ["2024-01-05 10:30:00", "2024-01-06 11:00:00"] * 5,
    ["1/5/2024", "12/31/2023"] * 5,
])
def test_kind_datetime_strings(values):
    assert infer_kind(pd.Series(values)) == DATETIME


def test_kind_datetime_dtype():
    assert infer_kind(pd.Series(pd.date_range("2020-01-01", periods=10))) == DATETIME


def test_kind_boolean():
    assert infer_kind(pd.Series([True, False] * 10)) == BOOLEAN
    assert infer_kind(pd.Series([True, False, None] * 10, dtype="boolean")) == BOOLEAN


def test_kind_id_like_integers():
    ids = pd.Series(np.random.default_rng(0).permutation(np.arange(1000, 1100)))
    assert infer_kind(ids) == ID_LIKE


def test_kind_unique_floats_are_not_ids():
    assert infer_kind(pd.Series(np.random.default_rng(0).normal(size=100))) == NUMERIC
    # unique integers with gaps are a feature, not a row number
    assert infer_kind(pd.Series(np.arange(100) * 3)) == NUMERIC


def test_kind_id_like_strings():
    assert infer_kind(pd.Series([f"user-{i:05d}" for i in range(100)])) == ID_LIKE


def test_kind_text():
    text = pd.Series([f"this is a rather long free text comment number {i}" for i in range(100)])
    assert infer_kind(text) == TEXT


@pytest.mark.parametrize("values", [[3] * 10, ["a"] * 10, [np.nan] * 10, [1.0, np.nan] * 5])
def test_kind_constant(values):
    assert infer_kind(pd.Series(values)) == CONSTANT


# --- FeatureSchema -------------------------------------------------------------------------------

def mixed_frame(n: int = 60) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    days = pd.date_range("2021-03-01", periods=n, freq="17D")
    return pd.DataFrame({
        "row_id": np.arange(n),
        "num": rng.normal(size=n),
        "color": rng.choice(["red", "green", "blue"], size=n),
        "when": days.strftime("%Y-%m-%d"),
        "flag": rng.random(n) < 0.5,
        "const": 7,
    })


def test_schema_kinds_and_used_columns():
    schema = FeatureSchema.infer(mixed_frame())
    assert schema.describe() == {"row_id": ID_LIKE, "num": NUMERIC, "color": CATEGORICAL,
                                 "when": DATETIME, "flag": BOOLEAN, "const": CONSTANT}
    assert schema.required_columns == ["num", "color", "when", "flag"]
    assert schema.categorical_features() == ["color"]


def test_transform_expands_datetime_into_parts():
    frame = mixed_frame()
    out = FeatureSchema.infer(frame).transform(frame)
    assert "when" not in out.columns
    for part in ("year", "month", "day", "dayofweek", "dayofyear"):
        assert f"when__{part}" in out.columns
    assert "when__hour" not in out.columns  # constant part (always midnight) left out
    stamps = pd.to_datetime(frame["when"])
    np.testing.assert_array_equal(out["when__year"], stamps.dt.year.astype(float))
    np.testing.assert_array_equal(out["when__month"], stamps.dt.month.astype(float))
    np.testing.assert_array_equal(out["when__dayofweek"], stamps.dt.dayofweek.astype(float))


def test_transform_dtypes_and_dropped_columns():
    frame = mixed_frame()
    out = FeatureSchema.infer(frame).transform(frame)
    assert "row_id" not in out.columns and "const" not in out.columns
    assert isinstance(out["color"].dtype, pd.CategoricalDtype)
    assert list(out["color"].cat.categories) == ["blue", "green", "red"]
    assert out["num"].dtype == float and out["flag"].dtype == float
    np.testing.assert_array_equal(out["flag"], frame["flag"].astype(float))
    np.testing.assert_allclose(out["num"], frame["num"])
    assert out.index.equals(frame.index)


def test_transform_keeps_category_levels_fixed():
    frame = mixed_frame()
    schema = FeatureSchema.infer(frame)
    # a frame with only one of the levels still gets all three, with the same codes
    part = schema.transform(frame[frame["color"] == "red"])
    assert list(part["color"].cat.categories) == ["blue", "green", "red"]
    assert set(part["color"].cat.codes) == {2}


def test_transform_unseen_category_becomes_missing():
    frame = mixed_frame()
    schema = FeatureSchema.infer(frame)
    new = frame.head(4).copy()
    new["color"] = ["purple", "red", None, "green"]
    out = schema.transform(new)
    assert out["color"].isna().tolist() == [True, False, True, False]
    assert out["color"].tolist()[1] == "red" and out["color"].tolist()[3] == "green"


def test_transform_ignores_extra_and_dropped_columns():
    frame = mixed_frame()
    schema = FeatureSchema.infer(frame)
    new = frame.drop(columns=["row_id", "const"]).assign(extra=1)
    out = schema.transform(new)
    assert list(out.columns) == list(schema.transform(frame).columns)


def test_transform_missing_required_column():
    frame = mixed_frame()
    schema = FeatureSchema.infer(frame)
    with pytest.raises(InputError, match="'color'"):
        schema.transform(frame.drop(columns=["color"]))


def test_transform_non_numeric_value_in_numeric_column():
    frame = mixed_frame()
    schema = FeatureSchema.infer(frame)
    bad = frame.head(5).copy()
    bad["num"] = ["1.5", "2", "oops", None, "3"]
    with pytest.raises(InputError) as info:
        schema.transform(bad)
    assert "'num'" in str(info.value) and "oops" in str(info.value)


def test_transform_numeric_strings_are_accepted():
    frame = mixed_frame()
    schema = FeatureSchema.infer(frame)
    new = frame.head(3).copy()
    new["num"] = ["1.5", None, "-2"]
    out = schema.transform(new)
    np.testing.assert_array_equal(out["num"], [1.5, np.nan, -2.0])


def test_transform_booleans_read_back_as_text():
    frame = mixed_frame()
    schema = FeatureSchema.infer(frame)
    new = frame.head(4).copy()
    new["flag"] = ["True", "false", None, "1"]
    out = schema.transform(new)
    np.testing.assert_array_equal(out["flag"], [1.0, 0.0, np.nan, 1.0])


def test_transform_survives_csv_round_trip(tmp_path):
    frame = mixed_frame()
    schema = FeatureSchema.infer(frame)
    frame.to_csv(tmp_path / "x.csv", index=False)
    again = schema.transform(load_table(tmp_path / "x.csv"))
    pd.testing.assert_frame_equal(again, schema.transform(frame), check_categorical=True)


def test_schema_with_no_usable_column():
    frame = pd.DataFrame({"id": np.arange(100), "const": 1})
    with pytest.raises(InputError, match="no usable feature"):
        FeatureSchema.infer(frame)


# --- TargetEncoder ------------------------------------------------------------------------------

def test_target_encoder_round_trip_strings():
    y = pd.Series(["dog", "cat", "bird", "cat", "dog"], name="animal")
    encoder = TargetEncoder.fit(y, "multiclass")
    assert encoder.classes == ["bird", "cat", "dog"]
    assert encoder.n_classes == 3
    codes = encoder.encode(y)
    assert codes.tolist() == [2, 1, 0, 1, 2]
    assert encoder.decode(codes).tolist() == y.tolist()


def test_target_encoder_round_trip_integers():
    y = pd.Series([10, 30, 20, 10], name="y")
    encoder = TargetEncoder.fit(y, "multiclass")
    assert encoder.classes == [10, 20, 30]
    assert all(type(c) is int for c in encoder.classes)  # plain Python, JSON-friendly
    codes = encoder.encode(y)
    assert codes.tolist() == [0, 2, 1, 0]
    assert encoder.decode(codes).tolist() == [10, 30, 20, 10]


def test_target_encoder_binary():
    y = pd.Series(["no", "yes", "yes"], name="y")
    encoder = TargetEncoder.fit(y, "binary")
    assert encoder.encode(y).tolist() == [0, 1, 1]
    with pytest.raises(InputError, match="binary"):
        TargetEncoder.fit(pd.Series(["a", "b", "c"], name="y"), "binary")


def test_target_encoder_unknown_class():
    encoder = TargetEncoder.fit(pd.Series(["a", "b"], name="y"), "binary")
    with pytest.raises(InputError) as info:
        encoder.encode(pd.Series(["a", "c"], name="y"))
    assert "'c'" in str(info.value) and "'y'" in str(info.value)


def test_target_encoder_regression_passes_numbers_through():
    y = pd.Series([1.5, -2.0, 3.25], name="price")
    encoder = TargetEncoder.fit(y, "regression")
    assert encoder.classes == [] and encoder.n_classes == 0
    np.testing.assert_array_equal(encoder.encode(y), [1.5, -2.0, 3.25])
    with pytest.raises(InputError, match="'price'"):
        TargetEncoder.fit(pd.Series(["a", "b"], name="price"), "regression")


# --- prepare_training -------------------------------------------------------------------------------

def test_prepare_training_infers_and_encodes():
    frame = sample_frame()
    data = prepare_training(frame, "target")
    assert data.task == "binary"
    assert "target" not in data.X.columns
    assert data.target.classes == ["no", "yes"]
    assert data.y.tolist() == (frame["target"] == "yes").astype(int).tolist()
    assert len(data.X) == len(frame) and data.n_dropped_rows == 0
    assert data.groups is None and data.times is None


def test_prepare_training_drops_rows_without_target():
    frame = sample_frame(n=50)
    frame.loc[[3, 10, 11, 40], "target"] = None
    data = prepare_training(frame, "target")
    assert data.n_dropped_rows == 4
    assert len(data.X) == len(data.y) == 46
    kept = frame.drop(index=[3, 10, 11, 40])
    np.testing.assert_allclose(data.X["num"], kept["num"])
    assert data.target.decode(data.y).tolist() == kept["target"].tolist()
    assert list(data.X.index) == list(range(46))


def test_prepare_training_missing_target_column():
    with pytest.raises(InputError) as info:
        prepare_training(sample_frame(), "label")
    assert "'label'" in str(info.value)
    assert "\n" not in str(info.value)


def test_prepare_training_drop_groups_time():
    frame = sample_frame(n=40)
    frame["group"] = np.repeat(np.arange(8), 5)
    frame["day"] = pd.date_range("2024-01-01", periods=40).strftime("%Y-%m-%d")
    frame.loc[[0, 7], "target"] = None
    grouped = prepare_training(frame, "target", drop=["count"], groups="group")
    assert "count" not in grouped.X.columns and "group" not in grouped.X.columns
    kept = frame.drop(index=[0, 7])
    assert grouped.groups.tolist() == kept["group"].tolist()
    timed = prepare_training(frame, "target", time="day")
    assert np.issubdtype(timed.times.dtype, np.datetime64)
    assert (pd.to_datetime(timed.times) == pd.to_datetime(kept["day"]).to_numpy()).all()


def test_prepare_training_refuses_groups_and_time_together():
    frame = sample_frame(n=40)
    frame["group"] = np.repeat(np.arange(8), 5)
    frame["day"] = pd.date_range("2024-01-01", periods=40).strftime("%Y-%m-%d")
    with pytest.raises(InputError, match="not both"):
        prepare_training(frame, "target", groups="group", time="day")


def test_prepare_training_unknown_drop_column():
    with pytest.raises(InputError, match="'nope'"):
        prepare_training(sample_frame(), "target", drop=["nope"])


def test_prepare_training_explicit_task():
    frame = sample_frame()
    frame["target"] = np.arange(len(frame)) % 3
    assert prepare_training(frame, "target").task == "multiclass"
    data = prepare_training(frame, "target", task="regression")
    assert data.task == "regression"
    assert data.y.dtype == float


def test_prepare_training_needs_some_labelled_rows():
    frame = sample_frame(n=20)
    frame.loc[5:, "target"] = None
    with pytest.raises(InputError, match="target value"):
        prepare_training(frame, "target")


def test_prepare_training_with_integer_column_names():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(40, 3)))  # columns 0, 1, 2
    frame["target"] = np.arange(40) % 2
    data = prepare_training(frame, "target")
    assert data.X.shape == (40, 3)
    np.testing.assert_allclose(data.X.to_numpy(), frame[[0, 1, 2]].to_numpy())


def test_integer_labels_read_as_floats_come_back_as_integers():
    y = pd.Series([0.0, 1.0, np.nan, 1.0, 0.0], name="target")  # ints with a gap read as float
    encoder = TargetEncoder.fit(y, "binary")
    assert encoder.classes == [0, 1] and all(isinstance(c, int) for c in encoder.classes)
    assert encoder.encode(y.dropna()).tolist() == [0, 1, 1, 0]


def test_column_kinds_counts_numeric_columns_together_and_agrees_with_infer_kind():
    rng = np.random.default_rng(0)
    n = 300
    frame = pd.DataFrame({
        "float": rng.normal(size=n), "float_missing": np.where(rng.random(n) < 0.3, np.nan, rng.normal(size=n)),
        "constant": np.ones(n), "constant_missing": np.where(rng.random(n) < 0.5, np.nan, 1.0),
        "row_number": np.arange(n) + 5, "shuffled_ids": rng.permutation(n), "small_int": rng.integers(0, 5, n),
        "nullable": pd.array(np.where(rng.random(n) < 0.2, None, rng.integers(0, 3, n)), dtype="Int64"),
        "flag": rng.random(n) < 0.5, "text": rng.choice(["a", "b"], n), "all_missing": np.full(n, np.nan),
        "with_inf": np.where(rng.random(n) < 0.1, np.inf, rng.integers(0, 3, n)),
        "stamp": pd.date_range("2020-01-01", periods=n)})
    kinds, distinct = column_kinds(frame)
    assert kinds == [NUMERIC, NUMERIC, CONSTANT, CONSTANT, ID_LIKE, ID_LIKE, NUMERIC, NUMERIC, BOOLEAN, CATEGORICAL,
                     CONSTANT, NUMERIC, DATETIME]
    assert kinds == [infer_kind(frame[c]) for c in frame.columns]  # one column at a time, the same
    assert distinct == [frame[c].nunique(dropna=True) for c in frame.columns]


def test_the_positive_class_is_the_rarer_one_unless_the_spec_names_it():
    y = pd.Series(["yes"] * 3 + ["no"] * 7, name="answer")
    assert TargetEncoder.fit(y, "binary").positive == 1  # "yes" (code 1 of no, yes) is rarer
    assert TargetEncoder.fit(y.replace({"yes": "no", "no": "yes"}), "binary").positive == 0
    assert TargetEncoder.fit(y, "binary", positive_class="no").positive == 0
    assert TargetEncoder.fit(pd.Series([0, 1, 1, 1]), "binary", positive_class="1").positive == 1  # as YAML text
    with pytest.raises(InputError, match="data.positive_class 'maybe' is not a class of target 'answer'"):
        TargetEncoder.fit(y, "binary", positive_class="maybe")
    assert TargetEncoder.fit(pd.Series([0, 1, 2]), "multiclass").positive is None
