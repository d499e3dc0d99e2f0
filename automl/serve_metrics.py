"""``GET /metrics`` of ``automl serve``: what the server answered, in Prometheus's text
format (prometheus_client writes it).

- ``automl_requests_total{route, status}``: requests by route and HTTP status;
- ``automl_rows_scored_total``: rows predicted;
- ``automl_rows_with_unseen_categories_total`` and ``automl_rows_with_missing_values_total``:
  scored rows holding a category the model never saw, or a missing value, in a column it
  uses; ``automl_unseen_category_row_share`` and ``automl_missing_value_row_share``, their
  shares of the rows scored;
- ``automl_request_latency_seconds``: a summary of the time to answer ``/predict``, its
  quantiles 0.5, 0.9 and 0.99 over the last LATENCY_WINDOW requests.

Each Serve replica counts what it answered.
"""

from __future__ import annotations

import threading
from collections import Counter, deque

import numpy as np
import pandas as pd
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import CollectorRegistry

from automl.data import CATEGORICAL, FeatureSchema

LATENCY_WINDOW = 10_000
QUANTILES = (0.5, 0.9, 0.99)
CONTENT_TYPE = CONTENT_TYPE_LATEST


def row_flags(schema: FeatureSchema, rows: pd.DataFrame) -> tuple[int, int]:
    """How many of ``rows`` hold an unseen category, and how many a missing value, in the model's columns."""
    used = [info for info in schema.used if info.name in rows.columns]
    missing = rows[[info.name for info in used]].isna().any(axis=1) if used else pd.Series(False, index=rows.index)
    unseen = pd.Series(False, index=rows.index)
    for info in used:
        if info.kind == CATEGORICAL:
            values = rows[info.name]
            unseen |= values.notna() & ~values.astype(str).isin(info.categories)
    return int(unseen.sum()), int(missing.sum())


class ServiceMetrics:
    """Counts and latencies of one server (replica), written out as Prometheus text."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: Counter[tuple[str, int]] = Counter()
        self._rows = self._unseen_rows = self._missing_rows = 0
        self._latencies: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self._latency_count, self._latency_sum = 0, 0.0

    def record_request(self, route: str, status: int, seconds: float) -> None:
        with self._lock:
            self._requests[(route, status)] += 1
            if route == "/predict":
                self._latencies.append(seconds)
                self._latency_count += 1
                self._latency_sum += seconds

    def record_rows(self, rows: int, unseen_rows: int, missing_rows: int) -> None:
        with self._lock:
            self._rows += rows
            self._unseen_rows += unseen_rows
            self._missing_rows += missing_rows

    def exposition(self) -> str:
        registry = CollectorRegistry()
        registry.register(self)
        return generate_latest(registry).decode()

    def collect(self) -> list[Metric]:
        """The metric families, read under the lock."""
        with self._lock:
            requests = CounterMetricFamily("automl_requests", "Requests answered, by route and HTTP status.",
                                           labels=["route", "status"])
            for (route, status), count in sorted(self._requests.items()):
                requests.add_metric([route, str(status)], count)
            families = [requests,
                        CounterMetricFamily("automl_rows_scored", "Rows predicted.", value=self._rows),
                        CounterMetricFamily("automl_rows_with_unseen_categories",
                                            "Scored rows with a category the model never saw.",
                                            value=self._unseen_rows),
                        CounterMetricFamily("automl_rows_with_missing_values",
                                            "Scored rows with a missing value in a column the model uses.",
                                            value=self._missing_rows),
                        GaugeMetricFamily("automl_unseen_category_row_share",
                                          "Share of scored rows with an unseen category.",
                                          value=self._unseen_rows / self._rows if self._rows else 0.0),
                        GaugeMetricFamily("automl_missing_value_row_share",
                                          "Share of scored rows with a missing value.",
                                          value=self._missing_rows / self._rows if self._rows else 0.0)]
            latency = Metric("automl_request_latency_seconds",
                             f"Seconds to answer /predict; quantiles over the last {LATENCY_WINDOW} requests.",
                             "summary")
            if self._latencies:
                for q, value in zip(QUANTILES, np.quantile(list(self._latencies), QUANTILES), strict=True):
                    latency.add_sample("automl_request_latency_seconds", {"quantile": str(q)}, float(value))
            latency.add_sample("automl_request_latency_seconds_count", {}, self._latency_count)
            latency.add_sample("automl_request_latency_seconds_sum", {}, self._latency_sum)
            return [*families, latency]

