"""The local backend: worker processes forked from a zygote, without Ray (see automl.execution.local)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from automl.execution import LocalExecutor, backend_name, local
from automl.execution.local import WorkerLost
from automl.metrics import get_metric
from automl.models import get_family
from automl.search import Search
from automl.spec import HardwareSpec, Spec


@pytest.fixture()
def executor(monkeypatch):
    # Workers import this module by name to run its functions.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(Path(__file__).parent), str(Path(__file__).parents[1])]))
    local.stop_spare()  # a zygote kept from an earlier fit started without that path
    with LocalExecutor(cpus=2) as executor:
        yield executor


def _total(data: np.ndarray, offset: int) -> tuple[float, int]:
    return float(data.sum()) + offset, os.getpid()


def _mapped_and_write(data: np.ndarray, value: float) -> tuple[bool, float]:
    """Whether ``data`` is a view of a mapping (not a copy); then write into it."""
    base = data.base
    while base is not None and not isinstance(base, memoryview):
        base = base.base
    before = float(data[0])
    data[0] = value
    return isinstance(base, memoryview) and type(base.obj).__name__ == "mmap", before


def _ask_twice(link) -> list[bool]:
    ask = link.connect()
    return [ask(0, 0.5), ask(1, 0.25)]


def _wait_all(executor: LocalExecutor, handles: list, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    done: set = set()
    while len(done) < len(handles) and time.monotonic() < deadline:
        finished, _ = executor.wait([h for h in handles if h not in done], deadline - time.monotonic())
        done |= set(finished)
    assert len(done) == len(handles), "tasks did not finish"


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_tasks_run_in_other_processes_on_data_put_once(executor):
    data = np.arange(1000.0)
    ref = executor.put(data)
    handles = [executor.submit(_total, ref, offset) for offset in (1, 2)]
    _wait_all(executor, handles)
    results = [executor.result(handle) for handle in handles]
    assert [value for (value, _), _ in results] == [data.sum() + 1, data.sum() + 2]
    pids = {pid for (_, pid), _ in results}
    assert len(pids) == 2 and os.getpid() not in pids  # two slots, two workers
    assert all(placement.pid in pids and placement.node_id == "local" for _, placement in results)


def test_workers_map_one_shared_copy_and_write_only_to_their_own(executor):
    data = np.arange(100_000.0)
    ref = executor.put(data)
    first = executor.submit(_mapped_and_write, ref, -1.0)
    _wait_all(executor, [first])
    assert executor.result(first)[0] == (True, 0.0)
    busy = executor.submit(time.sleep, 60)  # so the next task runs in the other worker
    second = executor.submit(_mapped_and_write, ref, -2.0)
    _wait_all(executor, [second])
    assert executor.result(second)[0] == (True, 0.0)  # the first worker's write stayed in its own pages
    executor.cancel(busy)
    assert data[0] == 0.0


def test_a_worker_asks_the_driver_whether_to_stop(executor):
    handle = executor.submit(_ask_twice, executor.report_link(7))
    verdicts, asked = {0: False, 1: True}, []
    deadline = time.monotonic() + 60
    done: list = []
    while not done and time.monotonic() < deadline:
        done, questions = executor.wait([handle], 10)
        asked += questions
        executor.answer([(key, step, verdicts[step]) for key, step, _ in questions])
    assert asked == [(7, 0, 0.5), (7, 1, 0.25)]
    assert executor.result(handle)[0] == [False, True]


def test_cancel_kills_the_worker_and_the_next_task_gets_a_new_one(executor):
    handle = executor.submit(time.sleep, 60)
    (worker,) = executor._workers
    executor.cancel(handle)
    deadline = time.monotonic() + 5
    while not _gone(worker.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _gone(worker.pid)
    again = executor.submit(os.getpid)
    _wait_all(executor, [again])
    assert executor.result(again)[0] not in (worker.pid, os.getpid())


def test_a_worker_that_dies_is_reported_lost_and_a_failing_task_raises(executor):
    lost = executor.submit(os._exit, 3)
    failing = executor.submit(int, "not a number")
    _wait_all(executor, [lost, failing])
    with pytest.raises(WorkerLost, match="ended while running") as lost_error:
        executor.result(lost)
    with pytest.raises(RuntimeError, match="ValueError: invalid literal") as task_error:
        executor.result(failing)
    assert executor.is_lost(lost_error.value) and not executor.is_lost(task_error.value)
    assert str(task_error.value).startswith("Traceback")  # the search keeps it in the trial log


def test_close_leaves_no_worker_behind_and_keeps_the_zygote_for_the_next_executor():
    with LocalExecutor(cpus=2) as executor:
        executor.submit(time.sleep, 60)
        workers = [worker.pid for worker in executor._workers]
        zygote = executor._zygote.process.pid
    assert all(_gone(pid) for pid in workers) and not _gone(zygote)
    with LocalExecutor(cpus=2) as executor:
        assert executor._zygote.process.pid == zygote  # its imports are done: workers start at once
        handle = executor.submit(sum, [1, 2])
        assert executor.wait([handle], 60)[0] == [handle] and executor.result(handle)[0] == 3
    local.stop_spare()
    assert _gone(zygote)


DRIVER = textwrap.dedent("""
    import time
    from automl.execution import LocalExecutor
    executor = LocalExecutor(cpus=2)
    executor.submit(time.sleep, 600)
    executor.submit(time.sleep, 600)
    print(executor._zygote.process.pid, *(worker.pid for worker in executor._workers), flush=True)
    time.sleep(600)
""")


def test_a_killed_driver_leaves_no_worker_behind():
    driver = subprocess.Popen([sys.executable, "-c", DRIVER], stdout=subprocess.PIPE, text=True)
    pids = [int(pid) for pid in driver.stdout.readline().split()]
    assert len(pids) == 3  # the zygote and two busy workers
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    deadline = time.monotonic() + 10
    while not all(_gone(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert all(_gone(pid) for pid in pids)


@pytest.mark.parametrize(("hardware", "visible", "expected"), [
    ({}, "", "local"), ({}, "0", "ray"), ({"gpus": 0}, "0", "local"), ({"gpus": 1}, "", "ray"),
    ({"ray_address": "auto"}, "", "ray"), ({"backend": "ray"}, "", "ray"), ({"backend": "local"}, "0", "local"),
])
def test_the_backend_is_ray_only_where_it_pays(hardware, visible, expected, monkeypatch):
    """``visible``: the GPUs CUDA would show (CUDA_VISIBLE_DEVICES); gpus: auto uses them through Ray."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    assert backend_name(HardwareSpec(**hardware)) == expected


def test_the_local_backend_refuses_gpus_and_clusters():
    with pytest.raises(ValueError, match="backend local runs on this machine's CPUs only"):
        Spec(data={"train": "x.csv", "target": "y"}, hardware={"backend": "local", "gpus": 1})


def _slow_trial(payload, spec):
    time.sleep(60)


def test_a_trial_past_its_hard_limit_is_cancelled_and_the_limit_shrinks_with_the_time_left(executor, tmp_path):
    search = Search([get_family("linear")], "binary", get_metric("roc_auc", "binary"),
                    f"sqlite:///{tmp_path / 's.db'}", "s", seed=0, max_trials=2, trial_time_limit_s=1.0)
    started = time.monotonic()
    outcomes = search.run(executor, executor.put(None), lambda: started + 60, trial_fn=_slow_trial)
    assert [o.error for o in outcomes] == ["timeout: ran past its limit of 1.0s"] * 2
    assert time.monotonic() - started < 15  # cancelled, not waited for
    assert search.trial_limit_s(now=100.0, deadline=100.4) == pytest.approx(0.4)  # the search's time left
    assert search.trial_limit_s(now=100.0, deadline=500.0) == 1.0


class _PressesCtrlCWhenCollected:
    """Ctrl-C arriving while the garbage collector runs a finalizer, as SQLAlchemy's
    do while Optuna writes: Python prints the KeyboardInterrupt raised there and drops it."""

    def __del__(self):
        os.kill(os.getpid(), signal.SIGINT)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # the dropped KeyboardInterrupt
def test_ctrl_c_dropped_inside_a_finalizer_still_stops_the_search(executor, tmp_path):
    search = Search([get_family("linear")], "binary", get_metric("roc_auc", "binary"),
                    f"sqlite:///{tmp_path / 's.db'}", "s", seed=0, max_trials=12, trial_time_limit_s=0.5)
    # Python's own handler, or SIG_IGN where the suite was started in the background
    before = signal.getsignal(signal.SIGINT)
    started = time.monotonic()
    outcomes = search.run(executor, executor.put(None), lambda: started + 60, trial_fn=_slow_trial,
                          on_outcome=lambda outcome: _PressesCtrlCWhenCollected())
    assert search.interrupted
    assert len(outcomes) == executor.slots  # the first trials out, then it stopped: not all twelve
    assert signal.getsignal(signal.SIGINT) is before  # Ctrl-C is handled as before the search again
