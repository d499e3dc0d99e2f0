"""Test-set quality of automl against LightGBM's defaults, on the shared datasets.

For each dataset in ``manifest.json``: ``automl fit`` runs as a user would run it
(a subprocess, wall-clock measured from outside, holdout scored on the dataset's
test file), then LightGBM with default parameters is fit and scored in this
process. Prints one table: test scores, fit seconds and their ratios.

    python benchmarks/quality.py --time-s 60 [--datasets ../shared/datasets] [--only adult]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml
from lightgbm import LGBMClassifier, LGBMRegressor
from sklearn import metrics as skm

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATASETS = ROOT.parent / "shared" / "datasets"
LOWER_IS_BETTER = {"log_loss", "rmse"}


def lightgbm_default(train: pd.DataFrame, test: pd.DataFrame, target: str, task: str, metric: str):
    """LightGBM with default parameters, text columns as pandas categoricals."""
    X, y = train.drop(columns=[target]), train[target]
    X_test, y_test = test.drop(columns=[target]), test[target]
    for column in X.columns:
        if not pd.api.types.is_numeric_dtype(X[column]):
            levels = pd.Categorical(X[column].astype(str)).categories
            X[column] = pd.Categorical(X[column].astype(str), categories=levels)
            X_test[column] = pd.Categorical(X_test[column].astype(str), categories=levels)
    model = LGBMRegressor(verbose=-1) if task == "regression" else LGBMClassifier(verbose=-1)
    started = time.perf_counter()
    model.fit(X, y)
    fit_s = time.perf_counter() - started
    if metric == "rmse":
        score = skm.root_mean_squared_error(y_test, model.predict(X_test))
    elif metric == "log_loss":
        score = skm.log_loss(y_test, model.predict_proba(X_test), labels=model.classes_)
    else:
        score = skm.roc_auc_score(y_test, model.predict_proba(X_test)[:, 1])
    return score, fit_s


def run_automl(entry: dict, datasets: Path, time_s: float, workdir: Path) -> tuple[float, float, dict]:
    spec = {"name": entry["name"],
            "data": {"train": str(datasets / entry["train"]), "test": str(datasets / entry["test"]),
                     "target": entry["target"]},
            "task": entry["task"], "metric": entry["metric"], "budget": {"time_s": time_s},
            "output": str(workdir / entry["name"])}
    spec_path = workdir / f"{entry['name']}.yaml"
    spec_path.write_text(yaml.safe_dump(spec))
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "automl", "fit", str(spec_path), "--quiet"], check=True,
                   stdout=subprocess.DEVNULL)
    wall_s = time.perf_counter() - started
    summary = json.loads((workdir / entry["name"] / "run.json").read_text())
    return summary["holdout"]["score"], wall_s, summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--time-s", type=float, default=60)
    parser.add_argument("--datasets", type=Path, default=DEFAULT_DATASETS)
    parser.add_argument("--only", nargs="*", help="dataset names to run (default: all)")
    args = parser.parse_args()
    manifest = json.loads((args.datasets / "manifest.json").read_text())
    rows = []
    with tempfile.TemporaryDirectory(prefix="automl-bench-") as tmp:
        for entry in manifest:
            if args.only and entry["name"] not in args.only:
                continue
            train = pd.read_csv(args.datasets / entry["train"], skipinitialspace=True)
            test = pd.read_csv(args.datasets / entry["test"], skipinitialspace=True)
            lgbm_score, lgbm_fit_s = lightgbm_default(train, test, entry["target"], entry["task"], entry["metric"])
            score, wall_s, summary = run_automl(entry, args.datasets, args.time_s, Path(tmp))
            lower = entry["metric"] in LOWER_IS_BETTER
            rows.append({
                "dataset": entry["name"], "metric": entry["metric"],
                "automl": round(score, 4), "lgbm_default": round(lgbm_score, 4),
                "automl_wins": (score <= lgbm_score) if lower else (score >= lgbm_score),
                "score_ratio": round(score / lgbm_score, 4),
                "automl_wall_s": round(wall_s, 1), "lgbm_fit_s": round(lgbm_fit_s, 2),
                "fit_time_ratio": round(wall_s / lgbm_fit_s, 1),
                "trials": summary["trials"]["total"], "best_model": summary["best_model"],
            })
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    print(f"\nbudget {args.time_s:g}s; score_ratio = automl / lgbm_default "
          f"(roc_auc: higher is better; log_loss, rmse: lower is better)")
    print(pd.DataFrame(rows).to_string(index=False))


if __name__ == "__main__":
    main()
