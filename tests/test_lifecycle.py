"""The steps around the search, on one real fit: profile acted on, holdout scores per
leaderboard row, evaluate, drift, fairness, the report (opened in a real browser) and init."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from automl import AutoML
from automl.assess import gap_warnings
from automl.metrics import get_metric
from automl.report import SECTIONS
from automl.spec import load_spec
from tests.conftest import automl_cli, write_spec

PLANTED_DUPLICATES = 15


@pytest.fixture(scope="module")
def train(binary_frame) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    few_features = binary_frame[[*binary_frame.columns[:12], "target"]]  # so importance fits the budget
    frame = few_features.assign(group=rng.choice(["A", "B"], len(binary_frame)), constant=1)
    return pd.concat([frame, frame.iloc[:PLANTED_DUPLICATES]], ignore_index=True)


@pytest.fixture(scope="module")
def run(tmp_path_factory, train):
    folder = tmp_path_factory.mktemp("lifecycle")
    spec = write_spec(folder, train, data={"sensitive": ["group"], "deduplicate": True},
                      validation={"folds": 3, "test_size": 0.25}, budget={"time_s": 30, "max_trials": 8},
                      models={"include": ["linear", "lightgbm", "random_forest"]})
    fitted = automl_cli("fit", spec, "--quiet", timeout=240)
    assert fitted.returncode == 0, fitted.stderr
    return folder / "run"


@pytest.fixture(scope="module")
def summary(run) -> dict:
    return json.loads((run / "run.json").read_text())


def test_profile_is_stored_and_acted_on(summary, train):
    profile = summary["profile"]
    assert profile["duplicate_rows"] == PLANTED_DUPLICATES
    assert summary["deduplicated_rows"] == PLANTED_DUPLICATES
    assert summary["columns"]["constant"] == "constant"  # dropped from the features
    assert f"{PLANTED_DUPLICATES} exact duplicate rows (2.6%); dropped (data.deduplicate)" in summary["warnings"]
    assert profile["rows"] == len(train)
    assert summary["rows"] + summary["holdout"]["rows"] == len(train) - PLANTED_DUPLICATES


def test_leaderboard_shows_train_cv_and_holdout_side_by_side(run, summary):
    board = pd.read_csv(run / "leaderboard.csv")
    assert list(board.columns[:6]) == ["rank", "model", "family", "train_score", "cv_score", "holdout_score"]
    assert board["holdout_score"].notna().all() and board["holdout_score"].between(0.5, 1).all()
    trials = board[board["model"] != "ensemble"]
    assert trials["train_score"].notna().all()
    assert (trials["train_score"] >= trials["cv_score"] - 0.05).all()  # in-sample is not worse than CV
    holdout = summary["holdout"]
    assert holdout["metric"] == "roc_auc" and 0.9 < holdout["score"] <= 1
    assert np.sum(holdout["confusion_matrix"]["matrix"]) == holdout["rows"]
    best = board.iloc[0]
    expected = gap_warnings(best["model"], float(best["train_score"]), float(best["cv_score"]),
                            float(best["cv_std"]), holdout["score"], get_metric("roc_auc", "binary"))
    assert summary["large_gap"] == bool(expected) and set(expected) <= set(summary["warnings"])


def test_evaluate_returns_the_documented_keys(run, train, tmp_path):
    train.to_csv(tmp_path / "labelled.csv", index=False)
    result = automl_cli("evaluate", run, tmp_path / "labelled.csv")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["metric"] == "roc_auc" and report["rows"] == len(train)
    assert {"accuracy", "balanced_accuracy", "f1", "roc_auc", "log_loss"} <= set(report["scores"])
    assert report["score"] == report["scores"]["roc_auc"]
    matrix = np.array(report["confusion_matrix"]["matrix"])
    assert matrix.shape == (2, 2) and matrix.sum() == len(train)
    assert report["confusion_matrix"]["labels"] == ["0", "1"]
    unlabelled = train.drop(columns=["target"])
    unlabelled.to_csv(tmp_path / "unlabelled.csv", index=False)
    refused = automl_cli("evaluate", run, tmp_path / "unlabelled.csv")
    assert refused.returncode == 2 and "no target column 'target'" in refused.stderr


def test_evaluate_regression_keys(regression_frame):
    model = AutoML({"validation": {"folds": 3}}, target="target", time_budget_s=10, models=["linear"])
    model.fit(regression_frame)
    from automl.evaluate import evaluate

    report = evaluate(model.predictor_, regression_frame)
    assert set(report["scores"]) == {"rmse", "mae", "r2"} and "confusion_matrix" not in report


def test_drift_command(run, train, tmp_path):
    train.sample(400, random_state=1).to_csv(tmp_path / "same.csv", index=False)
    same = automl_cli("drift", run, tmp_path / "same.csv", "--json", "--fail-on-drift")
    assert same.returncode == 0, same.stderr
    assert json.loads(same.stdout)["verdict"] == "no drift"
    shifted = train.sample(400, random_state=2).assign(mean_radius=lambda f: f["mean_radius"] * 1.5)
    shifted.to_csv(tmp_path / "shifted.csv", index=False)
    flagged = automl_cli("drift", run, tmp_path / "shifted.csv", "--fail-on-drift")
    assert flagged.returncode == 3
    assert "verdict: drift" in flagged.stdout and "mean_radius" in flagged.stdout


def test_fairness_table_in_run_json(summary):
    fairness = summary["fairness"]
    assert fairness["source"] == "holdout" and fairness["metric"] == "roc_auc"
    groups = fairness["columns"]["group"]["groups"]
    assert set(groups) == {"A", "B"}
    assert groups["A"]["rows"] + groups["B"]["rows"] == summary["holdout"]["rows"]
    gap = abs(groups["A"]["selection_rate"] - groups["B"]["selection_rate"])
    assert fairness["columns"]["group"]["demographic_parity_difference"] == pytest.approx(gap)


def test_report_has_every_section(run, summary):
    page = (run / "report.html").read_text()
    for key in SECTIONS:
        assert f'<section id="{key}">' in page
    assert page.count('<img src="data:image/png;base64,') == 4  # history, importance, ROC, confusion matrix
    assert "demographic_parity_difference" in page
    assert html.escape(summary["validation"]["reason"]) in page  # how the run validated, and why
    assert html.escape(summary["plan"]["cpus_per_trial_reason"]) in page
    assert summary["feature_importance"]["source"] == "holdout"
    assert len(summary["feature_importance"]["features"]) == len(
        [k for k in summary["columns"].values() if k not in ("constant", "id-like", "text")])


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
PROBE = """<script>window.addEventListener("load", () => { document.title = JSON.stringify({
  sections: [...document.querySelectorAll("section h2")].map(h => h.textContent),
  images: [...document.images].map(i => [i.alt, i.complete && i.naturalWidth > 0])}); });</script>"""


@pytest.mark.skipif(CHROMIUM is None, reason="no headless Chromium: Debian's 'chromium' package is not installed "
                                             "(`make install` adds it where apt-get may)")
def test_report_opens_in_headless_chromium(run, tmp_path):
    probe = tmp_path / "probe.html"
    probe.write_text((run / "report.html").read_text().replace("</body>", PROBE + "</body>"))
    shown = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=10000",
                            "--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr[-500:]
    found = json.loads(html.unescape(re.search(r"<title>(.*?)</title>", shown.stdout, re.S).group(1)))
    assert found["sections"] == list(SECTIONS.values())
    assert [alt for alt, _ in found["images"]] == ["optimisation history", "feature importance", "ROC curve",
                                                   "confusion matrix"]
    assert all(loaded for _, loaded in found["images"]), found["images"]


def test_init_writes_a_commented_spec_that_loads(train, tmp_path):
    train.to_csv(tmp_path / "data.csv", index=False)
    result = automl_cli("init", tmp_path / "data.csv", "--target", "target")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("\n#") + result.stdout.count("  #") >= 10  # it explains itself
    (tmp_path / "spec.yaml").write_text(result.stdout)
    spec = load_spec(tmp_path / "spec.yaml")
    assert (spec.data.target, spec.task, spec.metric) == ("target", "binary", "roc_auc")
    assert spec.data.train == str(tmp_path / "data.csv")


def test_the_plotting_library_is_left_out_of_the_engines_imports():
    """A fit imports matplotlib in the background once its search runs (0.6 s off the data
    loading's path); the engine itself must not pull it in."""
    script = "import sys, automl.engine; print('matplotlib' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
