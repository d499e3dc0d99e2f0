"""``automl serve``: the request rules (without a server), then one server on Ray Serve end to end."""

from __future__ import annotations

import glob
import io
import json
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

from automl.artifact import Member, Predictor
from automl.data import prepare_training
from automl.drift import REFERENCE_FILE, build_reference
from automl.models import get_family
from automl.request_log import read_log
from automl.serving import PredictionService
from tests.conftest import automl_cli, automl_exe, automl_here


def _frame(multiclass_frame: pd.DataFrame) -> pd.DataFrame:
    frame = multiclass_frame.copy()
    frame["band"] = np.where(frame["sepal_length_(cm)"] > 5.8, "long", "short")  # a categorical column too
    return frame


@pytest.fixture(scope="module")
def predictor(multiclass_frame) -> Predictor:
    data = prepare_training(_frame(multiclass_frame), "target", "multiclass")
    model = get_family("lightgbm").build({"n_estimators": 20}, data.task, 1, 0).fit(data.X, data.y)
    return Predictor(data.schema, data.target, "target", "log_loss", [Member("lightgbm_0", "lightgbm", {}, 1.0, model)])


@pytest.fixture(scope="module")
def rows(multiclass_frame) -> pd.DataFrame:
    return _frame(multiclass_frame).drop(columns=["target"]).iloc[::15]


def _json(rows: pd.DataFrame) -> bytes:
    return rows.to_json(orient="records").encode()


def test_json_and_csv_rows_get_the_models_labels_and_probabilities(predictor, rows):
    service = PredictionService(predictor)
    status, answer = service.handle("POST", "/predict", _json(rows), "application/json")
    assert status == 200 and answer["predictions"] == predictor.predict(rows).tolist()
    expected = predictor.predict_proba(rows)
    assert pd.DataFrame(answer["probabilities"]).equals(expected)
    status, from_csv = service.handle("POST", "/predict", rows.to_csv(index=False).encode(), "text/csv; charset=utf-8")
    assert status == 200 and from_csv == answer
    status, one = service.handle("POST", "/predict/", json.dumps(rows.iloc[0].to_dict()).encode(), "application/json")
    assert status == 200 and one["predictions"] == answer["predictions"][:1]


def test_health_and_schema_describe_the_model(predictor):
    service = PredictionService(predictor)
    assert service.handle("GET", "/health", b"", "") == (200, {"status": "ok", "task": "multiclass",
                                                                "target": "target"})
    status, schema = service.handle("GET", "/schema", b"", "")
    assert status == 200 and schema["classes"] == ["setosa", "versicolor", "virginica"]
    columns = {c["name"]: c for c in schema["columns"]}
    assert set(columns) == set(predictor.schema.required_columns)
    assert columns["band"] == {"name": "band", "kind": "categorical", "categories": ["long", "short"]}
    assert columns["petal_width_(cm)"]["kind"] == "numeric"


@pytest.mark.parametrize(("method", "path", "body", "content_type", "status", "message"), [
    ("POST", "/predict", b"[{", "application/json", 400, "malformed JSON"),
    ("POST", "/predict", b'{"rows": 3}', "application/json", 422, "missing from the data"),
    ("POST", "/predict", b"[1, 2]", "application/json", 400, "expected a JSON array of records"),
    ("POST", "/predict", b"[]", "application/json", 400, "no rows to predict"),
    ("POST", "/predict", b"a,b\n", "text/csv", 400, "no rows to predict"),
    ("POST", "/predict", b"<rows/>", "application/xml", 415, "content type 'application/xml'"),
    ("GET", "/predict", b"", "", 405, "/predict takes POST, not GET"),
    ("POST", "/nowhere", b"", "", 404, "no route /nowhere"),
])
def test_bad_requests_get_a_4xx_that_names_the_problem(predictor, method, path, body, content_type, status, message):
    got, answer = PredictionService(predictor).handle(method, path, body, content_type)
    assert got == status and message in answer["error"] and set(answer) == {"error"}


def test_rows_that_do_not_fit_the_model_get_422_naming_the_column(predictor, rows):
    service = PredictionService(predictor, max_body_bytes=10_000)
    missing = rows.drop(columns=["band"])
    status, answer = service.handle("POST", "/predict", _json(missing), "application/json")
    assert status == 422 and "'band'" in answer["error"]
    wrong = rows.assign(**{"petal_width_(cm)": "wide"})
    status, answer = service.handle("POST", "/predict", _json(wrong), "application/json")
    assert status == 422 and answer["error"] == "column 'petal_width_(cm)' should be numeric; found 'wide'"
    status, answer = service.handle("POST", "/predict", b"[" + b" " * 10_000 + b"]", "application/json")
    assert status == 413 and "10000 accepted" in answer["error"]
    extra = rows.assign(note="x")
    status, answer = service.handle("POST", "/predict", _json(extra), "application/json")
    assert status == 200 and "ignoring 1 column(s)" in answer["warnings"][0]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _request(url: str, body: bytes | None = None, content_type: str = "application/json") -> tuple[int, dict]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as refused:
        return refused.code, json.loads(refused.read())


def _wait_until_serving(process: subprocess.Popen, stderr: Path, timeout: float = 150) -> None:
    """Wait for the server's announcement, which it makes once /health answers through Serve's proxy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        if "serving " in stderr.read_text():
            return
        time.sleep(0.5)
    raise AssertionError(f"automl serve is not serving (exit status {process.poll()}): {stderr.read_text()}")


def _ray_left(temp_dirs_before: set[str], server_pid: int) -> list[str]:
    """What the server left: its Ray folder, or Ray processes it started (children reparented to init)."""
    left = sorted(set(glob.glob("/tmp/automl-ray-*")) - temp_dirs_before)
    for process in psutil.process_iter(["cmdline"]):
        if any(f"automl-ray-{server_pid}-" in part for part in process.info["cmdline"] or []):
            left.append(f"process {process.pid}")
    return left


def _in_process(capsys, *args) -> str:
    """What an automl command prints, run in this process (no new interpreter to start)."""
    capsys.readouterr()
    assert automl_here(*args) == 0
    return capsys.readouterr().out


def test_the_server_predicts_as_automl_predict_refuses_bad_requests_logs_and_stops_cleanly(tmp_path, predictor, rows,
                                                                                          multiclass_frame, capsys):
    training = _frame(multiclass_frame)
    reference = build_reference(training, predictor.schema, "target", "multiclass")
    model = predictor.save(tmp_path / "model", {REFERENCE_FILE: json.dumps(reference)})
    rows.to_csv(tmp_path / "rows.csv", index=False)
    port = _free_port()
    temp_dirs = set(glob.glob("/tmp/automl-ray-*"))
    url = f"http://127.0.0.1:{port}"
    with open(tmp_path / "stderr.txt", "w") as stderr:
        server = subprocess.Popen([automl_exe(), "serve", str(model), "--port", str(port), "--log",
                                   str(tmp_path / "log")], stderr=stderr, start_new_session=True)
    try:
        _wait_until_serving(server, tmp_path / "stderr.txt")
        status, health = _request(f"{url}/health")
        assert status == 200 and health["status"] == "ok"
        status, answer = _request(f"{url}/predict", (tmp_path / "rows.csv").read_bytes(), "text/csv")
        csv = tmp_path / "rows.csv"
        labels = pd.read_csv(io.StringIO(_in_process(capsys, "predict", model, csv)))
        probabilities = pd.read_csv(io.StringIO(_in_process(capsys, "predict", model, csv, "--proba")))
        assert status == 200 and answer["predictions"] == labels["target"].tolist()
        np.testing.assert_allclose(pd.DataFrame(answer["probabilities"]).to_numpy(), probabilities.to_numpy(),
                                   rtol=1e-12)
        status, refused = _request(f"{url}/predict", _json(rows.drop(columns=["band"])))
        assert status == 422 and "'band'" in refused["error"]
        assert _request(f"{url}/predict", b"[{")[0] == 400
        traffic = training.drop(columns=["target"]).sample(1_000, replace=True, random_state=0)
        for start in range(0, 1_000, 200):  # 1,000 rows drawn from the training data, in five requests
            assert _request(f"{url}/predict", _json(traffic.iloc[start:start + 200]))[0] == 200
        with urllib.request.urlopen(f"{url}/metrics", timeout=30) as response:
            assert response.headers["Content-Type"].startswith("text/plain; version=")  # Prometheus text
            metrics = {sample.name: sample.value for family in text_string_to_metric_families(response.read().decode())
                       for sample in family.samples if sample.labels.get("status", "200") == "200"}
        assert metrics["automl_rows_scored_total"] == len(rows) + 1_000
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=60)
    assert server.returncode == 0, (tmp_path / "stderr.txt").read_text()
    assert f"serving {model} at {url}" in (tmp_path / "stderr.txt").read_text()
    assert _ray_left(temp_dirs, server.pid) == []
    assert len(read_log(tmp_path / "log")) == len(rows) + 1_000  # the buffered rows were written at the stop
    assert json.loads(_in_process(capsys, "drift", model, tmp_path / "log", "--json"))["verdict"] == "no drift"


def test_a_port_in_use_is_refused_before_ray_starts(tmp_path, predictor):
    model = predictor.save(tmp_path / "model")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        result = automl_cli("serve", model, "--port", str(taken.getsockname()[1]), timeout=60)
    assert result.returncode == 2 and result.stderr.startswith("error: cannot listen on 127.0.0.1:")
