"""``automl serve``: a model folder behind HTTP, on Ray Serve.

``PredictionService`` answers requests without knowing about HTTP servers: a method,
a path, a body and its content type in; a status and a JSON-able payload out. That is
where every rule lives (what a request may hold, which status a bad one gets), so it is
tested without starting Ray. ``serve`` deploys it as a Ray Serve application: on a
private local Ray instance, or on a cluster (``address``) with as many replicas as
asked for.

Routes: ``POST /predict`` (a JSON array of records, one object for one row, or CSV
with a header), ``GET /health``, ``GET /schema``. Bad requests get a 4xx status and
``{"error": "..."}`` naming the problem: 400 malformed body, 404 unknown path, 405
wrong method, 413 body too large, 415 unsupported content type, 422 rows that do not
fit the model (a missing column, a wrong type).
"""

from __future__ import annotations

import io
import json
import logging
import math
import signal
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from automl.artifact import Predictor, load_predictor
from automl.errors import InputError
from automl.request_log import DEFAULT_MAX_MB, RequestLog
from automl.serve_metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from automl.serve_metrics import ServiceMetrics, row_flags

MAX_BODY_BYTES = 32 * 2**20
"""The largest request body accepted by default (``automl serve --max-body-mb``)."""
ROUTE_WAIT_SECONDS = 60
"""How long ``serve`` waits for Ray Serve's HTTP proxy to route ``/health`` to the model."""
JSON_TYPES = ("application/json", "")
CSV_TYPES = ("text/csv", "application/csv", "text/plain")


class BadRequest(Exception):
    """A request the service refuses: its HTTP status and the one-line reason."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class PredictionService:
    """Predictions for HTTP requests, from one loaded model; what it answered counted for
    ``GET /metrics`` (``automl.serve_metrics``), and the rows it scored written to
    ``request_log`` when there is one (``automl.request_log``)."""

    def __init__(self, predictor: Predictor, max_body_bytes: int = MAX_BODY_BYTES,
                 request_log: RequestLog | None = None):
        self.predictor = predictor
        self.max_body_bytes = max_body_bytes
        self.request_log = request_log
        self.metrics = ServiceMetrics()

    def handle(self, method: str, path: str, body: bytes, content_type: str) -> tuple[int, dict[str, Any] | str]:
        """The status and payload answering one request: JSON-able, or text (``/metrics``)."""
        started = time.perf_counter()
        routes = {"/predict": ("POST", self._predict), "/health": ("GET", self._health),
                  "/schema": ("GET", self._schema), "/metrics": ("GET", self._metrics)}
        name = "/" + path.strip("/")
        route = routes.get(name)
        try:
            if route is None:
                raise BadRequest(404, f"no route {path}: use POST /predict, GET /health, GET /schema or GET /metrics")
            allowed, answer = route
            if method.upper() != allowed:
                raise BadRequest(405, f"{path} takes {allowed}, not {method.upper()}")
            status, payload = 200, answer(body, content_type)
        except BadRequest as refused:
            status, payload = refused.status, {"error": str(refused)}
        self.metrics.record_request(name if route else "other", status, time.perf_counter() - started)
        return status, payload

    def _metrics(self, body: bytes, content_type: str) -> str:
        return self.metrics.exposition()

    def _health(self, body: bytes, content_type: str) -> dict[str, Any]:
        return {"status": "ok", "task": self.predictor.task, "target": self.predictor.target_name}

    def _schema(self, body: bytes, content_type: str) -> dict[str, Any]:
        """The columns a request's rows need, their kinds, and the categories seen in training."""
        columns = [{"name": info.name, "kind": info.kind,
                    **({"categories": info.categories} if info.categories else {})}
                   for info in self.predictor.schema.used]
        return {"target": self.predictor.target_name, "task": self.predictor.task, "columns": columns,
                **({"classes": self.predictor.class_names}
                   if self.predictor.task != "regression" else {})}

    def _predict(self, body: bytes, content_type: str) -> dict[str, Any]:
        if len(body) > self.max_body_bytes:
            raise BadRequest(413, f"the body holds {len(body)} bytes, over the {self.max_body_bytes} accepted")
        rows = self.rows(body, content_type)
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                predictions = self._predictions(rows)
        except InputError as refused:
            raise BadRequest(422, str(refused)) from None
        notes = [str(w.message) for w in caught]
        return {**predictions, **({"warnings": notes} if notes else {})}

    def _predictions(self, rows: pd.DataFrame) -> dict[str, Any]:
        """Labels (values for a regression) and, for a classifier, each class's probability,
        computed from one pass over the members."""
        predictor = self.predictor
        matrix = predictor.predict_matrix(rows)
        predictions = predictor.predictions_of(matrix)
        answer = {"predictions": _plain(predictions)}
        if predictor.task != "regression":
            answer["probabilities"] = [dict(zip(predictor.class_names, row, strict=True)) for row in matrix.tolist()]
        self.metrics.record_rows(len(rows), *row_flags(predictor.schema, rows))
        if self.request_log is not None:
            probabilities = None if predictor.task == "regression" else pd.DataFrame(matrix,
                                                                                     columns=predictor.class_names)
            self.request_log.record(rows, predictions, probabilities)
        return answer

    @staticmethod
    def rows(body: bytes, content_type: str) -> pd.DataFrame:
        """The request's rows: JSON records or CSV with a header, by content type."""
        kind = content_type.split(";")[0].strip().lower()
        if kind in CSV_TYPES:
            return _csv_rows(body)
        if kind in JSON_TYPES:
            return _json_rows(body)
        raise BadRequest(415, f"content type {kind!r} is not accepted: send application/json or text/csv")


def _json_rows(body: bytes) -> pd.DataFrame:
    try:
        records = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise BadRequest(400, f"malformed JSON: {error}") from None
    if isinstance(records, dict):
        records = [records]
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise BadRequest(400, "expected a JSON array of records (objects of column: value), or one record")
    if not records:
        raise BadRequest(400, "no rows to predict: the array is empty")
    return pd.DataFrame.from_records(records)


def _csv_rows(body: bytes) -> pd.DataFrame:
    try:
        rows = pd.read_csv(io.BytesIO(body), skipinitialspace=True)  # as automl predict reads a file
    except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise BadRequest(400, f"malformed CSV: {str(error).strip()}") from None
    if rows.empty:
        raise BadRequest(400, "no rows to predict: the CSV holds a header only")
    return rows


def _plain(values: np.ndarray) -> list:
    """JSON-able values: numpy scalars as Python ones, NaN as null."""
    return [None if isinstance(v, float) and math.isnan(v) else v for v in np.asarray(values).tolist()]


def check_port_free(host: str, port: int) -> None:
    """Refuse a port something else listens on, before Ray starts (it would fail later, less clearly)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError as error:
            raise InputError(f"cannot listen on {host}:{port}: {error.strerror or error}") from None


def _log_folder(folder: Path) -> Path:
    """The request log's folder, made if need be, as an absolute path (replicas run elsewhere)."""
    folder = Path(folder).resolve()
    if folder.exists() and not folder.is_dir():
        raise InputError(f"--log {folder} is a file; name a folder for the request log")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InputError(f"cannot make the request log folder {folder}: {error.strerror or error}") from None
    return folder


def _health_url(host: str, port: int) -> str:
    """``/health`` as this machine reaches it (a wildcard host is reached on loopback)."""
    local = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    return f"http://[{local}]:{port}/health" if ":" in local else f"http://{local}:{port}/health"


def wait_until_routed(host: str, port: int, timeout: float = ROUTE_WAIT_SECONDS) -> None:
    """Return once the model answers ``/health`` through the proxy.

    ``serve.run`` returns when the replicas are up, but the proxy learns the route a
    moment later and answers 404 in between; announcing the server before that would
    send a client's first requests to a 404.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(_health_url(host, port), timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass  # not listening or not routed yet
        if time.monotonic() > deadline:
            raise RuntimeError(f"the model was not reachable at {_health_url(host, port)} after {timeout:.0f} s")
        time.sleep(0.2)


def _deployment(max_body_bytes: int, log: Path | None, log_max_bytes: int):
    """The Ray Serve deployment class (Serve is imported only when serving)."""
    from ray import serve
    from starlette.responses import JSONResponse, Response

    @serve.deployment(name="automl")
    class ModelServer:
        def __init__(self, predictor: Any):
            import ray

            if isinstance(predictor, ray.ObjectRef):  # the model, put once in the object store for every replica
                predictor = ray.get(predictor)
            request_log = RequestLog(log, predictor.schema, log_max_bytes) if log is not None else None
            self.service = PredictionService(predictor, max_body_bytes, request_log)

        async def __call__(self, request) -> Response:
            body = bytearray()
            async for part in request.stream():  # stop reading once the body is too large
                body += part
                if len(body) > max_body_bytes:
                    break
            status, payload = self.service.handle(request.method, request.url.path, bytes(body),
                                                  request.headers.get("content-type", ""))
            if isinstance(payload, str):
                return Response(payload, status_code=status, media_type=METRICS_CONTENT_TYPE)
            return JSONResponse(payload, status_code=status)

        def __del__(self) -> None:
            """Serve calls it when the replica stops: the rows still buffered are written."""
            if getattr(self, "service", None) is not None and self.service.request_log is not None:
                self.service.request_log.close()

    return ModelServer


def serve(model_dir: Path, host: str = "127.0.0.1", port: int = 8000, replicas: int = 1,
          address: str | None = None, max_body_bytes: int = MAX_BODY_BYTES, log: Path | None = None,
          log_max_bytes: int = DEFAULT_MAX_MB * 2**20) -> None:
    """Serve ``model_dir`` until SIGINT or SIGTERM, then stop Serve and the Ray it started;
    with ``log``, the requests scored are written there (see ``automl.request_log``)."""
    predictor = load_predictor(model_dir)  # a bad folder fails here, before Ray starts
    check_port_free(host, port)
    if log is not None:
        log = _log_folder(log)
    from ray import serve as ray_serve

    from automl.execution.ray_backend import RayExecutor

    logging.getLogger("ray.serve").setLevel(logging.WARNING)  # its INFO lines on every start, on stderr
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    with RayExecutor(address=address) as ray_session:  # private, on 127.0.0.1, unless address names a cluster
        try:
            ray_serve.start(http_options={"host": host, "port": port})
            deployment = _deployment(max_body_bytes, log, log_max_bytes).options(num_replicas=replicas)
            ray_serve.run(deployment.bind(ray_session.put(predictor)), name="automl", route_prefix="/")
            if address is None:  # on a cluster the proxies run on its nodes, not necessarily this one
                wait_until_routed(host, port)
            print(f"serving {model_dir} at http://{host}:{port} (POST /predict, GET /health, GET /schema, "
                  f"GET /metrics){f'; logging requests to {log}' if log else ''}; Ctrl-C stops", file=sys.stderr,
                  flush=True)
            while not stop.wait(0.5):
                pass
        finally:
            ray_serve.shutdown()
