"""The embedded Ray instance: private, bound to 127.0.0.1, token authentication on, no
dashboard, and gone with its temporary files once the run ends (a whole fit's
leftovers, after a SIGKILL too, are checked in test_resume.py)."""

from __future__ import annotations

import os
import subprocess

import ray

from automl.execution import RayExecutor


def _processes_mentioning(text: str) -> list[str]:
    listing = subprocess.run(["pgrep", "-af", text], capture_output=True, text=True).stdout
    return [line for line in listing.splitlines() if "pgrep" not in line]


def test_embedded_ray_is_private_and_leaves_nothing_behind():
    with RayExecutor(cpus=1) as executor:
        temp_dir = executor._temp_dir
        context = ray.get_runtime_context()
        assert context.gcs_address.startswith("127.0.0.1:")
        port = context.gcs_address.rsplit(":", 1)[1]
        listening = subprocess.run(["ss", "-ltn"], capture_output=True, text=True).stdout.splitlines()
        gcs = [line.split()[3] for line in listening if line.split()[3].endswith(f":{port}")]
        assert gcs and all("127.0.0.1" in address for address in gcs), gcs  # not every interface
        assert os.environ["RAY_AUTH_MODE"] == "token"
        assert ray._private.worker.global_worker.node.get_session_dir_path().startswith(temp_dir)
        assert _processes_mentioning(temp_dir)  # its raylet and GCS run from there
        dashboard = [line for line in _processes_mentioning(temp_dir) if "dashboard/dashboard.py" in line]
        assert all("--disable-frontend" in line and "--host=127.0.0.1" in line for line in dashboard)  # no web UI
    assert not ray.is_initialized()
    assert not os.path.exists(temp_dir)
    assert not _processes_mentioning(temp_dir)

