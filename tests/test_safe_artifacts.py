"""Atomic outputs and the model folder's manifest: a changed file is refused before anything is unpickled."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import joblib
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from automl import atomic
from automl.artifact import MANIFEST_FILE, MODEL_FILE, Member, Predictor, load_predictor, sha256_of
from automl.data import prepare_training
from automl.errors import InputError
from tests.conftest import automl_cli


@pytest.fixture()
def saved(tmp_path, binary_frame):
    data = prepare_training(binary_frame, "target", "binary")
    estimator = make_pipeline(StandardScaler(), LogisticRegression()).fit(data.X, data.y)
    predictor = Predictor(data.schema, data.target, "target", "roc_auc", [Member("linear_0", "linear", {}, 1.0,
                                                                                 estimator)])
    return predictor.save(tmp_path / "model", {"notes.json": json.dumps({"a": 1})})


def test_manifest_lists_every_file_and_an_intact_folder_loads(saved, binary_frame):
    manifest = json.loads((saved / MANIFEST_FILE).read_text())["sha256"]
    assert set(manifest) == {MODEL_FILE, "meta.json", "notes.json"}
    assert len(load_predictor(saved).predict(binary_frame)) == len(binary_frame)


def test_the_model_is_a_plain_pickle_and_a_folder_saved_by_joblib_still_loads(saved, binary_frame):
    with open(saved / MODEL_FILE, "rb") as handle:
        assert isinstance(pickle.load(handle), Predictor)  # what the C pickler reads: no joblib wrappers
    old = load_predictor(saved)
    joblib.dump(old, saved / MODEL_FILE)  # format 1, as saved before: rewritten with its manifest and meta
    meta = json.loads((saved / "meta.json").read_text())
    (saved / "meta.json").write_text(json.dumps({**meta, "format_version": 1}))
    manifest = {name: sha256_of(saved / name) for name in (MODEL_FILE, "meta.json", "notes.json")}
    (saved / MANIFEST_FILE).write_text(json.dumps({"sha256": manifest}))
    assert (load_predictor(saved).predict(binary_frame) == old.predict(binary_frame)).all()
    (saved / "meta.json").write_text(json.dumps({**meta, "format_version": 99}))
    manifest["meta.json"] = sha256_of(saved / "meta.json")
    (saved / MANIFEST_FILE).write_text(json.dumps({"sha256": manifest}))
    with pytest.raises(InputError, match="saved in model format 99; this automl reads formats 1, 2"):
        load_predictor(saved)


@pytest.mark.parametrize("name", [MODEL_FILE, "meta.json", "notes.json"])
def test_a_changed_file_is_refused(saved, name):
    with open(saved / name, "ab") as handle:
        handle.write(b" ")
    with pytest.raises(InputError, match=f"{name} was modified after the model was saved"):
        load_predictor(saved)


def test_a_swapped_pickle_is_never_unpickled(saved, tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    (saved / MODEL_FILE).write_bytes(pickle.dumps(Payload()))
    with pytest.raises(InputError, match="SHA-256 does not match"):
        load_predictor(saved)
    assert not marker.exists()


def test_missing_manifest_or_listed_file_is_refused(saved):
    (saved / "notes.json").unlink()
    with pytest.raises(InputError, match="notes.json is missing"):
        load_predictor(saved)
    (saved / MANIFEST_FILE).unlink()
    with pytest.raises(InputError, match="no manifest.json"):
        load_predictor(saved)


def test_cli_refuses_a_tampered_model_with_one_line(saved, tmp_path, binary_frame):
    binary_frame.to_csv(tmp_path / "rows.csv", index=False)
    with open(saved / MODEL_FILE, "ab") as handle:
        handle.write(b"\0")
    result = automl_cli("predict", saved, tmp_path / "rows.csv")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "was modified after the model was saved" in result.stderr


def test_saving_again_replaces_the_folder_whole(saved):
    before = set(os.listdir(saved))
    load_predictor(saved).save(saved)  # no notes.json this time
    assert set(os.listdir(saved)) == before - {"notes.json"}
    assert not [p for p in os.listdir(saved.parent) if atomic.STAGING_MARK in p or ".retired-" in p]


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "run.json"
    atomic.write_text(target, "old")
    with pytest.raises(RuntimeError), atomic.atomic_path(target) as staged:
        staged.write_text("half")
        raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["run.json"]


def test_atomic_folder_keeps_the_old_folder_when_filling_fails(tmp_path):
    folder = tmp_path / "model"
    with atomic.atomic_folder(folder) as staged:
        (staged / "a").write_text("1")
    with pytest.raises(RuntimeError), atomic.atomic_folder(folder) as staged:
        (staged / "b").write_text("2")
        raise RuntimeError("killed")
    assert os.listdir(folder) == ["a"] and os.listdir(tmp_path) == ["model"]


def test_leftovers_of_a_killed_writer_are_recognised(tmp_path):
    (tmp_path / f".run.json{atomic.STAGING_MARK}123").write_text("half")
    (tmp_path / f".model{atomic.STAGING_MARK}123").mkdir()
    (tmp_path / "run.json").write_text("{}")
    removed = atomic.remove_leftovers(tmp_path)
    assert len(removed) == 2 and os.listdir(tmp_path) == ["run.json"]



def test_a_model_that_cannot_be_unpickled_is_refused_with_the_reason(saved, monkeypatch):
    def missing_library(handle):
        raise ModuleNotFoundError("No module named 'torch'")

    monkeypatch.setattr("automl.artifact.pickle.load", missing_library)
    with pytest.raises(InputError, match="cannot load .*: ModuleNotFoundError: No module named 'torch'"):
        load_predictor(saved)


def test_a_saved_model_loads_and_predicts_without_the_search_code(saved, tmp_path, binary_frame):
    binary_frame.to_csv(tmp_path / "rows.csv", index=False)
    rows = str(tmp_path / "rows.csv")
    script = (f"import sys; from automl.artifact import load_predictor; import pandas as pd; "
              f"load_predictor({str(saved)!r}).predict(pd.read_csv({rows!r})); "
              "print(sorted(m for m in ('optuna', 'automl.search', 'automl.trial', 'ray') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
