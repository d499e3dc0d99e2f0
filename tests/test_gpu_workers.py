"""GPU workers started with the search and warmed up once (``automl.execution.ray_gpu_workers``).

No GPU is needed: Ray is told it has one, and the MLP, asked for device "auto", trains on
the CPU where CUDA shows none."""

from __future__ import annotations

import json
import operator
import os
import time
from functools import partial

import pytest

from automl.execution import RayExecutor, ray_gpu_workers
from automl.trial import COMPLETE
from tests.conftest import automl_here, write_spec

GPU_TRIAL = {"num_cpus": 1, "num_gpus": 1}


@pytest.fixture(scope="module")
def embedded_ray():
    """One embedded Ray with 2 CPUs and a GPU it is told of, for the whole module."""
    with RayExecutor(cpus=2, gpus=1) as owner:
        yield owner


@pytest.fixture
def executor(embedded_ray):
    """An executor joining the module's Ray: closed, it stops the GPU workers it started."""
    with RayExecutor() as executor:
        yield executor


def _until_warm(executor, limit_s: float = 60) -> None:
    deadline = time.monotonic() + limit_s
    while executor.warming and time.monotonic() < deadline:
        executor.wait([], deadline - time.monotonic())
    assert not executor.warming, "a GPU worker's warm-up did not end"


def _run(executor, fn, *args):
    handle = executor.submit(fn, *args, **GPU_TRIAL)
    done, _ = executor.wait([handle], 60)
    assert done == [handle]
    return executor.result(handle)


def test_a_failed_warm_up_drops_its_worker_with_a_warning_and_gpu_trials_start_their_own(executor):
    executor.start_gpu_workers(1, GPU_TRIAL, partial(operator.truediv, 1, 0))
    _until_warm(executor)
    assert [w for w in executor.take_warnings() if "failed to warm up (ZeroDivisionError: division by zero)" in w]
    assert executor.ready_gpu_workers is None
    pid, placement = _run(executor, os.getpid)  # a Ray task of its own, given the GPU
    assert pid == placement.pid and len(placement.gpu_ids) == 1


def test_a_gpu_worker_that_cannot_start_is_dropped_with_a_warning(executor, monkeypatch):
    monkeypatch.setattr(ray_gpu_workers, "START_LIMIT_S", 1.0)
    executor.start_gpu_workers(1, {"num_cpus": 1, "num_gpus": 2}, partial(time.sleep, 0))  # Ray has one GPU
    _until_warm(executor, limit_s=10)
    assert [w for w in executor.take_warnings() if "GPU worker did not start" in w]
    assert executor.ready_gpu_workers is None


def test_gpu_trials_run_one_after_another_in_a_warm_worker_and_a_cancel_replaces_it(executor):
    executor.start_gpu_workers(1, GPU_TRIAL, partial(time.sleep, 0.2))
    assert executor.warming and executor.ready_gpu_workers == 0
    _until_warm(executor)
    assert executor.ready_gpu_workers == 1 and executor.gpu_workers_ready_after_s[0] >= 0.2
    (first, placement), (second, _) = _run(executor, os.getpid), _run(executor, os.getpid)
    assert first == second and len(placement.gpu_ids) == 1  # the same process, holding the GPU
    endless = executor.submit(time.sleep, 600, **GPU_TRIAL)
    executor.cancel(endless)  # an actor's task cannot be stopped: its worker is killed and replaced
    assert executor.ready_gpu_workers == 0 and executor.warming
    _until_warm(executor)
    replacement, _ = _run(executor, os.getpid)
    assert replacement != first and executor.ready_gpu_workers == 1


def test_a_ray_fit_runs_its_gpu_trials_in_the_warm_workers(tmp_path, binary_frame, embedded_ray, capsys):
    """The fit joins the module's Ray (one GPU, two CPUs); its only family waits for the warm-up."""
    spec = write_spec(tmp_path, binary_frame, budget={"time_s": 60, "max_trials": 2}, validation={"method": "split"},
                      hardware={"backend": "ray", "gpus": 1}, models={"include": ["mlp"]})
    assert automl_here("fit", spec, "--quiet") == 0, capsys.readouterr().err
    summary = json.loads((tmp_path / "run" / "run.json").read_text())
    complete = [t for t in summary["trial_log"] if t["status"] == COMPLETE]
    assert len(complete) == 2 and all(t["resources"]["num_cpus"] == 1 and t["resources"]["num_gpus"] > 0
                                      for t in complete)
    assert complete[0]["pid"] == complete[1]["pid"]  # one warm worker, one trial after the other
    assert summary["timings"]["gpu_worker_start_s"] > 0
