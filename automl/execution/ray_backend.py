"""The Ray backend: trials as Ray tasks, on an embedded local instance or a cluster."""

from __future__ import annotations

import asyncio
import logging
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from automl.execution.base import Answer, Executor, Handle, Placement, Question, trial_slots
from automl.execution.ray_gpu_workers import GpuWorkerPool, run_placed


class _Mailbox:
    """A Ray actor where workers post fold scores and wait for the driver's verdict."""

    def __init__(self) -> None:
        self.waiting: dict[tuple[Any, int], tuple[float, asyncio.Future]] = {}
        self.posted = asyncio.Event()

    async def ask(self, key: Any, step: int, score: float) -> bool:
        verdict = asyncio.get_running_loop().create_future()
        self.waiting[(key, step)] = (score, verdict)
        self.posted.set()
        return await verdict

    async def questions(self) -> list[Question]:
        """Long poll: returns once at least one question waits for an answer."""
        await self.posted.wait()
        self.posted.clear()
        return [(key, step, score) for (key, step), (score, verdict) in self.waiting.items() if not verdict.done()]

    async def answer(self, answers: list[Answer]) -> None:
        for key, step, stop in answers:
            _, verdict = self.waiting.pop((key, step), (None, None))
            if verdict is not None and not verdict.done():
                verdict.set_result(stop)


@dataclass(frozen=True)
class MailboxLink:
    mailbox: Any
    key: Any

    def connect(self) -> Callable[[int, float], bool]:
        import ray

        def ask(step: int, score: float) -> bool:
            try:
                return ray.get(self.mailbox.ask.remote(self.key, step, score))
            except ray.exceptions.RayError:  # the mailbox is gone: go on without pruning
                return False
        return ask


TEMP_PREFIX = "automl-ray-"
"""Embedded instances keep their files in ``TEMP_PREFIX<driver pid>-<random>``."""


def _remove_stale_temp_dirs(parent: str) -> None:
    """Remove the folders of embedded instances whose driver is gone (killed, so it
    could not clean up after itself)."""
    for folder in Path(parent).glob(f"{TEMP_PREFIX}*-*"):
        pid = folder.name.removeprefix(TEMP_PREFIX).split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
"""Set to 0, Ray runs as on a laptop: its node address is the loopback one and its
servers listen on 127.0.0.1 only (Ray 2.60 has no other switch for that)."""


def _loopback_only() -> Callable[[], None]:
    """Make the next local Ray instance listen on 127.0.0.1 only; returns the undo.

    Its processes read the variable from the environment they inherit; this process
    read it when it imported Ray, so Ray's copy of the flag is set as well."""
    from ray._private import ray_constants

    saved_env, saved_flag = os.environ.get(LOOPBACK_ENV), ray_constants.ENABLE_RAY_CLUSTER
    os.environ[LOOPBACK_ENV] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False

    def restore() -> None:
        ray_constants.ENABLE_RAY_CLUSTER = saved_flag
        if saved_env is None:
            os.environ.pop(LOOPBACK_ENV, None)
        else:
            os.environ[LOOPBACK_ENV] = saved_env
    return restore


PACKAGE_DIR = Path(__file__).resolve().parents[1]
"""The ``automl`` package itself, which cluster nodes get through the job's ``py_modules``."""
MAILBOX_LOST = ("the pruning mailbox (a Ray actor) was lost ({error}); the run goes on without pruning")

TASK_RETRIES = 1
"""A task whose worker process dies (killed, node lost) is run once more, then recorded as failed."""


class RayExecutor(Executor):
    """Trials as Ray tasks: on an embedded local instance started for the run
    (and stopped after it), or on an existing cluster when ``address`` is set,
    which is joined and never shut down. On a cluster, the ``automl`` package
    travels to the workers in the job's runtime environment (``py_modules``);
    its dependencies must be installed on every node.

    The embedded instance is private to the run: always a new one (never a
    cluster that ``ray start`` left running on the machine), bound to 127.0.0.1,
    token authentication on, no dashboard, usage statistics off, and its
    session files in a temporary folder removed with it."""

    close_s = 2.0
    """Cancelling trials and stopping Ray: 1.4-1.6 s measured on 2 cores."""

    def __init__(self, address: str | None = None, cpus: int | None = None, gpus: int = 0,
                 cpus_per_trial: int = 1):
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # never phone home
        import ray

        self._ray = ray
        self._owns_ray = False
        self._temp_dir: str | None = None
        if not ray.is_initialized():
            if address:
                ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False,
                         runtime_env={"py_modules": [str(PACKAGE_DIR)]})
            else:
                self._start_private(cpus, gpus)
        self._slots = trial_slots(ray.cluster_resources().get("CPU", 1), cpus, cpus_per_trial)
        # On a cluster, trials spread over its nodes: Ray's default packs them onto the
        # driver's node while it has room, and a busy head node then ran every trial.
        strategy = "SPREAD" if address else "DEFAULT"
        self._remote = ray.remote(max_retries=TASK_RETRIES, scheduling_strategy=strategy)(run_placed)
        self._mailbox = self._questions = None
        """Started with the first ``report_link``: a run validated on one split never asks."""
        self._gpu_workers: GpuWorkerPool | None = None
        self.warnings: list[str] = []

    @property
    def slots(self) -> int:
        return self._slots

    @property
    def gpus(self) -> float:
        return self._ray.cluster_resources().get("GPU", 0)

    def start_gpu_workers(self, count: int, resources: dict[str, float], warm_up: Callable[[], Any]) -> None:
        if count and self.gpus:
            self._gpu_workers = GpuWorkerPool(self._ray, count, resources, warm_up)

    @property
    def ready_gpu_workers(self) -> int | None:
        """None also where every worker failed to warm up: GPU trials then start their own."""
        return self._gpu_workers.ready if self._gpu_workers and self._gpu_workers.size else None

    @property
    def warming(self) -> bool:
        return bool(self._gpu_workers and self._gpu_workers.warming_refs())

    @property
    def gpu_workers_ready_after_s(self) -> list[float]:
        return list(self._gpu_workers.ready_after_s) if self._gpu_workers else []

    def put(self, obj: Any) -> Any:
        return self._ray.put(obj)

    def submit(self, fn: Callable, *args: Any, num_cpus: float = 1, num_gpus: float = 0) -> Handle:
        if num_gpus and self._gpu_workers is not None:
            handle = self._gpu_workers.submit(fn, *args)
            if handle is not None:
                return handle
        return self._remote.options(num_cpus=num_cpus, num_gpus=num_gpus).remote(fn, *args)

    def wait(self, handles: list[Handle], timeout: float) -> tuple[list[Handle], list[Question]]:
        no_limit = math.isinf(timeout)
        listening = [self._questions] if self._questions is not None else []
        warming = self._gpu_workers.warming_refs() if self._gpu_workers else []
        if not handles and not listening and not warming:
            return [], []
        if warming:  # wake up to drop a worker that cannot start
            timeout, no_limit = min(timeout, self._gpu_workers.next_overdue_at() - time.monotonic()), False
        ready, _ = self._ray.wait([*handles, *listening, *warming], num_returns=1,
                                  timeout=None if no_limit else max(0.0, timeout))
        done, _ = self._ray.wait(handles, num_returns=len(handles), timeout=0) if handles else ([], [])
        if warming:
            self._settle_warm_ups(warming)
        questions: list[Question] = []
        if listening and self._questions in ready:
            try:
                questions = self._ray.get(self._questions)
                self._questions = self._mailbox.questions.remote()
            except self._ray.exceptions.RayError as exc:
                self._lose_mailbox(exc)
        return done, questions

    def _settle_warm_ups(self, warming: list[Any]) -> None:
        """Take in the GPU workers' warm-ups that ended, and drop those overdue."""
        warmed, _ = self._ray.wait(warming, num_returns=len(warming), timeout=0)
        for warm_up in warmed:
            if (warning := self._gpu_workers.settle(warm_up)) is not None:
                self.warnings.append(warning)
        self.warnings += self._gpu_workers.drop_overdue()

    def _lose_mailbox(self, error: Exception) -> None:
        """Go on without pruning: workers' questions get "go on" (see ``MailboxLink``)."""
        self._questions = None
        self.warnings.append(MAILBOX_LOST.format(error=type(error).__name__))

    def answer(self, answers: list[Answer]) -> None:
        if answers and self._questions is not None:
            self._mailbox.answer.remote(answers)

    def report_link(self, key: Any) -> MailboxLink:
        if self._mailbox is None:
            # On the head node: the node that stays while workers come and go.
            self._mailbox = self._ray.remote(num_cpus=0, resources={"node:__internal_head__": 0.001})(
                _Mailbox).remote()
            self._questions = self._mailbox.questions.remote()
        return MailboxLink(self._mailbox, key)

    def result(self, handle: Handle) -> tuple[Any, Placement]:
        try:
            value = self._ray.get(handle)
        except Exception as exc:
            if self._gpu_workers is not None:
                self._gpu_workers.finish(handle, worker_lost=self.is_lost(exc))
            raise
        if self._gpu_workers is not None:
            self._gpu_workers.finish(handle, worker_lost=False)
        return value

    def is_lost(self, error: Exception) -> bool:
        """Ray's own errors (a crashed worker, a dead node, a lost object) but not a task's:
        Ray wraps those in RayTaskError."""
        exceptions = self._ray.exceptions
        return isinstance(error, exceptions.RayError) and not isinstance(error, exceptions.RayTaskError)

    def cancel(self, handle: Handle) -> None:
        if self._gpu_workers is not None and self._gpu_workers.owns(handle):
            self._gpu_workers.cancel(handle)
        else:
            self._ray.cancel(handle, force=True)

    def _start_private(self, cpus: int | None, gpus: int) -> None:
        """A new local instance. Ray turns token authentication on for it by itself
        (unless RAY_AUTH_MODE says otherwise); setting the variable here, after Ray was
        imported, would reach its processes but not this one."""
        # Short and private: Ray's socket paths must stay under 108 characters.
        parent = "/tmp" if os.path.isdir("/tmp") else tempfile.gettempdir()
        _remove_stale_temp_dirs(parent)
        self._temp_dir = tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{os.getpid()}-", dir=parent)
        self._owns_ray = True
        self._restore_network = _loopback_only()
        try:
            self._ray.init(address="local", num_cpus=cpus or os.cpu_count(), num_gpus=gpus, include_dashboard=False,
                           _temp_dir=self._temp_dir, logging_level=logging.ERROR, log_to_driver=False)
        except BaseException:
            self.close()  # whatever it started before failing
            raise

    def close(self) -> None:
        if getattr(self, "_gpu_workers", None) is not None:
            self._gpu_workers.close()
        if getattr(self, "_mailbox", None) is not None:
            self._ray.kill(self._mailbox)
            self._mailbox = None
        if self._owns_ray:
            self._ray.shutdown()
            self._owns_ray = False
            self._restore_network()
        if self._temp_dir:
            shutil.rmtree(self._temp_dir, ignore_errors=True)
            self._temp_dir = None
