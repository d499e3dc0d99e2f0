"""Prediction speed and size: automl's saved models against a default LightGBM.

For each shared dataset (``../shared/datasets/manifest.json``), a ``budget.time_s`` fit
(60 s unless ``--time-s``) as a user runs it, or the run already in ``--runs DIR/NAME``
(``benchmarks/quality.py --keep DIR`` leaves them there). The model is loaded as
``AutoML.load`` would, then timed in this process on the test split:

- batch: the whole test split in one call (best of three), as rows per second;
- single row: 200 calls of one row each, p50 and p99 in milliseconds;
- the model folder's size, and the test score.

A default ``LGBMClassifier`` / ``LGBMRegressor`` fitted on the same training rows gets
the same timings; its size is its pickle's. The issue's bars for adult are printed
beside its figures.

``--rows N`` instead checks ``automl predict`` on an N-row file (CSV and Parquet) of
generated data, fitted on a sample: wall time and peak memory of the command.

``--max-ms-per-row X`` instead fits each dataset twice, with no inference budget and
with ``predict.max_ms_per_row: X``, and measures the model shipped within the budget as
the budget counts: its batch time a row on the test split, on one core. It prints that
against the budget, and the score lost: on the test split, and the CV score the fit
recorded (run.json's ``inference``).

    python benchmarks/predict.py [--runs DIR] [--time-s 60] [--only adult]
    python benchmarks/predict.py --rows 1000000
    python benchmarks/predict.py --max-ms-per-row 0.01 [--only adult diamonds]
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from lightgbm import LGBMClassifier, LGBMRegressor
from quality import DEFAULT_DATASETS, _as_categoricals, score  # benchmarks/quality.py
from scale import PeakMemory, make_table  # benchmarks/scale.py

from automl.artifact import load_predictor

AUTOML = [sys.executable, "-m", "automl"]
SINGLE_CALLS = 200
ADULT_BARS = {"batch_s": 0.4, "p50_ms": 10.0, "folder_mb": 5.0}
"""Issue "Models worth deploying": adult's test split in <= 0.4 s, one row in <= 10 ms
(p50), a model folder of <= 5 MB with the default settings."""
MAX_PREDICT_RSS_GB = 1.0


def fit_run(entry: dict, datasets: Path, time_s: float, runs: Path, predict: dict | None = None) -> Path:
    """The run folder for ``entry``: the one already there, or a new fit (with ``predict`` as the spec's section)."""
    run = runs / entry["name"]
    if (run / "run.json").is_file():
        return run
    runs.mkdir(parents=True, exist_ok=True)
    spec = {"name": entry["name"], "data": {"train": str(datasets / entry["train"]), "target": entry["target"]},
            "task": entry["task"], "metric": entry["metric"], "budget": {"time_s": time_s}, "output": str(run),
            "predict": predict or {}}
    spec_path = runs / f"{entry['name']}.yaml"
    spec_path.write_text(yaml.safe_dump(spec))
    subprocess.run([*AUTOML, "fit", str(spec_path), "--quiet", "--overwrite"], check=True, stdout=subprocess.DEVNULL)
    return run


def timings(predict: Callable[[pd.DataFrame], pd.DataFrame], test: pd.DataFrame) -> dict:
    """Batch seconds (best of three) and rows per second; single-row p50 and p99 (ms)."""
    predict(test.head(5))  # first-call costs (imports, thread pools) are not a row's
    batch_s = min(_seconds(predict, test) for _ in range(3))
    single = [_seconds(predict, test.iloc[[i % len(test)]]) for i in range(SINGLE_CALLS)]
    return {"batch_s": batch_s, "rows_per_s": len(test) / batch_s,
            "p50_ms": 1000 * float(np.median(single)), "p99_ms": 1000 * float(np.quantile(single, 0.99))}


def _seconds(predict: Callable, rows: pd.DataFrame) -> float:
    started = time.perf_counter()
    predict(rows)
    return time.perf_counter() - started


def automl_figures(run: Path, entry: dict, test: pd.DataFrame) -> dict:
    predictor = load_predictor(run)
    X = test.drop(columns=[entry["target"]])
    if entry["task"] == "regression":
        def predict(rows):
            return pd.DataFrame({"prediction": predictor.predict(rows)})
    else:
        predict = predictor.predict_proba
    folder = run / "model"
    return {"score": score(entry["metric"], test[entry["target"]], predict(X)), **timings(predict, X),
            "folder_mb": sum(p.stat().st_size for p in folder.iterdir()) / 2**20,
            "members": len(predictor.members)}


def lightgbm_figures(entry: dict, train: pd.DataFrame, test: pd.DataFrame) -> dict:
    target = entry["target"]
    X, y, X_test = train.drop(columns=[target]), train[target], test.drop(columns=[target])
    _as_categoricals(X, X_test)
    if entry["task"] == "regression":
        model = LGBMRegressor(verbose=-1).fit(X, y)

        def predict(rows):
            return pd.DataFrame({"prediction": model.predict(rows)})
    else:
        model = LGBMClassifier(verbose=-1).fit(X, y)

        def predict(rows):
            return pd.DataFrame(model.predict_proba(rows), columns=[str(c) for c in model.classes_])
    return {"score": score(entry["metric"], test[target], predict(X_test)), **timings(predict, X_test),
            "folder_mb": len(pickle.dumps(model)) / 2**20, "members": 1}


def shared_datasets(args: argparse.Namespace) -> None:
    manifest = [e for e in json.loads((args.datasets / "manifest.json").read_text())
                if not args.only or e["name"] in args.only]
    runs = args.runs or Path(tempfile.mkdtemp(prefix="automl-predict-"))
    runs.mkdir(parents=True, exist_ok=True)
    print(f"{'dataset':<13} {'system':<7} {'score':>9} {'batch_s':>8} {'rows/s':>9} {'p50_ms':>7} {'p99_ms':>7} "
          f"{'MB':>6} {'members':>7}")
    for entry in manifest:
        train = pd.read_csv(args.datasets / entry["train"], skipinitialspace=True)
        test = pd.read_csv(args.datasets / entry["test"], skipinitialspace=True)
        run = fit_run(entry, args.datasets, args.time_s, runs)
        for system, figures in (("automl", automl_figures(run, entry, test)),
                                ("lgbm", lightgbm_figures(entry, train, test))):
            print(f"{entry['name']:<13} {system:<7} {figures['score']:>9.4f} {figures['batch_s']:>8.3f} "
                  f"{figures['rows_per_s']:>9.0f} {figures['p50_ms']:>7.1f} {figures['p99_ms']:>7.1f} "
                  f"{figures['folder_mb']:>6.2f} {figures['members']:>7}", flush=True)
            if system == "automl" and entry["name"] == "adult":
                over = [f"{key} {figures[key]:.3g} > {bar}" for key, bar in ADULT_BARS.items() if figures[key] > bar]
                print(f"{'':<13} adult bars: {'; '.join(over) if over else 'all hold'}")


def one_core_ms_per_row(run: Path, entry: dict, test: pd.DataFrame) -> float:
    """The model's batch time a row on the test split (best of three), pinned to one core."""
    predictor = load_predictor(run)
    X = test.drop(columns=[entry["target"]])
    cores = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(cores)})
    try:
        predictor.predict_matrix(X.head(5))
        return 1000 * min(_seconds(predictor.predict_matrix, X) for _ in range(3)) / len(X)
    finally:
        os.sched_setaffinity(0, cores)


def budget_check(args: argparse.Namespace) -> None:
    """Each dataset fitted with no inference budget and with ``--max-ms-per-row``: the
    budgeted model's one-core cost against the budget, and the score it lost."""
    manifest = [e for e in json.loads((args.datasets / "manifest.json").read_text())
                if not args.only or e["name"] in args.only]
    runs = args.runs or Path(tempfile.mkdtemp(prefix="automl-budget-"))
    limit = args.max_ms_per_row
    print(f"{'dataset':<13} {'budget':>7} {'ms/row':>8} {'holds':>5} {'test':>9} {'unlimited':>9} {'lost':>8} "
          f"{'cv lost':>8} final model")
    for entry in manifest:
        test = pd.read_csv(args.datasets / entry["test"], skipinitialspace=True)
        unlimited = fit_run(entry, args.datasets, args.time_s, runs / "unlimited", {"max_ms_per_row": None})
        within = fit_run(entry, args.datasets, args.time_s, runs / f"within-{limit:g}", {"max_ms_per_row": limit})
        scores = {}
        for name, run in (("unlimited", unlimited), ("within", within)):
            predictor = load_predictor(run)
            X = test.drop(columns=[entry["target"]])
            prediction = (pd.DataFrame({"prediction": predictor.predict(X)}) if entry["task"] == "regression"
                          else predictor.predict_proba(X))
            scores[name] = score(entry["metric"], test[entry["target"]], prediction)
        ms = one_core_ms_per_row(within, entry, test)
        summary = json.loads((within / "run.json").read_text())
        cv_lost = summary["inference"].get("cv_score_lost", 0.0)
        lost = (scores["unlimited"] - scores["within"]) * (1 if summary["higher_is_better"] else -1)
        print(f"{entry['name']:<13} {limit:>7.4g} {ms:>8.4f} {'yes' if ms <= limit else 'NO':>5} "
              f"{scores['within']:>9.4f} {scores['unlimited']:>9.4f} {lost:>8.4f} "
              f"{cv_lost:>8.4f} {summary['final_model']}: {summary['ensemble']}", flush=True)


def large_file(rows: int, folder: Path) -> None:
    """``automl predict`` on an N-row file: wall seconds and peak memory (summed RSS)."""
    table = make_table("binary", rows + 20_000, seed=1)
    train_path = folder / "train.parquet"
    table.iloc[:20_000].to_parquet(train_path)
    spec = {"name": "large", "data": {"train": str(train_path), "target": "target"}, "task": "binary",
            "metric": "roc_auc", "budget": {"time_s": 30}, "output": str(folder / "run")}
    (folder / "spec.yaml").write_text(yaml.safe_dump(spec))
    subprocess.run([*AUTOML, "fit", str(folder / "spec.yaml"), "--quiet", "--overwrite"], check=True,
                   stdout=subprocess.DEVNULL)
    features = table.iloc[20_000:].drop(columns=["target"]).reset_index(drop=True)
    features.insert(0, "id", np.arange(rows))
    for name, write in (("csv", features.to_csv), ("parquet", features.to_parquet)):
        path = folder / f"new.{name}"
        write(path, index=False)
        out = folder / f"predictions-{name}.csv"
        started = time.perf_counter()
        process = subprocess.Popen([*AUTOML, "predict", str(folder / "run"), str(path), "--proba", "--id", "id",
                                    "-o", str(out)], stderr=subprocess.PIPE, text=True)
        memory = PeakMemory(process.pid)
        _, stderr = process.communicate()
        wall_s = time.perf_counter() - started
        peak_gb, _ = memory.stop()
        if process.returncode != 0:
            print(f"{name}: automl predict failed: {stderr.strip().splitlines()[-1:]}")
            continue
        ids = pd.read_csv(out, usecols=["id"])["id"].to_numpy()
        in_order = len(ids) == rows and bool((ids == np.arange(rows)).all())
        verdict = "holds" if peak_gb <= MAX_PREDICT_RSS_GB and in_order else "FAILS"
        print(f"{rows:,} rows from {name}: {wall_s:.1f} s ({rows / wall_s:,.0f} rows/s), peak RSS {peak_gb:.2f} GB, "
              f"rows in input order: {in_order} / {verdict}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", type=Path, default=DEFAULT_DATASETS)
    parser.add_argument("--only", nargs="*", help="dataset names (default: all)")
    parser.add_argument("--time-s", type=float, default=60)
    parser.add_argument("--runs", type=Path, help="run folders to reuse (one per dataset name), or to fit into")
    parser.add_argument("--rows", type=int, help="check automl predict on a generated file of this many rows")
    parser.add_argument("--max-ms-per-row", type=float, help="check the inference budget at this many ms a row")
    args = parser.parse_args()
    if args.max_ms_per_row:
        budget_check(args)
    elif args.rows:
        with tempfile.TemporaryDirectory(prefix="automl-predict-") as tmp:
            large_file(args.rows, Path(tmp))
    else:
        shared_datasets(args)


if __name__ == "__main__":
    main()
