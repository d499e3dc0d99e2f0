"""Prediction of whole files in chunks (``automl predict``, ``automl.batch_prediction``)."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pandas as pd
import pytest

from automl.artifact import Member, Predictor
from automl.batch_prediction import predict_file
from automl.data import prepare_training, table_chunks
from automl.errors import DataWarning, InputError
from automl.models import get_family
from tests.conftest import automl_cli


@pytest.fixture(scope="module")
def predictor(multiclass_frame) -> Predictor:
    data = prepare_training(multiclass_frame, "target", "multiclass")
    estimator = get_family("linear").build({"C": 1.0}, data.task, 1, 0).fit(data.X, data.y)
    return Predictor(data.schema, data.target, "target", "log_loss", [Member("linear_0", "linear", {}, 1.0, estimator)])


@pytest.fixture()
def new_rows(multiclass_frame) -> pd.DataFrame:
    rows = multiclass_frame.drop(columns=["target"]).sample(frac=1, random_state=3).reset_index(drop=True)
    rows.insert(0, "row_id", np.arange(1000, 1000 + len(rows)))
    return rows


def test_the_command_line_predicts_a_file_chunk_by_chunk_in_input_order(tmp_path, predictor, new_rows):
    predictor.save(tmp_path / "model")
    new_rows.to_csv(tmp_path / "new.csv", index=False)
    result = automl_cli("predict", tmp_path / "model", tmp_path / "new.csv", "--proba", "--id", "row_id",
                        "--chunk-rows", "7", "-o", tmp_path / "out.csv")
    assert result.returncode == 0, result.stderr
    out = pd.read_csv(tmp_path / "out.csv")
    assert list(out.columns) == ["row_id", *predictor.target.classes]
    assert out["row_id"].tolist() == new_rows["row_id"].tolist()  # 22 chunks, input order kept
    expected = predictor.predict_proba(new_rows.drop(columns=["row_id"]))
    np.testing.assert_allclose(out[expected.columns].to_numpy(), expected.to_numpy(), rtol=1e-12)


def test_a_parquet_file_in_chunks_predicts_as_it_would_whole(tmp_path, predictor, new_rows):
    new_rows.to_parquet(tmp_path / "new.parquet")
    assert [len(chunk) for chunk in table_chunks(tmp_path / "new.parquet", 64)] == [64, 64, 22]
    out = io.StringIO()
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)  # the id is asked for: no warning that the model ignores it
        written_rows = predict_file(predictor, tmp_path / "new.parquet", out, id_column="row_id", chunk_rows=64)
    assert written_rows == len(new_rows)
    written = pd.read_csv(io.StringIO(out.getvalue()))
    assert written["row_id"].tolist() == new_rows["row_id"].tolist()
    assert written["target"].tolist() == list(predictor.predict(new_rows.drop(columns=["row_id"])))


def test_a_missing_id_column_or_an_empty_file_is_a_one_line_error(tmp_path, predictor, new_rows):
    predictor.save(tmp_path / "model")
    new_rows.to_csv(tmp_path / "new.csv", index=False)
    result = automl_cli("predict", tmp_path / "model", tmp_path / "new.csv", "--id", "customer")
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: --id column 'customer' is not in {tmp_path / 'new.csv'}"
    new_rows.head(0).to_csv(tmp_path / "empty.csv", index=False)
    with pytest.raises(InputError, match="holds no rows"):
        list(table_chunks(tmp_path / "empty.csv", 10))
