"""Where trials run: one small interface (``base``) and a module per backend.

``ray_backend``: Ray tasks, on an embedded local instance or a cluster.
``local``: worker processes on this machine, for budgets too short to pay Ray's start.
"""

from __future__ import annotations

from automl.execution.base import Answer, Executor, Handle, Placement, Question, trial_slots
from automl.execution.local import LocalExecutor
from automl.execution.ray_backend import RayExecutor

LOCAL_BELOW_S = 120.0
"""With ``hardware.backend: auto``, budgets shorter than this run on the local backend:
starting and stopping an embedded Ray takes 8-10 s on an idle 2-core machine (measured),
a sixth of a 60 s budget, and with both cores busy with other work its first workers
took over 40 s to start (no trial of a 10k-row fit at 60 s finished; on the local
backend, 9 did). A cluster address or GPUs always mean Ray."""


def backend_name(hardware, time_s: float) -> str:
    """The backend a run uses: "ray" or "local" (``hardware`` is the spec's section)."""
    if hardware.backend != "auto":
        return hardware.backend
    if hardware.ray_address or hardware.gpus or time_s >= LOCAL_BELOW_S:
        return "ray"
    return "local"


def make_executor(hardware, time_s: float, cpus_per_trial: int) -> Executor:
    """The backend for ``hardware`` (the spec's section) and trials of ``cpus_per_trial`` CPUs."""
    if backend_name(hardware, time_s) == "local":
        return LocalExecutor(hardware.cpus, cpus_per_trial)
    return RayExecutor(hardware.ray_address, hardware.cpus, hardware.gpus, cpus_per_trial)


__all__ = ["Answer", "Executor", "Handle", "LocalExecutor", "Placement", "Question", "RayExecutor",
           "backend_name", "make_executor", "trial_slots"]
