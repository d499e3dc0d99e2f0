"""Where trials run: one small interface (``base``) and a module per backend.

``ray_backend``: Ray tasks, on an embedded local instance or a cluster.
``local``: worker processes on this machine (see ``backend_name``).
"""

from __future__ import annotations

from automl.devices import run_gpus
from automl.execution.base import Answer, Executor, Handle, Placement, Question, trial_slots
from automl.execution.local import LocalExecutor
from automl.execution.ray_backend import RayExecutor


def backend_name(hardware) -> str:
    """The backend a run uses: "ray" or "local" (``hardware`` is the spec's section).

    With ``hardware.backend: auto``, Ray for a cluster address or GPUs, and on this
    machine's CPUs the local backend, at every budget: starting and stopping an embedded
    Ray costs 8-10 s on an idle 2-core machine, and with both cores busy with other work
    its trials ran far slower (a 300k-row fit at 120 s: every trial past its 30 s limit,
    no model, even with its workers started before the search; on the local backend the
    first model came at 18 s and the run ended at 116 s). At 1M rows and 300 s the local
    backend also peaked lower: 3.0 GB summed RSS against Ray's 3.8 (Ray's own processes)."""
    if hardware.backend != "auto":
        return hardware.backend
    return "ray" if hardware.ray_address or run_gpus(hardware) else "local"


def make_executor(hardware, cpus_per_trial: int) -> Executor:
    """The backend for ``hardware`` (the spec's section) and trials of ``cpus_per_trial`` CPUs."""
    if backend_name(hardware) == "local":
        return LocalExecutor(hardware.cpus, cpus_per_trial)
    return RayExecutor(hardware.ray_address, hardware.cpus, run_gpus(hardware), cpus_per_trial)


__all__ = ["Answer", "Executor", "Handle", "LocalExecutor", "Placement", "Question", "RayExecutor",
           "backend_name", "make_executor", "trial_slots"]
