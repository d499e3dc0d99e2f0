"""What a run keeps on disk so that ``automl fit --resume`` can go on after it was
killed: every finished trial's outcome (out-of-fold predictions, fold scores, the
holdout prediction; fold models are left out, so a resumed run refits its final
members) in ``trials/``, next to the Optuna study in ``study.db``.

An outcome is written, atomically, before the study is told about its trial. So
a trial the study calls finished always has its outcome on disk, and a trial the
study still calls running either has one (the run died between the two writes:
it is finished now) or is run again (see ``Search._recover``).

The files are pickles read back only from the run's own output folder, by the
user who made it: the same trust as the study itself.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import joblib
import optuna
import pandas as pd

from automl import atomic
from automl.errors import InputError
from automl.spec import Spec
from automl.trial import TrialOutcome

TRIALS_DIR = "trials"
FINGERPRINT_ATTR = "fingerprint"
"""The study's user attribute naming the spec and data a run was made from."""
ELAPSED_ATTR = "elapsed_s"
"""The study's user attribute holding the seconds the run had spent at its last finished trial."""


class OutcomeStore:
    """Finished trials' outcomes, one file each, in ``folder``."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)

    def path(self, number: int) -> Path:
        return self.folder / f"trial_{number:05d}.joblib"

    def save(self, outcome: TrialOutcome) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        with atomic.atomic_path(self.path(outcome.number)) as staged:
            joblib.dump(replace(outcome, fold_models=None), staged)

    def load_all(self) -> dict[int, TrialOutcome]:
        if not self.folder.is_dir():
            return {}
        outcomes = {}
        for path in sorted(self.folder.glob("trial_*.joblib")):
            outcome = joblib.load(path)
            outcomes[outcome.number] = outcome
        return outcomes


def fingerprint(spec_dump: dict[str, Any], frame: pd.DataFrame, holdout: pd.DataFrame | None = None) -> str:
    """What makes two runs the same search: the spec (its budget, output and
    hardware aside: a resumed run may change those), the training data and the
    holdout's content (``data.test`` names a file whose rows may change)."""
    kept = {key: value for key, value in spec_dump.items() if key not in ("budget", "output", "hardware")}
    digest = hashlib.sha256(json.dumps(kept, sort_keys=True, default=str).encode())
    for table in (frame, holdout):
        if table is not None:
            digest.update(str(table.shape).encode())
            digest.update(pd.util.hash_pandas_object(table, index=False).to_numpy().tobytes())
    return digest.hexdigest()


def _study_names(spec: Spec) -> list[str]:
    """The studies in the output folder's study.db (none when there is no file)."""
    path = spec.output_dir / "study.db"
    return optuna.get_all_study_names(storage=storage_url(str(path))) if path.is_file() else []


def holds_study(spec: Spec) -> bool:
    """Whether the output folder's study.db holds this spec's study (a run killed while
    starting may leave the file without it)."""
    return spec.name in _study_names(spec)


def refuse_another_study(spec: Spec) -> None:
    """A resume must not start afresh over another run's study: a spec file renamed
    changes the run's name (its default), and starting would delete that run."""
    others = _study_names(spec)
    if others:
        raise InputError(f"{spec.output_dir} holds the run '{others[0]}', not '{spec.name}' (the spec's name, "
                         "by default its file's): resume it under that name, or start afresh with --overwrite")


def resumable_run(spec: Spec, expected_fingerprint: str) -> float:
    """Check the output folder holds a run of this spec and data to resume; returns
    the seconds it had spent (refuses, with InputError, anything else)."""
    study = optuna.load_study(study_name=spec.name, storage=storage_url(str(spec.output_dir / "study.db")))
    if study.user_attrs.get(FINGERPRINT_ATTR) not in (None, expected_fingerprint):
        raise InputError(f"the run in {spec.output_dir} was made from another spec or other data; "
                         "resume it with the same ones, or start afresh with --overwrite")
    return float(study.user_attrs.get(ELAPSED_ATTR, 0.0))


def storage_url(path: str) -> str:
    return f"sqlite:///{path}"
