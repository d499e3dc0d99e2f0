"""Temperature scaling of the final model's probabilities, for log loss."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.datasets import make_classification

from automl.api import AutoML
from automl.calibration import Temperature, calibrate, fit_temperature
from automl.metrics import get_metric


def _labelled(sharpness: float, rows: int = 3000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Three classes whose true probabilities are the softmax of some logits; the
    "model" reports the softmax of ``sharpness`` times those logits (1: calibrated)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=1.0, size=(rows, 3))
    truth = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    y = np.array([rng.choice(3, p=p) for p in truth])
    sharp = np.exp(sharpness * logits)
    return sharp / sharp.sum(axis=1, keepdims=True), y


def _overconfident() -> tuple[np.ndarray, np.ndarray]:
    return _labelled(3.0)


def test_a_temperature_keeps_each_rows_class_order_and_sums_to_one():
    proba = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]])
    for t in (0.5, 1.0, 3.0):
        scaled = Temperature(t).apply(proba)
        assert np.allclose(scaled.sum(axis=1), 1.0)
        assert (scaled.argmax(axis=1) == proba.argmax(axis=1)).all()
    assert np.allclose(Temperature(1.0).apply(proba), proba)
    assert Temperature(3.0).apply(proba)[0, 0] < 0.7 < Temperature(0.5).apply(proba)[0, 0]


def test_an_overconfident_model_is_softened_and_its_log_loss_falls():
    proba, y = _overconfident()
    fitted = fit_temperature(proba, y)
    assert 2.5 < fitted.temperature < 3.5  # the logits were tripled
    metric = get_metric("log_loss", "multiclass")
    temperature, record = calibrate(proba, y, metric)
    assert temperature is not None and record["method"] == "temperature"
    assert record["cv_log_loss_after"] < record["cv_log_loss_before"]
    assert metric.score(y, temperature.apply(proba)) < metric.score(y, proba)


def test_a_calibrated_model_keeps_its_probabilities():
    """A fitted temperature near 1 gains less than its noise: it is not kept."""
    temperature, record = calibrate(*_labelled(1.0), get_metric("log_loss", "multiclass"))
    assert temperature is None and "standard error" in record["reason"]
    assert abs(record["cv_log_loss_after"] - record["cv_log_loss_before"]) < 0.005


def test_no_temperature_for_a_metric_that_does_not_score_probabilities_or_too_few_rows():
    proba, y = _overconfident()
    temperature, record = calibrate(proba, y, get_metric("accuracy", "multiclass"))
    assert temperature is None and record["method"] == "none" and "accuracy" in record["reason"]
    temperature, record = calibrate(proba[:6], y[:6], get_metric("log_loss", "multiclass"))
    assert temperature is None and "too few" in record["reason"]


def test_a_fit_scored_by_log_loss_records_its_calibration_and_predicts_with_it(tmp_path):
    X, y = make_classification(n_samples=600, n_features=8, n_informative=5, n_classes=3, random_state=0)
    frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(8)]).assign(label=y)
    model = AutoML(target="label", metric="log_loss", time_budget_s=30, max_trials=4, models=["linear", "knn"],
                   verbose=False, output=str(tmp_path / "run")).fit(frame)
    record = model.summary_["calibration"]
    assert record["method"] in ("temperature", "none") and "cv_log_loss_before" in record
    predictor = model.predictor_
    raw = predictor.calibration
    predictor.calibration = None
    uncalibrated = predictor.predict_proba(frame).to_numpy()
    predictor.calibration = raw
    expected = raw.apply(uncalibrated) if raw is not None else uncalibrated
    assert np.allclose(predictor.predict_proba(frame).to_numpy(), expected)
    assert (record["method"] == "temperature") == (raw is not None)
