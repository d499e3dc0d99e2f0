"""The MLP family alone against LightGBM's defaults, on the shared datasets.

Both get the same prepared features (automl's schema: floats plus pandas
categoricals) and all the machine's cores; the MLP uses its portfolio default.
Prints test score and fit seconds per dataset, to show where the MLP pays.

    python benchmarks/mlp.py [--datasets ../shared/datasets] [--only wine_white]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import pandas as pd
from lightgbm import LGBMClassifier, LGBMRegressor

from automl.data import load_table, prepare_training
from automl.metrics import get_metric
from automl.models import get_family
from automl.prediction import predict_matrix

ROOT = Path(__file__).resolve().parents[1]


def prepared(datasets: Path, entry: dict) -> tuple:
    """A manifest entry as every model here sees it: automl's prepared training data, the
    test file's features and encoded labels, and the entry's metric."""
    data = prepare_training(load_table(datasets / entry["train"]), entry["target"], entry["task"])
    test = load_table(datasets / entry["test"])
    X_test, y_test = data.schema.transform(test), data.target.encode(test[entry["target"]])
    return data, X_test, y_test, get_metric(entry["metric"], data.task)


def fit_and_score(model, data, X_test, y_test, metric) -> tuple[float, float]:
    """Fit ``model`` on all of ``data``: its fit seconds and its test score, rounded."""
    started = time.perf_counter()
    model.fit(data.X, data.y)
    fit_s = round(time.perf_counter() - started, 2)
    return fit_s, round(metric.score(y_test, predict_matrix(model, X_test, data.task, data.target.n_classes)), 4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", type=Path, default=ROOT.parent / "shared" / "datasets")
    parser.add_argument("--only", nargs="*")
    parser.add_argument("--params", type=json.loads, default={},
                        help="JSON: changes to the MLP's default configuration, e.g. '{\"ensemble_size\": 1}'")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    mlp = get_family("mlp")
    rows = []
    for entry in json.loads((args.datasets / "manifest.json").read_text()):
        if args.only and entry["name"] not in args.only:
            continue
        data, X_test, y_test, metric = prepared(args.datasets, entry)
        lgbm = (LGBMRegressor if data.task == "regression" else LGBMClassifier)(verbose=-1, n_jobs=cores)
        row = {"dataset": entry["name"], "metric": metric.name, "rows": len(data.y)}
        for name, model in (("mlp", mlp.build({**mlp.default_params(data.task), **args.params}, data.task, cores, 0)),
                            ("lgbm", lgbm)):
            row[f"{name}_fit_s"], row[name] = fit_and_score(model, data, X_test, y_test, metric)
        better = row["mlp"] > row["lgbm"] if metric.higher_is_better else row["mlp"] < row["lgbm"]
        row["mlp_better"] = better
        rows.append(row)
        print(json.dumps(row), flush=True)
    print()
    print(pd.DataFrame(rows)[["dataset", "metric", "rows", "mlp", "lgbm", "mlp_better", "mlp_fit_s",
                              "lgbm_fit_s"]].to_string(index=False))


if __name__ == "__main__":
    main()
