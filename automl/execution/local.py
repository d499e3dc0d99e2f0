"""The local backend: trials in worker processes on this machine, without Ray.

Ray's own start and stop cost a small machine most of a short budget (measured on
2 cores: ``ray.init`` 4.5-6.5 s, a first task's worker ~3 s more, shutdown 1.5 s).
These workers start in milliseconds with every model library imported: each is a
fork of a *zygote*, a fresh interpreter that imports the libraries once, started
as early as possible so that its imports run while the driver loads the data.

Why not fork the driver itself: a process that has run OpenMP (LightGBM,
scikit-learn) hangs its forked children at their first parallel region (measured
here), and a driver, or a notebook calling ``AutoML().fit``, may have. The zygote
never fits anything. Why not ``multiprocessing``'s fork server: its workers
re-import the driver's main script, which runs an unguarded script's fit again.

One worker per slot, each with a socket to the driver: it maps the shared data
once (see ``SharedSegment``), then runs one task at a time and sends back its
result, or its running fold score to ask whether to stop. Cancelling a task kills
its worker; the next task gets a new one. Workers and the zygote exit when the
driver goes, even killed. A closed executor's zygote is kept for the next one in the
same process (see ``_spare``).
"""

from __future__ import annotations

import atexit
import ctypes
import itertools
import math
import mmap
import os
import pickle
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import import_module
from multiprocessing.connection import Connection
from multiprocessing.connection import wait as wait_for
from multiprocessing.reduction import recv_handle, send_handle
from typing import Any

from automl.errors import short_traceback
from automl.execution.base import Answer, Executor, Handle, Placement, Question, trial_slots

PRELOAD = ("automl.trial", "automl.models.lightgbm", "automl.models.hist_gradient_boosting",
           "automl.models.linear", "automl.models.extra_trees", "automl.models.random_forest",
           "automl.models.knn", "automl.models.mlp")
"""What the zygote imports before it forks workers (torch is imported by the MLP only when it builds a network)."""
START_TIMEOUT_S = 120.0
"""How long a new worker may take to appear (the zygote's imports come first)."""
PARENT_CHECK_S = 0.5
STOP_TIMEOUT_S = 2.0


class WorkerLost(RuntimeError):
    """A worker process ended while it ran a task (killed, out of memory, crashed)."""


@dataclass(frozen=True)
class SharedRef:
    """A reference to data ``put`` once and kept by every worker."""

    key: int


ALIGNMENT = 64
"""Where each array starts in a segment: a multiple of a cache line, as numpy's own allocations."""


class SharedSegment:
    """An object pickled into an anonymous in-memory file that every worker maps.

    Pickle protocol 5 writes the object's large arrays (numpy's, and so the blocks of a
    pandas frame) out of band; they are laid out after the small in-band pickle, and a
    worker unpickles them as views of its mapping, without a copy. So the workers
    share one copy of the training data instead of each holding its own, and the
    driver holds no pickled copy at all (1M rows x 25 columns: ~190 MB of arrays, once
    instead of once per worker and once more in the driver). The mapping is private
    (copy-on-write): a model that writes into its input copies only the pages it
    writes, and never changes another worker's data."""

    def __init__(self, obj: Any):
        buffers: list[pickle.PickleBuffer] = []
        head = pickle.dumps(obj, protocol=5, buffer_callback=buffers.append)
        self.file = _anonymous_file()
        self.head_bytes = len(head)
        self.buffers: list[tuple[int, int]] = []
        """(offset, length) of each out-of-band buffer."""
        _write_all(self.file, head)
        offset = len(head)
        for buffer in buffers:
            raw = buffer.raw()
            offset = _pad_to(self.file, offset, ALIGNMENT)
            _write_all(self.file, raw)
            self.buffers.append((offset, raw.nbytes))
            offset += raw.nbytes

    @property
    def layout(self) -> tuple[int, list[tuple[int, int]]]:
        return self.head_bytes, self.buffers

    @staticmethod
    def load(fd: int, layout: tuple[int, list[tuple[int, int]]]) -> Any:
        """In a worker: map the file (its descriptor is closed here) and unpickle the object."""
        head_bytes, buffers = layout
        with os.fdopen(fd, "rb") as file:
            size = os.fstat(file.fileno()).st_size
            mapping = mmap.mmap(file.fileno(), size, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ | mmap.PROT_WRITE)
        view = memoryview(mapping)
        return pickle.loads(view[:head_bytes], buffers=[view[start:start + length] for start, length in buffers])

    def close(self) -> None:
        os.close(self.file)


def _anonymous_file() -> int:
    """A file in memory that disappears with its last descriptor and mapping."""
    if hasattr(os, "memfd_create"):
        return os.memfd_create("automl-shared", os.MFD_CLOEXEC)
    file = tempfile.TemporaryFile()  # macOS: an unlinked file, in the page cache while in use
    fd = os.dup(file.fileno())
    file.close()
    return fd


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data).cast("B")
    while view:
        view = view[os.write(fd, view):]


def _pad_to(fd: int, offset: int, alignment: int) -> int:
    padding = -offset % alignment
    _write_all(fd, bytes(padding))
    return offset + padding


class Zygote:
    """The process that forks workers: started early, it imports PRELOAD once."""

    def __init__(self) -> None:
        self.control, theirs = socket.socketpair()
        quiet = subprocess.DEVNULL if not os.environ.get("AUTOML_DEBUG") else None
        self.process = subprocess.Popen([sys.executable, "-m", "automl.execution._zygote", str(theirs.fileno())],
                                        pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL, stdout=quiet,
                                        stderr=quiet)
        theirs.close()

    def fork(self) -> tuple[Connection, int]:
        """A new worker: its connection and process id."""
        self.control.settimeout(START_TIMEOUT_S)
        try:
            self.control.sendall(b"f")
            message, fds, _, _ = socket.recv_fds(self.control, 32, 1)
        except OSError as exc:
            raise WorkerLost(f"could not start a worker process: {exc}") from exc
        if not fds:
            raise WorkerLost(f"could not start a worker process (zygote exit status {self.process.poll()})")
        return Connection(fds[0]), int(message)

    def stop(self, at_once: bool = False) -> None:
        """Let it see the end of its input and exit (it reaps the workers killed just
        before; orphaned, they could stay zombies), or kill it ``at_once``: a zygote no
        run used may still be importing, for seconds."""
        self.control.close()
        try:
            self.process.wait(timeout=0 if at_once else STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


_spare: Zygote | None = None
"""A zygote no executor is using: started early for the next run, or kept by the last one's
``close``. A second fit in the same process (a notebook's, a grid search's, a test suite's)
then starts its workers at once instead of after the imports (2-3 s on 2 cores). It exits
with this process, or at ``stop_spare``."""


def start_early() -> None:
    """Start the next local executor's zygote now, so its imports overlap the driver's work."""
    global _spare
    if _spare is None or _spare.process.poll() is not None:
        _spare = Zygote()


def stop_spare() -> None:
    """Stop the spare zygote, if there is one (at this process's exit, or on demand)."""
    global _spare
    if _spare is not None:
        _spare.stop(at_once=True)
        _spare = None


atexit.register(stop_spare)


def _take_spare() -> Zygote:
    global _spare
    zygote, _spare = _spare, None
    return zygote if zygote is not None and zygote.process.poll() is None else Zygote()


def _keep_spare(zygote: Zygote) -> None:
    """Keep a zygote an executor is done with for the next one, unless one is kept already."""
    global _spare
    if _spare is None and zygote.process.poll() is None:
        _spare = zygote
    else:
        zygote.stop()


@dataclass
class _Worker:
    connection: Connection
    pid: int
    has: set[int]
    """The shared objects it holds."""
    task: Handle | None = None


class LocalExecutor(Executor):
    """Trials in worker processes on this machine (see the module's docstring)."""

    close_s = 0.8
    """Cancelling the running trials (each recorded) and stopping the workers: 0.5-0.8 s measured."""

    def __init__(self, cpus: int | None = None, cpus_per_trial: int = 1):
        self._slots = trial_slots(os.cpu_count() or 1, cpus, cpus_per_trial)
        self._zygote = _take_spare()
        self._workers: list[_Worker] = []
        self._shared: dict[int, SharedSegment] = {}
        self._results: dict[Handle, tuple[str, Any]] = {}
        self._asking: dict[tuple[Any, int], _Worker] = {}
        self._handles = itertools.count()
        self.warnings: list[str] = []

    @property
    def slots(self) -> int:
        return self._slots

    def put(self, obj: Any) -> SharedRef:
        ref = SharedRef(len(self._shared))
        self._shared[ref.key] = SharedSegment(obj)
        return ref

    def submit(self, fn: Callable, *args: Any, num_cpus: float = 1, num_gpus: float = 0) -> Handle:
        if num_gpus:
            raise ValueError("the local backend runs on CPUs only; use hardware.backend: ray for GPUs")
        worker = self._idle_worker()
        for ref in (arg for arg in args if isinstance(arg, SharedRef) and arg.key not in worker.has):
            segment = self._shared[ref.key]
            worker.connection.send(("put", ref.key, segment.layout))
            send_handle(worker.connection, segment.file, worker.pid)
            worker.has.add(ref.key)
        worker.task = next(self._handles)
        worker.connection.send(("run", worker.task, fn, args))
        return worker.task

    def _idle_worker(self) -> _Worker:
        idle = [worker for worker in self._workers if worker.task is None]
        if idle:
            return idle[0]
        if len(self._workers) >= self._slots:
            raise RuntimeError(f"all {self._slots} workers are busy")
        connection, pid = self._zygote.fork()
        self._workers.append(_Worker(connection, pid, set()))
        return self._workers[-1]

    def wait(self, handles: list[Handle], timeout: float) -> tuple[list[Handle], list[Question]]:
        until = math.inf if math.isinf(timeout) else time.monotonic() + max(0.0, timeout)
        questions: list[Question] = []
        while not questions and not any(h in self._results for h in handles):
            busy = {worker.connection: worker for worker in self._workers if worker.task is not None}
            left = until - time.monotonic()
            if not busy or left <= 0:
                break
            for connection in wait_for(list(busy), timeout=None if math.isinf(left) else left):
                questions += self._receive(busy[connection])
        return [h for h in handles if h in self._results], questions

    def _receive(self, worker: _Worker) -> list[Question]:
        try:
            message = worker.connection.recv()
        except (EOFError, OSError):
            self._results[worker.task] = ("lost", f"worker process {worker.pid} ended while running the trial "
                                                  "(killed, out of memory, or crashed)")
            self._drop(worker)
            return []
        kind, key = message[0], message[1]
        if kind == "ask":
            self._asking[(key, message[2])] = worker
            return [(key, message[2], message[3])]
        self._results[worker.task] = (kind, message[2])
        worker.task = None
        return []

    def answer(self, answers: list[Answer]) -> None:
        for key, step, stop in answers:
            worker = self._asking.pop((key, step), None)
            if worker is not None and worker in self._workers:
                worker.connection.send(("answer", stop))

    def report_link(self, key: Any) -> DriverLink:
        return DriverLink(key)

    def result(self, handle: Handle) -> tuple[Any, Placement]:
        kind, value = self._results.pop(handle)
        if kind == "done":
            return value
        raise WorkerLost(value) if kind == "lost" else RuntimeError(value)

    def is_lost(self, error: Exception) -> bool:
        return isinstance(error, WorkerLost)

    def cancel(self, handle: Handle) -> None:
        self._results.pop(handle, None)
        for worker in [w for w in self._workers if w.task == handle]:
            self._drop(worker)

    def _drop(self, worker: _Worker) -> None:
        """Kill a worker (it may be running a task) and forget it."""
        try:
            os.kill(worker.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        worker.connection.close()
        self._workers.remove(worker)

    def close(self) -> None:
        workers = [worker.pid for worker in self._workers]
        for worker in list(self._workers):
            self._drop(worker)
        _wait_until_gone(workers, STOP_TIMEOUT_S)  # reaped by the zygote, which must outlive them
        if self._zygote is not None:
            _keep_spare(self._zygote)
            self._zygote = None
        for segment in self._shared.values():
            segment.close()
        self._shared.clear()


def _wait_until_gone(pids: list[int], timeout: float) -> None:
    until = time.monotonic() + timeout
    while time.monotonic() < until and any(_exists(pid) for pid in pids):
        time.sleep(0.01)


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@dataclass(frozen=True)
class DriverLink:
    """A worker's way to ask the driver whether its trial should stop."""

    key: Any

    def connect(self) -> Callable[[int, float], bool]:
        def ask(step: int, score: float) -> bool:
            _driver.send(("ask", self.key, step, score))
            return _driver.recv()[1]
        return ask


_driver: Connection | None = None
"""In a worker: its connection to the driver."""


def serve(control_fd: int) -> None:
    """The zygote: import PRELOAD, then fork a worker for each request until the driver goes."""
    control = socket.socket(fileno=control_fd)
    for module in PRELOAD:
        import_module(module)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the driver, which stops the workers
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # workers are reaped by the system
    zygote = os.getpid()
    while _requested(control):
        ours, theirs = socket.socketpair()
        pid = os.fork()
        if pid == 0:
            control.close()
            ours.close()
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            _work(Connection(theirs.detach()), zygote)
        socket.send_fds(control, [str(pid).encode()], [ours.fileno()])
        ours.close()
        theirs.close()


def _requested(control: socket.socket) -> bool:
    try:
        return control.recv(1) == b"f"
    except OSError:  # the driver is gone
        return False


def _work(connection: Connection, zygote: int) -> None:
    """A worker: run tasks as they come; exit when the driver or the zygote is gone."""
    global _driver
    _driver = connection
    threading.Thread(target=_exit_when_orphaned, args=(zygote,), daemon=True).start()
    shared: dict[int, Any] = {}
    while True:
        try:
            message = connection.recv()
        except (EOFError, OSError):
            os._exit(0)
        if message[0] == "put":
            shared[message[1]] = SharedSegment.load(recv_handle(connection), message[2])
            continue
        _, task, fn, args = message
        args = [shared[arg.key] if isinstance(arg, SharedRef) else arg for arg in args]
        try:
            reply = ("done", task, (fn(*args), Placement("local", os.getpid())))
        except Exception as exc:  # the task's own failure: the driver records it
            reply = ("error", task, short_traceback(exc))
        connection.send(reply)
        del reply, args
        _release_free_memory()


def _release_free_memory() -> None:
    """Give the heap a finished trial freed back to the system. glibc keeps it for reuse
    otherwise, and an idle worker would hold the high-water mark of its last trial
    (measured: ~270 MB after a LightGBM trial on 855k rows, one worker in two idle)."""
    if _malloc_trim is not None:
        _malloc_trim(0)


def _find_malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``; None elsewhere (musl, macOS)."""
    try:
        return ctypes.CDLL(None).malloc_trim  # the symbols this process has loaded, libc's among them
    except (OSError, AttributeError):
        return None


_malloc_trim = _find_malloc_trim()


def _exit_when_orphaned(zygote: int) -> None:
    """The zygote exits with the driver; a worker busy with a long fit notices here."""
    while os.getppid() == zygote:
        time.sleep(PARENT_CHECK_S)
    os._exit(1)
