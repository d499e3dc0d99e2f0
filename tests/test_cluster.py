"""Distributed execution on one machine: a worker killed mid-trial, the pruning mailbox
lost mid-run, and the resource logic (CPU slots, GPUs only where usable). A real
cluster of several nodes is tests/test_multi_node.py's."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable

import pandas as pd
import psutil
import pytest

from automl.execution import trial_slots
from automl.metrics import get_metric
from automl.models import get_family
from automl.models.base import ModelFamily
from automl.search import Search
from tests.conftest import write_spec


def _trial_worker_pids(backend: str, driver: int | None = None) -> list[int]:
    """Ray's task workers running a trial, or the local backend's workers: the children of the
    zygote ``driver`` started (not of this test process's own spare zygote, kept from its fits)."""
    listing = subprocess.run(["ps", "-eo", "pid=,ppid=,args="], capture_output=True, text=True).stdout
    processes = [line.split(maxsplit=2) for line in listing.splitlines()]
    if backend == "ray":
        return [int(pid) for pid, _, args in processes if "ray::run_placed" in args]
    zygotes = {pid for pid, parent, args in processes
               if "automl.execution._zygote" in args and (driver is None or int(parent) == driver)}
    return [int(pid) for pid, parent, _ in processes if parent in zygotes]


def _kill_once_seen(run: subprocess.Popen, find: Callable[[], list[int]], wait_s: float = 60) -> list[int]:
    """SIGKILL the processes ``find`` names as soon as it names any, while ``run`` runs;
    returns them (none: never seen within ``wait_s``)."""
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline and run.poll() is None:
        pids = find()
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        if pids:
            return pids
        time.sleep(0.1)
    return []


@pytest.mark.parametrize("backend", ["ray", "local"])
def test_a_worker_killed_mid_trial_does_not_end_the_run(tmp_path, binary_frame, backend):
    # 4 trials end the fit (8-12 s); the budget is only the bound when a restarted Ray worker is slow:
    # at 15 s, one fresh clone's run had no trial finished by then
    spec = write_spec(tmp_path, binary_frame, budget={"time_s": 25, "max_trials": 4},
                      models={"include": ["random_forest"]},
                      hardware={"backend": backend})
    run = subprocess.Popen([sys.executable, "-m", "automl", "fit", str(spec), "--quiet"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed = _kill_once_seen(run, lambda: _trial_worker_pids(backend, run.pid)[:1])
    stdout, stderr = run.communicate(timeout=180)
    assert killed, "no trial worker was seen running"
    assert run.returncode == 0, f"stderr: {stderr!r}; stdout: {stdout[-2000:]!r}"
    board = pd.read_csv(tmp_path / "run" / "leaderboard.csv")
    assert len(board) >= 1
    summary = json.loads((tmp_path / "run" / "run.json").read_text())
    assert killed[0] not in {t["pid"] for t in summary["trial_log"] if t["status"] == "complete"}


def _mailbox_pids(run: subprocess.Popen) -> list[int]:
    """The pruning mailbox actor of ``run``'s own Ray instance (other runs may be about)."""
    pids = []
    for process in psutil.Process(run.pid).children(recursive=True):
        try:
            if "ray::_Mailbox" in " ".join(process.cmdline()):
                pids.append(process.pid)
        except psutil.Error:
            pass
    return pids


def test_losing_the_pruning_mailbox_mid_run_degrades_to_no_pruning(tmp_path, binary_frame):
    spec = write_spec(tmp_path, binary_frame, budget={"time_s": 13}, hardware={"backend": "ray"},
                      models={"include": ["lightgbm", "linear"]})
    run = subprocess.Popen([sys.executable, "-m", "automl", "fit", str(spec), "--quiet"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # once the search is under way
    killed = _kill_once_seen(run, lambda: _mailbox_pids(run) if _trial_worker_pids("ray") else [])
    killed_at = time.time()
    _, stderr = run.communicate(timeout=180)
    assert killed, "the mailbox was never seen running"
    assert run.returncode == 0, stderr
    summary = json.loads((tmp_path / "run" / "run.json").read_text())
    assert any("pruning mailbox" in warning for warning in summary["warnings"]), summary["warnings"]
    after = [t for t in summary["trial_log"] if t["status"] == "complete" and t["ended_at"] > killed_at + 1]
    assert after, "no trial completed after the mailbox was lost"


class _GpuFamily(ModelFamily):
    name = "gpu_family"
    uses_gpu = True

    def search_space(self, task):
        return {}

    def portfolio(self, task):
        return [{}]

    def build(self, params, task, n_jobs, seed):
        raise NotImplementedError


def test_only_families_that_can_use_a_gpu_ask_for_one(tmp_path):
    search = Search([get_family("lightgbm"), get_family("random_forest"), _GpuFamily()], "binary",
                    get_metric("roc_auc", "binary"), f"sqlite:///{tmp_path / 's.db'}", "s", seed=0,
                    cpus_per_trial=2)
    assert search.resources("gpu_family") == {"num_cpus": 2, "num_gpus": 0}  # no GPU in the run
    search.use_gpus(1, gpus=1)
    assert search.resources("lightgbm") == {"num_cpus": 2, "num_gpus": 0}
    assert search.resources("random_forest") == {"num_cpus": 2, "num_gpus": 0}
    assert search.resources("gpu_family") == {"num_cpus": 1, "num_gpus": 1}  # one CPU drives its GPU


@pytest.mark.parametrize("offered, cap, per_trial, expected", [
    (8, None, 2, 4),   # 8 CPUs, 2 per trial: 4 at once
    (8, 4, 2, 2),      # hardware.cpus caps what the run uses
    (2, 8, 1, 2),      # a cap above what the cluster offers changes nothing
    (1, None, 2, 1),   # always at least one
])
def test_concurrency_follows_free_cpu_slots(offered, cap, per_trial, expected):
    assert trial_slots(offered, cap, per_trial) == expected
