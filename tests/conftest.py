"""Shared fixtures: small datasets from scikit-learn written where a spec can read them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from sklearn import datasets

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def _frame(loader) -> pd.DataFrame:
    frame = loader(as_frame=True).frame
    frame.columns = [str(c).replace(" ", "_") for c in frame.columns]
    return frame


@pytest.fixture(scope="session")
def binary_frame() -> pd.DataFrame:
    return _frame(datasets.load_breast_cancer)


@pytest.fixture(scope="session")
def multiclass_frame() -> pd.DataFrame:
    frame = _frame(datasets.load_iris)
    frame["target"] = frame["target"].map({0: "setosa", 1: "versicolor", 2: "virginica"})
    return frame


@pytest.fixture(scope="session")
def regression_frame() -> pd.DataFrame:
    return _frame(lambda as_frame: datasets.load_diabetes(as_frame=as_frame, scaled=False))


def write_spec(folder: Path, frame: pd.DataFrame, **spec) -> Path:
    """Write ``frame`` as train.csv and a spec beside it; keys in ``spec`` override the defaults."""
    frame.to_csv(folder / "train.csv", index=False)
    raw = {"name": "t", "data": {"train": "train.csv", "target": "target"},
           "budget": {"time_s": 15}, "validation": {"folds": 3}, "output": "run",
           "hardware": {"cpus": 2}}
    for key, value in spec.items():
        if isinstance(value, dict):
            raw.setdefault(key, {}).update(value)
        else:
            raw[key] = value
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def automl_exe() -> str:
    """The installed ``automl`` console script."""
    return shutil.which("automl", path=str(Path(sys.executable).parent)) or shutil.which("automl")


def automl_cli(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    """Run the installed ``automl`` console script, as a user would."""
    return subprocess.run([automl_exe(), *map(str, args)], capture_output=True, text=True, timeout=timeout)


def automl_here(*args) -> int:
    """Run an ``automl`` command in this process (``automl_cli`` without a new interpreter to
    start): its exit status; what it prints is capsys's to read."""
    from automl.cli import run_command

    return run_command([str(arg) for arg in args])
