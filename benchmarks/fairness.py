"""Bias mitigation on adult: ``fairness.mitigate`` against the same model unmitigated.

One ``budget.time_s`` fit (60 s unless ``--time-s``) of the shared adult training split
with ``data.sensitive: [sex]`` and ``fairness.mitigate`` (``demographic_parity`` unless
``--mitigate``), the test split as its holdout. The model is loaded as ``AutoML.load``
would and predicts the test split twice: as shipped (mitigated), and with its mitigation
taken off (the same members and calibration). For each: fairlearn's own
``demographic_parity_difference`` and ``equalized_odds_difference`` by sex, accuracy
and AUC. The issue's bar: the demographic-parity difference falls by at least half.

    python benchmarks/fairness.py [--time-s 60] [--mitigate demographic_parity] [--run DIR]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from fairlearn.metrics import demographic_parity_difference, equalized_odds_difference
from quality import DEFAULT_DATASETS  # benchmarks/quality.py
from sklearn.metrics import accuracy_score, roc_auc_score

from automl.artifact import load_predictor

SENSITIVE = "sex"


def fit(datasets: Path, entry: dict, run: Path, time_s: float, mitigate: str) -> None:
    if (run / "run.json").is_file():
        return
    spec = {"name": "adult-fair", "task": entry["task"], "metric": entry["metric"], "budget": {"time_s": time_s},
            "data": {"train": str(datasets / entry["train"]), "test": str(datasets / entry["test"]),
                     "target": entry["target"], "sensitive": [SENSITIVE]},
            "fairness": {"mitigate": mitigate}, "output": str(run)}
    spec_path = run.parent / "adult-fair.yaml"
    spec_path.write_text(yaml.safe_dump(spec))
    subprocess.run([sys.executable, "-m", "automl", "fit", str(spec_path), "--quiet", "--overwrite"], check=True,
                   stdout=subprocess.DEVNULL)


def figures(predictor, test: pd.DataFrame, target: str) -> dict[str, float]:
    proba = predictor.predict_proba(test.drop(columns=[target]))
    positive = predictor.class_names[1]
    labels = (np.argmax(proba.to_numpy(), axis=1) == 1).astype(int)
    y = (test[target].astype(str) == positive).astype(int)
    groups = test[SENSITIVE]
    return {"demographic_parity_difference": demographic_parity_difference(y, labels, sensitive_features=groups),
            "equalized_odds_difference": equalized_odds_difference(y, labels, sensitive_features=groups),
            "accuracy": accuracy_score(y, labels), "roc_auc": roc_auc_score(y, proba[positive])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", type=Path, default=DEFAULT_DATASETS)
    parser.add_argument("--time-s", type=float, default=60)
    parser.add_argument("--mitigate", default="demographic_parity", choices=["demographic_parity", "equalized_odds"])
    parser.add_argument("--run", type=Path, help="the run folder to reuse, or to fit into")
    args = parser.parse_args()
    entry = next(e for e in json.loads((args.datasets / "manifest.json").read_text()) if e["name"] == "adult")
    run = args.run or Path(tempfile.mkdtemp(prefix="automl-fairness-")) / "run"
    run.parent.mkdir(parents=True, exist_ok=True)
    fit(args.datasets, entry, run, args.time_s, args.mitigate)
    test = pd.read_csv(args.datasets / entry["test"], skipinitialspace=True)
    mitigated = load_predictor(run)
    results = {"unmitigated": figures(replace(mitigated, mitigation=None), test, entry["target"]),
               f"{args.mitigate}": figures(mitigated, test, entry["target"])}
    print(f"adult test split ({len(test):,} rows), sensitive: {SENSITIVE}, run {run}")
    print(f"{'model':<20} {'DP diff':>8} {'EO diff':>8} {'accuracy':>9} {'AUC':>7}")
    for name, values in results.items():
        print(f"{name:<20} {values['demographic_parity_difference']:>8.4f} {values['equalized_odds_difference']:>8.4f} "
              f"{values['accuracy']:>9.4f} {values['roc_auc']:>7.4f}")
    before, after = (results[k]["demographic_parity_difference"] for k in ("unmitigated", args.mitigate))
    verdict = "holds" if after <= before / 2 else "FAILS"
    cost = {key: results["unmitigated"][key] - results[args.mitigate][key] for key in ("accuracy", "roc_auc")}
    print(f"demographic-parity difference {before:.4f} -> {after:.4f} ({after / before:.0%} of before; bar: at "
          f"most half): {verdict}; accuracy cost {cost['accuracy']:.4f}, AUC cost {cost['roc_auc']:.4f}")


if __name__ == "__main__":
    main()
