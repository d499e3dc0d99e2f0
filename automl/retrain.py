"""``automl retrain``: a model's pipeline refit on new labelled data.

Without a search, the previous model's members (their families and configurations)
are cross-validated on the new rows as the only trials, then blended with the previous
weights and made as before (refit on all rows, or bagged), with the column kinds
re-read from the new data by the same rules. With ``search_s`` a short search follows
them, in a new study whose first trials are those configurations (a warm start), and
the ensemble is selected afresh.

Either way the new rows are split into training rows and a holdout (the previous
run's ``validation.test_size``, or HOLDOUT_SHARE), and the previous model and the new
one are both scored on that holdout: run.json's ``retrain`` and the report.
``only_if_drift`` first compares the new rows with the previous model's drift
reference and retrains only on a "drift" verdict (what a nightly job calls).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from automl.artifact import Predictor, load_predictor, model_folder
from automl.data import load_table
from automl.drift import compare, load_reference
from automl.errors import InputError
from automl.metrics import get_metric
from automl.prediction import BaggedModel
from automl.progress import Progress
from automl.spec import IN_MEMORY, build_spec

HOLDOUT_SHARE = 0.2
"""The share of the new rows held out to compare the models, where the previous run had no holdout."""


@dataclass(frozen=True)
class PriorModel:
    """What a previous model chose, for a retrain: its members' configurations, best first."""

    configs: list[tuple[str, dict[str, Any]]]
    """Each member's (family, configuration), by weight."""
    weights: list[float] | None
    """The members' weights, to blend them again; None: the ensemble is selected afresh (a search)."""
    refit: bool
    """Whether the previous members were each one model refit on all rows (else bagged fold models)."""
    predictor: Predictor
    source: str

    @classmethod
    def of(cls, predictor: Predictor, source: str, keep_weights: bool) -> PriorModel:
        members = sorted(predictor.members, key=lambda member: -member.weight)
        return cls([(m.family, dict(m.config or m.params)) for m in members],
                   [m.weight for m in members] if keep_weights else None,
                   not any(isinstance(m.estimator, BaggedModel) for m in members), predictor, source)


def retrain_spec(predictor: Predictor, train: str, output: Path, search_s: float | None):
    """The previous run's spec, on the new rows: ``train`` (a path, or IN_MEMORY), written
    to ``output``; only the previous members' families and configurations unless ``search_s``
    gives a search that long."""
    raw = copy.deepcopy(predictor.meta.get("spec"))
    if not raw:
        raise InputError("the model folder records no spec (not made by automl fit): it cannot be retrained")
    raw["data"] |= {"train": train, "test": None}
    raw["output"] = str(output)
    raw["validation"]["test_size"] = raw["validation"].get("test_size") or HOLDOUT_SHARE
    if search_s is None:
        raw["models"] |= {"include": sorted({m.family for m in predictor.members}), "exclude": []}
        raw["budget"]["max_trials"] = len(predictor.members)
    else:
        raw["budget"] |= {"time_s": search_s, "max_trials": None}
    return build_spec(raw)


def drift_verdict(model_dir: Path, frame: pd.DataFrame) -> str:
    return compare(load_reference(model_dir), frame)["verdict"]


def retrain(model_dir: str | Path, data: str | Path | pd.DataFrame, output: str | Path, search_s: float | None = None,
            only_if_drift: bool = False, overwrite: bool = False, progress: Progress | None = None,
            started: float | None = None):
    """Retrain the model in ``model_dir`` on ``data``; returns the new run's ``RunResult``, or
    the drift verdict (a str) when ``only_if_drift`` found no drift and nothing was done."""
    from automl.engine import run_fit

    if search_s is not None and search_s <= 0:
        raise InputError(f"--search-s must be a positive number of seconds; got {search_s:g}")
    predictor = load_predictor(model_dir)
    frame = load_table(data)
    if only_if_drift:
        verdict = drift_verdict(model_folder(model_dir), frame)
        if verdict != "drift":
            return verdict
    if predictor.target_name not in frame.columns:
        raise InputError(f"the new data has no target column '{predictor.target_name}': retraining needs labels")
    missing = [name for name in predictor.input_columns if name not in frame.columns]
    if missing:
        raise InputError(f"the new data lacks {len(missing)} column(s) the model uses: {', '.join(missing[:5])}")
    spec = retrain_spec(predictor, IN_MEMORY, Path(output), search_s)
    prior = PriorModel.of(predictor, str(model_dir), keep_weights=search_s is None)
    return run_fit(spec, frame, overwrite=overwrite, progress=progress, started=started, prior=prior)


def comparison(prior: PriorModel, holdout: pd.DataFrame, new_score: float, task: str) -> dict[str, Any]:
    """The previous model and the new one scored on the new data's holdout (run.json's ``retrain``)."""
    previous = prior.predictor
    metric = get_metric(previous.metric, task, previous.target.positive)
    known = set(previous.input_columns)
    try:
        y = previous.target.encode(holdout[previous.target_name])
    except InputError as unknown_class:  # the new rows have a class the previous model never saw
        previous_score, note = None, str(unknown_class)
    else:
        previous_score, note = metric.score(y, previous.predict_matrix(holdout[[c for c in holdout if c in known]])), ""
    return {"previous_model": prior.source, "metric": metric.name, "holdout_rows": len(holdout),
            "previous_score": previous_score, "new_score": new_score,
            "new_is_better": previous_score is None or bool(metric.is_better(new_score, previous_score)),
            **({"note": note} if note else {}),
            "search": "none: the previous members and weights" if prior.weights is not None
            else "a warm-started search", "configurations": len(prior.configs)}
