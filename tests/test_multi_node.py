"""A real Ray cluster on this machine: a head and two worker nodes, one of them
without automl. A run ships its code to the nodes, spreads its trials and
predictions over them, and goes on when a node leaves.

The cluster binds to 127.0.0.2: Ray rewrites 127.0.0.1 to the machine's own
address when clustering, but leaves the rest of the loopback range alone, so
nothing here leaves the machine. The cluster is this module's alone: its nodes,
idle, would slow every other test on a two-core machine.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from automl.checkpoint import TRIALS_DIR, OutcomeStore
from tests.conftest import automl_cli, automl_here, write_spec

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


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """The module's cluster (~14 s to start, ~8 s to stop; shared, as both cost more than
    most tests): a head node with no CPUs, so every trial runs elsewhere, and a worker node
    whose Python cannot import automl, so the run must ship its code to it. Yields the
    head's address."""
    folder = tmp_path_factory.mktemp("bare")
    python = _python_without_automl(folder / "bare-venv")
    bare_cwd = folder / "elsewhere"
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


@pytest.fixture
def second_node(cluster):
    """One more worker node (1 CPU, automl importable) joining the module's cluster; yields the
    pid of its raylet: kill it and the node leaves the cluster."""
    before = _raylet_pids()
    _ray("start", f"--address={cluster}", f"--node-ip-address={LOOPBACK}", "--num-cpus=1", "--disable-usage-stats")
    (raylet,) = _raylet_pids() - before
    yield raylet
    with contextlib.suppress(ProcessLookupError):  # the test may have made it leave already
        os.kill(raylet, signal.SIGKILL)


def _fit_on(address: str, spec: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "automl", "fit", str(spec), "--quiet",
                             "--ray-address", address], env=CLUSTER_ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_a_worker_node_without_automl_installed_runs_trials(tmp_path, binary_frame, cluster, capsys):
    spec = write_spec(tmp_path, binary_frame, budget={"time_s": 20, "max_trials": 4}, hardware={"cpus": None},
                      models={"include": ["lightgbm", "linear"]}, ensemble={"enabled": False})
    # Ray hands the driver's sys.path to the workers: run it from elsewhere, or the
    # repository's root would reach them that way.
    fit = subprocess.run([sys.executable, "-m", "automl", "fit", str(spec), "--quiet", "--ray-address",
                          cluster], env=CLUSTER_ENV, capture_output=True, text=True, timeout=240,
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

    spread = predict(str(tmp_path / "rows.csv"), "--ray-address", cluster)
    assert spread.returncode == 0, spread.stderr
    capsys.readouterr()
    assert automl_here("predict", tmp_path / "run", tmp_path / "rows.csv", "--proba", "--id", "row_id") == 0
    assert spread.stdout == capsys.readouterr().out  # as predicted here, in one process
    assert pd.read_csv(io.StringIO(spread.stdout))["row_id"].tolist() == list(range(len(binary_frame)))
    first = rows.columns[0]
    rows[first] = rows[first].astype(object)
    rows.loc[450, first] = "broken"  # in the fifth chunk: the worker's refusal is the usual one-line error
    rows.to_csv(tmp_path / "broken.csv", index=False)
    refused = predict(str(tmp_path / "broken.csv"), "--ray-address", cluster)
    (line,) = refused.stderr.strip().splitlines()
    assert refused.returncode == 2 and line.startswith(f"error: column '{first}'") and "'broken'" in line


def _nodes_of_complete_trials(run: Path) -> set[str]:
    """The nodes a run's completed trials ran on, from its outcome store (written atomically), as it goes."""
    return {outcome.node_id for outcome in OutcomeStore(run / TRIALS_DIR).load_all().values()
            if outcome.status == "complete"}


def test_a_fit_on_a_cluster_uses_both_worker_nodes_and_goes_on_when_one_leaves(tmp_path, binary_frame, cluster,
                                                                              second_node):
    # 20 s: the node leaves once both have completed a trial, and the search must still
    # have trials to run then, before its end phase (which may keep 15% back for refits)
    spec = write_spec(tmp_path, binary_frame, budget={"time_s": 20}, hardware={"cpus": None},
                      models={"include": ["linear", "lightgbm", "knn"]})
    fit = _fit_on(cluster, spec)
    deadline = time.monotonic() + 60
    while len(_nodes_of_complete_trials(tmp_path / "run")) < 2 and fit.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert fit.poll() is None, "the fit ended before trials had run on both nodes"
    os.kill(second_node, signal.SIGKILL)
    left_at = time.time()
    _, stderr = fit.communicate(timeout=240)
    assert fit.returncode == 0, stderr
    summary = json.loads((tmp_path / "run" / "run.json").read_text())
    after = [t for t in summary["trial_log"] if t["status"] == "complete" and t["ended_at"] > left_at]
    assert after, "no trial finished after the node left: the run did not go on"
    assert summary["spec"]["hardware"]["ray_address"] == cluster
    binary_frame.drop(columns=["target"]).to_csv(tmp_path / "new.csv", index=False)
    predicted = automl_cli("predict", tmp_path / "run", tmp_path / "new.csv")
    assert predicted.returncode == 0 and len(predicted.stdout.splitlines()) == len(binary_frame) + 1
    # the run joined the cluster and left it running
    status = subprocess.run([RAY, "status", f"--address={cluster}"], env=CLUSTER_ENV,
                            capture_output=True, text=True, timeout=60)
    assert status.returncode == 0, status.stderr
