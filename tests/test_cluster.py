"""Distributed execution: a real two-node Ray cluster on this machine, a worker
killed mid-trial, and the resource logic (CPU slots, GPUs only where usable).

The cluster binds to 127.0.0.2: Ray rewrites 127.0.0.1 to the machine's own
address when clustering, but leaves the rest of the loopback range alone, so
nothing here leaves the machine.
"""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import psutil
import pytest

from automl.checkpoint import TRIALS_DIR, OutcomeStore
from automl.cli import run_command
from automl.execution import trial_slots
from automl.metrics import get_metric
from automl.models import get_family
from automl.models.base import ModelFamily
from automl.search import Search
from tests.conftest import automl_cli, write_spec

LOOPBACK = "127.0.0.2"
RAY = str(Path(sys.executable).parent / "ray")
CLUSTER_ENV = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token",
               # Ray declares a lost node dead after 5 failed health checks 3 s apart; until then the
               # tasks it spilled there hang. Check faster so a 30 s run sees the node go.
               "RAY_health_check_period_ms": "500", "RAY_health_check_timeout_ms": "1000",
               "RAY_health_check_failure_threshold": "3"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def _ray(*args: str) -> None:
    started = subprocess.run([RAY, *args], env=CLUSTER_ENV, capture_output=True, text=True, timeout=120)
    if started.returncode != 0:  # say why: the exit status alone left a failed start unexplained
        pytest.fail(f"ray {' '.join(args)} exited {started.returncode}: {started.stderr[-2000:]}")


def _raylet_pids() -> set[int]:
    listing = subprocess.run(["pgrep", "-f", "raylet/raylet"], capture_output=True, text=True).stdout
    return {int(pid) for pid in listing.split()}


@dataclass
class Cluster:
    address: str
    worker_raylet: int
    """The pid of the second node's raylet: kill it and that node leaves the cluster."""


@pytest.fixture
def two_node_cluster():
    """A head and a worker node, 1 CPU each, started with `ray start` (with stopping it, ~13 s)."""
    port = _free_port()
    address = f"{LOOPBACK}:{port}"
    try:
        _ray("start", "--head", f"--node-ip-address={LOOPBACK}", f"--port={port}", "--num-cpus=1",
             "--include-dashboard=false", "--disable-usage-stats")
        head_only = _raylet_pids()
        _ray("start", f"--address={address}", f"--node-ip-address={LOOPBACK}", "--num-cpus=1",
             "--disable-usage-stats")
        (worker_raylet,) = _raylet_pids() - head_only
        yield Cluster(address, worker_raylet)
    finally:
        subprocess.run([RAY, "stop", "--force"], env=CLUSTER_ENV, capture_output=True, timeout=120)


def _python_without_automl(folder: Path) -> Path:
    """A virtual environment that has every dependency of automl but not automl: this
    one's site-packages as a plain path (its .pth files, automl's editable install
    among them, are not read)."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True, timeout=120)
    python = folder / "bin" / "python"
    ours = Path(next(p for p in sys.path if p.endswith("site-packages")))
    bare_site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip()
    (Path(bare_site) / "dependencies.pth").write_text(f"{ours}\n")
    return python


@pytest.fixture
def cluster_with_a_bare_worker(tmp_path):
    """A head node with no CPUs (so every trial runs elsewhere) and a worker node whose
    Python cannot import automl: the run must ship its code to it."""
    python = _python_without_automl(tmp_path / "bare-venv")
    bare_cwd = tmp_path / "elsewhere"
    bare_cwd.mkdir()
    missing = subprocess.run([python, "-c", "import automl"], cwd=bare_cwd, capture_output=True, text=True)
    assert missing.returncode != 0 and "No module named 'automl'" in missing.stderr
    port = _free_port()
    address = f"{LOOPBACK}:{port}"
    try:
        _ray("start", "--head", f"--node-ip-address={LOOPBACK}", f"--port={port}", "--num-cpus=0",
             "--include-dashboard=false", "--disable-usage-stats")
        subprocess.run([python, "-c", "import sys; from ray.scripts.scripts import main; sys.argv[0] = 'ray'; main()",
                        "start", f"--address={address}", f"--node-ip-address={LOOPBACK}", "--num-cpus=2",
                        "--disable-usage-stats"], env=CLUSTER_ENV, cwd=bare_cwd, check=True, capture_output=True,
                       timeout=120)
        yield address
    finally:
        subprocess.run([RAY, "stop", "--force"], env=CLUSTER_ENV, capture_output=True, timeout=120)


def test_a_worker_node_without_automl_installed_runs_trials(tmp_path, binary_frame, cluster_with_a_bare_worker,
                                                             capsys):
    spec = write_spec(tmp_path, binary_frame, budget={"time_s": 20, "max_trials": 4}, hardware={"cpus": None},
                      models={"include": ["lightgbm", "linear"]}, ensemble={"enabled": False})
    # Ray hands the driver's sys.path to the workers: run it from elsewhere, or the
    # repository's root would reach them that way.
    fit = subprocess.run([sys.executable, "-m", "automl", "fit", str(spec), "--quiet", "--ray-address",
                          cluster_with_a_bare_worker], env=CLUSTER_ENV, capture_output=True, text=True, timeout=240,
                         cwd=tmp_path)
    assert fit.returncode == 0, fit.stderr
    summary = json.loads((tmp_path / "run" / "run.json").read_text())
    complete = [t for t in summary["trial_log"] if t["status"] == "complete"]
    assert complete, [t["error"] for t in summary["trial_log"]]
    assert all(t["resources"]["num_cpus"] >= 1 for t in complete)  # so they ran on the worker node

    # automl predict spreads a file's chunks over the cluster (the head has no CPU: the worker
    # predicts them all) and writes them in input order, as a local predict does
    rows = binary_frame.drop(columns=["target"]).assign(row_id=range(len(binary_frame)))
    rows.to_csv(tmp_path / "rows.csv", index=False)

    def predict(data: str, *options: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "automl", "predict", str(tmp_path / "run"), data, "--proba",
                               "--id", "row_id", "--chunk-rows", "100", *options], env=CLUSTER_ENV,
                              capture_output=True, text=True, timeout=240, cwd=tmp_path)

    spread = predict(str(tmp_path / "rows.csv"), "--ray-address", cluster_with_a_bare_worker)
    assert spread.returncode == 0, spread.stderr
    capsys.readouterr()
    assert run_command(["predict", str(tmp_path / "run"), str(tmp_path / "rows.csv"), "--proba", "--id", "row_id"]) == 0
    assert spread.stdout == capsys.readouterr().out  # as predicted here, in one process
    assert pd.read_csv(io.StringIO(spread.stdout))["row_id"].tolist() == list(range(len(binary_frame)))
    first = rows.columns[0]
    rows[first] = rows[first].astype(object)
    rows.loc[450, first] = "broken"  # in the fifth chunk: the worker's refusal is the usual one-line error
    rows.to_csv(tmp_path / "broken.csv", index=False)
    refused = predict(str(tmp_path / "broken.csv"), "--ray-address", cluster_with_a_bare_worker)
    (line,) = refused.stderr.strip().splitlines()
    assert refused.returncode == 2 and line.startswith(f"error: column '{first}'") and "'broken'" in line


def _fit_on(cluster: Cluster, spec: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "automl", "fit", str(spec), "--quiet",
                             "--ray-address", cluster.address], env=CLUSTER_ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


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


def _nodes_of_complete_trials(run: Path) -> set[str]:
    """The nodes a run's completed trials ran on, from its outcome store (written atomically), as it goes."""
    return {outcome.node_id for outcome in OutcomeStore(run / TRIALS_DIR).load_all().values()
            if outcome.status == "complete"}


def test_a_fit_on_a_two_node_cluster_uses_both_nodes_and_goes_on_when_one_leaves(tmp_path, binary_frame,
                                                                                 two_node_cluster):
    # 20 s: the node leaves once both have completed a trial, and the search must still
    # have trials to run then, before its end phase (which may keep 15% back for refits)
    spec = write_spec(tmp_path, binary_frame, budget={"time_s": 20}, hardware={"cpus": None},
                      models={"include": ["linear", "lightgbm", "knn"]})
    fit = _fit_on(two_node_cluster, spec)
    deadline = time.monotonic() + 60
    while len(_nodes_of_complete_trials(tmp_path / "run")) < 2 and fit.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert fit.poll() is None, "the fit ended before trials had run on both nodes"
    os.kill(two_node_cluster.worker_raylet, signal.SIGKILL)
    left_at = time.time()
    _, stderr = fit.communicate(timeout=240)
    assert fit.returncode == 0, stderr
    summary = json.loads((tmp_path / "run" / "run.json").read_text())
    after = [t for t in summary["trial_log"] if t["status"] == "complete" and t["ended_at"] > left_at]
    assert after, "no trial finished after the node left: the run did not go on"
    assert summary["spec"]["hardware"]["ray_address"] == two_node_cluster.address
    binary_frame.drop(columns=["target"]).to_csv(tmp_path / "new.csv", index=False)
    predicted = automl_cli("predict", tmp_path / "run", tmp_path / "new.csv")
    assert predicted.returncode == 0 and len(predicted.stdout.splitlines()) == len(binary_frame) + 1
    # the run joined the cluster and left it running
    status = subprocess.run([RAY, "status", f"--address={two_node_cluster.address}"], env=CLUSTER_ENV,
                            capture_output=True, text=True, timeout=60)
    assert status.returncode == 0, status.stderr
