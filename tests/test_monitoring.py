"""Monitoring served traffic: the request log (automl serve --log), drift read from it, and /metrics."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from prometheus_client.parser import text_string_to_metric_families

from automl.artifact import Member, Predictor
from automl.data import prepare_training
from automl.drift import REFERENCE_FILE, build_reference
from automl.models import get_family
from automl.request_log import RequestLog, log_files, read_log
from automl.serving import PredictionService
from tests.conftest import automl_here


def _frame(n: int = 600, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    return pd.DataFrame({"x": x, "colour": rng.choice(["red", "green", "blue"], n),
                         "y": np.where(x + rng.normal(0, 0.5, n) > 0, "yes", "no")})


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    frame = _frame()
    data = prepare_training(frame, "y", "binary")
    model = get_family("lightgbm").build({"n_estimators": 10}, data.task, 1, 0).fit(data.X, data.y)
    predictor = Predictor(data.schema, data.target, "y", "roc_auc", [Member("lightgbm_0", "lightgbm", {}, 1.0, model)])
    reference = build_reference(frame, data.schema, "y", "binary")
    return predictor.save(tmp_path_factory.mktemp("served") / "model", {REFERENCE_FILE: json.dumps(reference)})


@pytest.fixture(scope="module")
def predictor(model_dir):
    from automl.artifact import load_predictor

    return load_predictor(model_dir)


def test_the_log_keeps_each_rows_columns_and_answers_with_one_type_per_column(tmp_path, predictor):
    log = RequestLog(tmp_path / "log", predictor.schema, flush_rows=5, flush_seconds=60)
    service = PredictionService(predictor, request_log=log)
    first = [{"x": 1, "colour": "red"}, {"x": 0.5, "colour": None}, {"x": None, "colour": "blue"}]
    second = [{"x": "2.5", "colour": 7, "note": "ignored"}, {"x": -1.0, "colour": "green"}, {"x": 3, "colour": "red"}]
    for records in (first, second):
        assert service.handle("POST", "/predict", json.dumps(records).encode(), "application/json")[0] == 200
    assert len(log_files(tmp_path / "log")) == 1  # six rows: written once the fifth was buffered
    assert service.handle("POST", "/predict", json.dumps(first[:1]).encode(), "application/json")[0] == 200
    log.close()  # the row still buffered is written too
    logged = read_log(tmp_path / "log")
    assert list(logged.columns) == ["x", "colour", "_received_at", "_prediction", "_proba_no", "_proba_yes"]
    np.testing.assert_array_equal(logged["x"].to_numpy()[:4], [1.0, 0.5, np.nan, 2.5])
    assert logged["colour"].iloc[[0, 2, 3]].tolist() == ["red", "blue", "7"] and pd.isna(logged["colour"][1])
    expected = predictor.predict(pd.DataFrame(first + second + first[:1]).drop(columns=["note"]))
    assert logged["_prediction"].tolist() == expected.tolist()
    assert np.allclose(logged["_proba_yes"] + logged["_proba_no"], 1.0)


def test_the_oldest_files_go_once_the_log_passes_its_size_cap(tmp_path, predictor):
    log = RequestLog(tmp_path / "log", predictor.schema, max_bytes=1, flush_rows=1, flush_seconds=60)
    rows = pd.DataFrame({"x": [0.1], "colour": ["red"]})
    for _ in range(3):
        log.record(rows, np.array(["yes"]), None)
    log.close()
    (kept,) = log_files(tmp_path / "log")  # over the cap at once: only the newest file stays
    assert kept.name.endswith("-000002.parquet")


def test_drift_reads_a_log_folder_no_drift_for_training_like_rows_and_drift_for_shifted_ones(tmp_path, model_dir,
                                                                                             predictor, capsys):
    for name, frame in (("same", _frame(1_000, seed=1)), ("shifted", _frame(1_000, seed=2))):
        if name == "shifted":
            frame["x"] += 2.0
        log = RequestLog(tmp_path / name, predictor.schema, flush_rows=300, flush_seconds=60)
        service = PredictionService(predictor, request_log=log)  # the server's request path, without Ray
        features = frame.drop(columns=["y"])
        for start in range(0, 1_000, 250):  # in four requests
            body = features.iloc[start:start + 250].to_json(orient="records").encode()
            assert service.handle("POST", "/predict", body, "application/json")[0] == 200
        log.close()
    assert automl_here("drift", model_dir, tmp_path / "same", "--json") == 0
    same = json.loads(capsys.readouterr().out)
    assert same["verdict"] == "no drift" and same["rows"] == 1_000
    assert automl_here("drift", model_dir, tmp_path / "shifted", "--json") == 0
    shifted = json.loads(capsys.readouterr().out)
    assert shifted["verdict"] == "drift" and shifted["drifted_columns"] == ["x"]
    assert automl_here("drift", model_dir, tmp_path) == 2
    assert "holds no request log files" in capsys.readouterr().err


def _samples(text: str) -> dict[tuple[str, tuple], float]:
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def test_metrics_count_requests_rows_unseen_categories_and_missing_values_in_prometheus_text(predictor):
    service = PredictionService(predictor)
    rows = [{"x": 1.0, "colour": "red"}, {"x": None, "colour": "red"}, {"x": 2.0, "colour": "purple"}]
    for _ in range(2):
        service.handle("POST", "/predict", json.dumps(rows).encode(), "application/json")
    service.handle("POST", "/predict", b"[{", "application/json")
    service.handle("GET", "/nowhere", b"", "")
    status, text = service.handle("GET", "/metrics", b"", "")
    assert status == 200 and isinstance(text, str)
    samples = _samples(text)
    assert samples[("automl_requests_total", (("route", "/predict"), ("status", "200")))] == 2
    assert samples[("automl_requests_total", (("route", "/predict"), ("status", "400")))] == 1
    assert samples[("automl_requests_total", (("route", "other"), ("status", "404")))] == 1
    assert samples[("automl_rows_scored_total", ())] == 6
    assert samples[("automl_rows_with_unseen_categories_total", ())] == 2
    assert samples[("automl_rows_with_missing_values_total", ())] == 2
    assert samples[("automl_unseen_category_row_share", ())] == pytest.approx(1 / 3)
    assert samples[("automl_request_latency_seconds_count", ())] == 3
    assert 0 < samples[("automl_request_latency_seconds", (("quantile", "0.5"),))] < 5
