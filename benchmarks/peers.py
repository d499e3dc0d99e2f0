"""Fit one peer AutoML system (FLAML or AutoGluon) on one dataset; write its test predictions.

Runs in the separate benchmark environment made by ``make bench-peers-install``
(.venv-peers), never in the project's: the peers are benchmark opponents, not
dependencies. ``quality.py`` calls it once per system and dataset and scores
every system's predictions with the same code.

    .venv-peers/bin/python benchmarks/peers.py SYSTEM TRAIN TEST TARGET TASK METRIC TIME_S OUT_DIR

Writes OUT_DIR/predictions.csv (one column per class label, or "prediction")
and prints {"fit_s": ..., "predict_s": ...} as JSON.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pandas as pd

FLAML_METRIC = {"roc_auc": "roc_auc", "log_loss": "log_loss", "rmse": "rmse"}
AUTOGLUON_METRIC = {"roc_auc": "roc_auc", "log_loss": "log_loss", "rmse": "root_mean_squared_error"}


def run_flaml(train, test, target, task, metric, time_s, out_dir):
    from flaml import AutoML

    model = AutoML()
    started = time.perf_counter()
    model.fit(train.drop(columns=[target]), train[target], task="regression" if task == "regression" else
              "classification", metric=FLAML_METRIC[metric], time_budget=time_s, n_jobs=2, verbose=0, seed=0)
    fit_s = time.perf_counter() - started
    started = time.perf_counter()
    X_test = test.drop(columns=[target])
    if task == "regression":
        predictions = pd.DataFrame({"prediction": model.predict(X_test)})
    else:
        predictions = pd.DataFrame(model.predict_proba(X_test), columns=[str(c) for c in model.classes_])
    return predictions, fit_s, time.perf_counter() - started


def run_autogluon(train, test, target, task, metric, time_s, out_dir):
    from autogluon.tabular import TabularPredictor

    model = TabularPredictor(label=target, problem_type=task, eval_metric=AUTOGLUON_METRIC[metric],
                             path=str(out_dir / "autogluon"), verbosity=0)
    started = time.perf_counter()
    model.fit(train, time_limit=time_s, presets="best_quality")
    fit_s = time.perf_counter() - started
    started = time.perf_counter()
    X_test = test.drop(columns=[target])
    if task == "regression":
        predictions = pd.DataFrame({"prediction": model.predict(X_test).to_numpy()})
    else:
        proba = model.predict_proba(X_test)
        predictions = pd.DataFrame(proba.to_numpy(), columns=[str(c) for c in proba.columns])
    return predictions, fit_s, time.perf_counter() - started


SYSTEMS = {"flaml": run_flaml, "autogluon": run_autogluon}


def main() -> None:
    system, train_path, test_path, target, task, metric, time_s, out_dir = sys.argv[1:9]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    train = pd.read_csv(train_path, skipinitialspace=True)
    test = pd.read_csv(test_path, skipinitialspace=True)
    predictions, fit_s, predict_s = SYSTEMS[system](train, test, target, task, metric, float(time_s), out_dir)
    predictions.to_csv(out_dir / "predictions.csv", index=False)
    print(json.dumps({"fit_s": fit_s, "predict_s": predict_s}))


if __name__ == "__main__":
    main()
