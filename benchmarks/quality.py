"""Test-set quality at equal budget: automl against default models and peer AutoML systems.

Every system gets the same train and test files from ``../shared/datasets``
(manifest.json names target, task and metric) and the same wall-clock budget,
in one run, one system at a time on this machine:

- automl: ``automl fit`` as a user runs it (a subprocess, wall time measured
  from outside), then the saved model predicts the test file in this process;
- lgbm, hgb: LightGBM and scikit-learn's HistGradientBoosting with default
  parameters, fit in this process;
- flaml, autogluon: through ``benchmarks/peers.py`` in the separate benchmark
  environment (``make bench-peers-install``); left out, with a note, when it is absent.

All predictions are scored by the same function here. Prints the test score per
dataset and system, each system's mean rank (1 = best), and fit and predict
seconds against the budget.

    python benchmarks/quality.py --time-s 60 [--systems automl lgbm hgb flaml autogluon] [--only adult] [--keep DIR]
        [--set predict.refit_full=true]
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
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

from automl.artifact import load_predictor

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATASETS = ROOT.parent / "shared" / "datasets"
PEERS_PYTHON = ROOT / ".venv-peers" / "bin" / "python"
LOWER_IS_BETTER = {"log_loss", "rmse"}
SYSTEMS = ("automl", "flaml", "autogluon", "lgbm", "hgb")


def score(metric: str, y_true: pd.Series, predictions: pd.DataFrame) -> float:
    """The manifest's metric on a system's test predictions: one column per class label
    (probabilities) or a single column of values."""
    if metric == "rmse":
        return float(skm.root_mean_squared_error(y_true, predictions.iloc[:, 0]))
    labels = [str(c) for c in predictions.columns]
    y = y_true.astype(str)
    if metric == "log_loss":
        return float(skm.log_loss(y, predictions.to_numpy(), labels=labels))
    positive = labels[-1]  # AUC is the same whichever class is called positive
    return float(skm.roc_auc_score(y == positive, predictions[predictions.columns[-1]]))


def _as_categoricals(X: pd.DataFrame, X_test: pd.DataFrame) -> None:
    for column in X.columns:
        if not pd.api.types.is_numeric_dtype(X[column]):
            levels = pd.Categorical(X[column].astype(str)).categories
            X[column] = pd.Categorical(X[column].astype(str), categories=levels)
            X_test[column] = pd.Categorical(X_test[column].astype(str), categories=levels)


def run_default(system: str, train: pd.DataFrame, test: pd.DataFrame, entry: dict) -> dict:
    """LightGBM or HistGradientBoosting with default parameters, text columns as pandas categoricals."""
    target, task = entry["target"], entry["task"]
    X, y = train.drop(columns=[target]), train[target]
    X_test = test.drop(columns=[target])
    _as_categoricals(X, X_test)
    if system == "lgbm":
        model = LGBMRegressor(verbose=-1) if task == "regression" else LGBMClassifier(verbose=-1)
    else:
        model = HistGradientBoostingRegressor() if task == "regression" else HistGradientBoostingClassifier()
    started = time.perf_counter()
    model.fit(X, y)
    fit_s = time.perf_counter() - started
    started = time.perf_counter()
    if task == "regression":
        predictions = pd.DataFrame({"prediction": model.predict(X_test)})
    else:
        predictions = pd.DataFrame(model.predict_proba(X_test), columns=[str(c) for c in model.classes_])
    return {"predictions": predictions, "fit_s": fit_s, "predict_s": time.perf_counter() - started}


def run_automl(entry: dict, datasets: Path, time_s: float, workdir: Path, changes: tuple[str, ...] = ()) -> dict:
    spec = {"name": entry["name"],
            "data": {"train": str(datasets / entry["train"]), "target": entry["target"]},
            "task": entry["task"], "metric": entry["metric"], "budget": {"time_s": time_s},
            "output": str(workdir / entry["name"])}
    spec_path = workdir / f"{entry['name']}.yaml"
    spec_path.write_text(yaml.safe_dump(spec))
    automl = [sys.executable, "-m", "automl"]
    started = time.perf_counter()
    sets = [part for change in changes for part in ("--set", change)]
    subprocess.run([*automl, "fit", str(spec_path), "--quiet", "--overwrite", *sets], check=True,
                   stdout=subprocess.DEVNULL)
    fit_s = time.perf_counter() - started
    predictor = load_predictor(workdir / entry["name"])
    test = pd.read_csv(datasets / entry["test"], skipinitialspace=True)
    started = time.perf_counter()  # in this process, with the model loaded, as the peers are timed
    if entry["task"] == "regression":
        predictions = pd.DataFrame({"prediction": predictor.predict(test)})
    else:
        predictions = predictor.predict_proba(test)
    predict_s = time.perf_counter() - started
    summary = json.loads((workdir / entry["name"] / "run.json").read_text())
    mlp_trials = [t for t in summary["trial_log"] if t["family"] == "mlp"]
    return {"predictions": predictions, "fit_s": fit_s, "predict_s": predict_s,
            "best_model": summary["best_model"], "trials": summary["trials"]["total"],
            "mlp_trials": sum(t["status"] == "complete" for t in mlp_trials),
            "mlp_member": any(member.family == "mlp" for member in predictor.members)}


def run_peer(system: str, entry: dict, datasets: Path, time_s: float, workdir: Path) -> dict:
    out_dir = workdir / f"{system}-{entry['name']}"
    command = [str(PEERS_PYTHON), str(ROOT / "benchmarks" / "peers.py"), system, str(datasets / entry["train"]),
               str(datasets / entry["test"]), entry["target"], entry["task"], entry["metric"], str(time_s),
               str(out_dir)]
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    timings = json.loads(done.stdout.strip().splitlines()[-1])
    return {"predictions": pd.read_csv(out_dir / "predictions.csv"), **timings}


def mean_ranks(scores: pd.DataFrame, metrics: pd.Series) -> pd.Series:
    """Each system's rank per dataset (1 = best, ties share the better rank), averaged."""
    ranks = [row.rank(ascending=metrics[name] in LOWER_IS_BETTER, method="min") for name, row in scores.iterrows()]
    return pd.DataFrame(ranks).mean().sort_values()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--time-s", type=float, default=60)
    parser.add_argument("--datasets", type=Path, default=DEFAULT_DATASETS)
    parser.add_argument("--only", nargs="*", help="dataset names to run (default: all)")
    parser.add_argument("--systems", nargs="*", default=list(SYSTEMS), choices=SYSTEMS)
    parser.add_argument("--json", type=Path, help="also write every result here")
    parser.add_argument("--keep", type=Path, help="keep automl's runs in this folder (benchmarks/predict.py --runs)")
    parser.add_argument("--set", dest="changes", action="append", default=[], metavar="KEY.PATH=VALUE",
                        help="a change to automl's spec, as automl fit --set takes it (repeatable), "
                             "e.g. predict.refit_full=true")
    args = parser.parse_args()
    systems = list(args.systems)
    if {"flaml", "autogluon"} & set(systems) and not PEERS_PYTHON.exists():
        print(f"note: {PEERS_PYTHON} is missing (make bench-peers-install): flaml and autogluon left out",
              file=sys.stderr)
        systems = [s for s in systems if s not in ("flaml", "autogluon")]
    manifest = [e for e in json.loads((args.datasets / "manifest.json").read_text())
                if not args.only or e["name"] in args.only]
    results = []
    with tempfile.TemporaryDirectory(prefix="automl-bench-") as tmp:
        workdir = args.keep or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        for entry in manifest:
            train = pd.read_csv(args.datasets / entry["train"], skipinitialspace=True)
            test = pd.read_csv(args.datasets / entry["test"], skipinitialspace=True)
            for system in systems:
                if system == "automl":
                    result = run_automl(entry, args.datasets, args.time_s, workdir, tuple(args.changes))
                elif system in ("lgbm", "hgb"):
                    result = run_default(system, train, test, entry)
                else:
                    result = run_peer(system, entry, args.datasets, args.time_s, workdir)
                predictions = result.pop("predictions")
                results.append({"dataset": entry["name"], "metric": entry["metric"], "system": system,
                                "score": score(entry["metric"], test[entry["target"]], predictions),
                                **{k: round(v, 2) if isinstance(v, float) else v for k, v in result.items()}})
                print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    report(pd.DataFrame(results), systems, args.time_s)


def report(results: pd.DataFrame, systems: list[str], time_s: float) -> None:
    metrics = results.groupby("dataset")["metric"].first()
    scores = results.pivot(index="dataset", columns="system", values="score")[systems]
    print(f"\ntest score, budget {time_s:g}s (roc_auc: higher is better; log_loss, rmse: lower is better)")
    print(scores.assign(metric=metrics).round(4).to_string())
    print("\nmean rank (1 = best):")
    print(mean_ranks(scores, metrics).round(2).to_string())
    if "automl" in systems and "lgbm" in systems:
        lower = metrics.isin(LOWER_IS_BETTER)
        wins = (scores["automl"] < scores["lgbm"]).where(lower, scores["automl"] > scores["lgbm"])
        print(f"\nautoml beats lgbm defaults on {int(wins.sum())} of {len(wins)} datasets")
    if "mlp_member" in results:
        automl = results[results["system"] == "automl"].set_index("dataset")
        print(f"\nthe MLP is in automl's final model on {int(automl['mlp_member'].sum())} of {len(automl)} datasets "
              f"({', '.join(automl.index[automl['mlp_member'].astype(bool)]) or 'none'}); MLP trials completed: "
              + ", ".join(f"{name} {int(n)}" for name, n in automl["mlp_trials"].items()))
    print(f"\nfit seconds (budget {time_s:g}s) and predict seconds on the test file:")
    timing = results.pivot(index="dataset", columns="system", values=["fit_s", "predict_s"])
    print(timing.round(2).to_string())


if __name__ == "__main__":
    main()
