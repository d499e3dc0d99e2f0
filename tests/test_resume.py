"""A run survives being killed: SIGKILL at a random moment, then --resume keeps every
finished trial and completes; Ctrl-C stops cleanly with the best model so far written."""

from __future__ import annotations

import glob
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import optuna
import psutil
import pytest

from automl import AutoML
from automl.checkpoint import FINGERPRINT_ATTR, fingerprint
from automl.cli import run_command
from automl.folder_lock import LOCK_FILE
from automl.spec import load_spec
from tests.conftest import automl_cli, automl_exe, write_spec


def _finished_trials(study: str) -> dict[int, str]:
    """Trial number -> state of the trials the study holds as finished (complete or pruned)."""
    try:  # read-only: connecting must not create the file, which the fit would take for a run's
        with sqlite3.connect(f"file:{study}?mode=ro", uri=True) as db:
            rows = db.execute("select number, state from trials where state in ('COMPLETE', 'PRUNED')").fetchall()
    except sqlite3.OperationalError:  # not created yet
        return {}
    return dict(rows)


def _start_fit(spec, *options: str) -> subprocess.Popen:
    """``automl fit`` in its own process group, as a shell would start it: with Ctrl-C's
    default action, even where the tests themselves were started in the background of a
    non-interactive shell, which ignores SIGINT (a child would inherit that)."""
    return subprocess.Popen([automl_exe(), "fit", str(spec), "--quiet", *options], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _wait_for_trials(process: subprocess.Popen, study: str, n: int, timeout: float = 90) -> dict[int, str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        finished = _finished_trials(study)
        if len(finished) >= n:
            return finished
        time.sleep(0.2)
    pytest.fail(f"the fit did not finish {n} trials in time (exit {process.poll()})")


def _nothing_left(temp_dirs_before: set[str]) -> bool:
    """No Ray process or local worker of a run is left, and no Ray folder but those there before
    (this process's own spare zygote, kept from its in-process fits, is not a run's)."""
    ours = {child.pid for child in psutil.Process().children(recursive=True)}
    for pattern in ("automl-ray-", "automl.execution._zygote"):
        found = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout.split()
        if {int(pid) for pid in found} - ours:
            return False
    return set(glob.glob("/tmp/automl-ray-*")) <= temp_dirs_before


@pytest.fixture()
def spec(tmp_path, binary_frame):
    return write_spec(tmp_path, binary_frame, budget={"time_s": 40}, models={"include": ["linear", "lightgbm"]})


@pytest.mark.parametrize("backend", ["local", "ray"])
def test_resume_after_sigkill_keeps_every_finished_trial(tmp_path, binary_frame, backend):
    spec = write_spec(tmp_path, binary_frame, budget={"time_s": 40, "max_trials": 5},  # the resumed run stops
                      models={"include": ["linear", "lightgbm"]}, hardware={"backend": backend})  # at 5, not 40 s
    study = str(tmp_path / "run" / "study.db")
    temp_dirs = set(glob.glob("/tmp/automl-ray-*"))
    process = _start_fit(spec)
    _wait_for_trials(process, study, 2)
    os.killpg(process.pid, signal.SIGKILL)  # the driver and the processes it started
    process.wait()
    before = _finished_trials(study)  # what had finished by the kill
    resumed = automl_cli("fit", spec, "--resume", "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads((tmp_path / "run" / "run.json").read_text())
    assert summary["resumed"] is True
    after = {t["trial"]: t["status"].upper() for t in summary["trial_log"]}
    assert {n: after.get(n) for n in before} == before  # none lost, none run again
    model = AutoML.load(tmp_path / "run")
    assert len(model.predict(binary_frame)) == len(binary_frame)
    assert _nothing_left(temp_dirs)  # the killed run's Ray folder was removed by the resumed one


def test_ctrl_c_stops_cleanly_with_the_best_model_so_far(spec, tmp_path, binary_frame):
    study = str(tmp_path / "run" / "study.db")
    temp_dirs = set(glob.glob("/tmp/automl-ray-*"))
    process = _start_fit(spec, "--resume")  # nothing to resume yet: it starts the run
    _wait_for_trials(process, study, 2)
    started = time.monotonic()
    os.killpg(process.pid, signal.SIGINT)  # Ctrl-C reaches the whole foreground group
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert time.monotonic() - started < 20  # it stopped, it did not run out its 40 s budget
    assert "interrupted: the best model so far is in" in err
    summary = json.loads((tmp_path / "run" / "run.json").read_text())
    assert summary["interrupted"] is True and summary["trials"]["complete"] >= 1
    assert len(AutoML.load(tmp_path / "run").predict(binary_frame)) == len(binary_frame)
    assert _nothing_left(temp_dirs)


def test_resume_refuses_what_it_cannot_resume(tmp_path, binary_frame):
    spec = write_spec(tmp_path, binary_frame)
    both = automl_cli("fit", spec, "--resume", "--overwrite")
    assert both.returncode == 2 and both.stderr == "error: --overwrite and --resume contradict each other: choose one\n"
    (tmp_path / "run").mkdir()
    study = optuna.create_study(study_name="t", storage=f"sqlite:///{tmp_path / 'run' / 'study.db'}")
    study.set_user_attr(FINGERPRINT_ATTR, "a run of other data")
    refused = automl_cli("fit", spec, "--resume")
    assert refused.returncode == 2
    assert refused.stderr == (f"error: the run in {tmp_path / 'run'} was made from another spec or other data; "
                              "resume it with the same ones, or start afresh with --overwrite\n")


def test_a_study_file_without_the_study_holds_nothing_to_resume(tmp_path, binary_frame):
    from automl.checkpoint import holds_study
    from automl.spec import load_spec

    spec = load_spec(write_spec(tmp_path, binary_frame))
    assert not holds_study(spec)  # no study.db
    (tmp_path / "run").mkdir()
    storage = f"sqlite:///{tmp_path / 'run' / 'study.db'}"
    optuna.create_study(study_name="another", storage=storage)  # a killed start leaves tables, no study
    assert not holds_study(spec)
    optuna.create_study(study_name=spec.name, storage=storage)
    assert holds_study(spec)


def test_resume_refuses_to_start_afresh_over_a_run_of_another_name(tmp_path, binary_frame, capsys):
    """A renamed spec file renames the run (its default name): resuming must not delete the old one."""
    spec = write_spec(tmp_path, binary_frame)
    (tmp_path / "run").mkdir()
    storage = f"sqlite:///{tmp_path / 'run' / 'study.db'}"
    optuna.create_study(study_name="before_the_rename", storage=storage)
    assert run_command(["fit", str(spec), "--resume", "--quiet"]) == 2
    assert f"holds the run 'before_the_rename', not '{load_spec(spec).name}'" in capsys.readouterr().err
    assert optuna.get_all_study_names(storage=storage) == ["before_the_rename"]


def test_a_second_run_on_a_folder_in_use_is_refused_naming_the_first(tmp_path, binary_frame, capsys):
    spec = write_spec(tmp_path, binary_frame)
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from automl.folder_lock import locked_folder
        with locked_folder(Path({str(tmp_path / 'run')!r})):
            print("locked", flush=True)
            time.sleep(60)
        """)], stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[1])
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert run_command(["fit", str(spec), "--quiet"]) == 2
        assert f"{tmp_path / 'run'} is in use by another run (pid {holder.pid})" in capsys.readouterr().err
    finally:
        holder.kill()
        holder.wait()
    assert list((tmp_path / "run").iterdir()) == [tmp_path / "run" / LOCK_FILE]  # nothing of its written


def test_a_refused_fit_leaves_no_folder_behind(tmp_path, binary_frame):
    spec = write_spec(tmp_path, binary_frame, data={"target": "no_such_column"})
    assert run_command(["fit", str(spec), "--quiet"]) == 2
    assert not (tmp_path / "run").exists()


def test_the_resume_fingerprint_covers_the_holdouts_content(binary_frame):
    spec = {"data": {"train": "train.csv", "test": "test.csv"}}
    train, holdout = binary_frame.iloc[:100], binary_frame.iloc[100:]
    same = fingerprint(spec, train, holdout)
    assert fingerprint(spec, train, holdout.copy()) == same
    changed = holdout.assign(target=holdout["target"].iloc[::-1].to_numpy())  # same file name, other rows
    assert fingerprint(spec, train, changed) != same
