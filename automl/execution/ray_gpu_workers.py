"""GPU workers for a Ray run: actors started with the search, each holding a GPU trial's
resources until the run ends, warmed up once, then running GPU trials one after another.

Why not a Ray task per GPU trial: a task may start in a new worker process, which pays,
inside the trial's time limit, the process start, the imports and CUDA's start (6.4 s on
an H100: its context, kernels loaded on first use). In a 90 s fit of adult on an H100, new
workers' first MLP trials took 10-20 s to their first fold's end: pruned after a one-epoch
first fold, or cancelled at their limit, and a cancel kills its worker, so the next trial
started cold again. Here only the warm-up pays that, while the CPU trials begin."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from automl.execution.base import Placement


def run_placed(fn: Callable, *args: Any) -> tuple[Any, Placement]:
    """``fn(*args)`` and where it ran, in a Ray worker (a task's or an actor's)."""
    import ray

    value = fn(*args)
    return value, Placement(ray.get_runtime_context().get_node_id(), os.getpid(), ray.get_gpu_ids())


class _GpuWorker:
    """The actor: a process holding its resources for the run."""

    def warm_up(self, fn: Callable[[], Any]) -> None:
        fn()

    def run(self, fn: Callable, *args: Any) -> tuple[Any, Placement]:
        return run_placed(fn, *args)


@dataclass
class _Worker:
    actor: Any
    warming: Any
    """The warm-up's object reference while it runs; None once the worker is ready."""
    started: float
    """time.monotonic() when the actor was asked for."""
    running: Any = None
    """The trial it runs now (its object reference)."""


WARM_UP_FAILED = "a GPU worker failed to warm up ({error}); GPU trials go on without it"
START_LIMIT_S = 90.0
"""A worker not warmed up this long after it was asked for is dropped: its resources are not
to be had (a cluster's GPUs taken by other jobs, say). On an H100 under load, a worker's
start and CUDA's took about 20 s."""
NOT_STARTED = (f"a GPU worker did not start within {START_LIMIT_S:.0f}s (no free GPU share or CPU for it?); "
               "GPU trials go on without it")


class GpuWorkerPool:
    """``count`` GPU workers with ``resources`` (Ray's ``num_cpus``, ``num_gpus``), each warmed
    up by ``warm_up``. A worker cancelled at a trial's limit, or lost, is replaced by a new one,
    which warms up in turn; one whose warm-up fails, or that has not warmed up START_LIMIT_S
    after it was asked for, is dropped."""

    def __init__(self, ray: Any, count: int, resources: dict[str, float], warm_up: Callable[[], Any]):
        self._ray = ray
        self._actor_class = ray.remote(_GpuWorker).options(max_restarts=0, **resources)
        self._warm_up = warm_up
        self._workers = [self._start() for _ in range(count)]
        self.ready_after_s: list[float] = []
        """Seconds from each worker's start to the end of its warm-up, in the order they ended."""

    def _start(self) -> _Worker:
        actor = self._actor_class.remote()
        return _Worker(actor, actor.warm_up.remote(self._warm_up), time.monotonic())

    @property
    def size(self) -> int:
        """Workers not dropped, warming up or ready."""
        return len(self._workers)

    @property
    def ready(self) -> int:
        return sum(worker.warming is None for worker in self._workers)

    def warming_refs(self) -> list[Any]:
        return [worker.warming for worker in self._workers if worker.warming is not None]

    def settle(self, warm_up: Any) -> str | None:
        """Take in a warm-up that ended: its worker is ready, or dropped if it failed (returns
        the warning to give)."""
        worker = next(worker for worker in self._workers if worker.warming == warm_up)
        try:
            self._ray.get(warm_up)
        except Exception as exc:  # the actor died, or the warm-up raised (no usable GPU, say)
            self._workers.remove(worker)
            self._ray.kill(worker.actor)
            lines = str(exc).strip().splitlines()  # a task's error ends with the exception's own line
            return WARM_UP_FAILED.format(error=lines[-1] if lines else type(exc).__name__)
        worker.warming = None
        self.ready_after_s.append(round(time.monotonic() - worker.started, 2))
        return None

    def next_overdue_at(self) -> float | None:
        """When the first worker still warming up is overdue (time.monotonic()); None if none warms up."""
        return min((w.started + START_LIMIT_S for w in self._workers if w.warming is not None), default=None)

    def drop_overdue(self) -> list[str]:
        """Drop the workers still warming up START_LIMIT_S after they were asked for; returns the warnings."""
        overdue = [w for w in self._workers if w.warming is not None and time.monotonic() >= w.started + START_LIMIT_S]
        for worker in overdue:
            self._workers.remove(worker)
            self._ray.kill(worker.actor)
        return [NOT_STARTED] * len(overdue)

    def submit(self, fn: Callable, *args: Any) -> Any | None:
        """Run ``fn(*args)`` on an idle ready worker; None if none is idle."""
        worker = next((w for w in self._workers if w.warming is None and w.running is None), None)
        if worker is None:
            return None
        worker.running = worker.actor.run.remote(fn, *args)
        return worker.running

    def owns(self, handle: Any) -> bool:
        return self._running_on(handle) is not None

    def _running_on(self, handle: Any) -> _Worker | None:
        return next((worker for worker in self._workers if worker.running == handle), None)

    def finish(self, handle: Any, worker_lost: bool) -> None:
        """A trial's result was taken: its worker is idle again, or replaced if it was lost."""
        worker = self._running_on(handle)
        if worker is None:
            return
        worker.running = None
        if worker_lost:
            self._replace(worker)

    def cancel(self, handle: Any) -> None:
        """Stop a trial at once: an actor's task cannot be forced to stop, so its worker is
        killed and a new one started."""
        worker = self._running_on(handle)
        if worker is not None:
            self._replace(worker)

    def _replace(self, worker: _Worker) -> None:
        self._ray.kill(worker.actor)
        self._workers[self._workers.index(worker)] = self._start()

    def close(self) -> None:
        for worker in self._workers:
            self._ray.kill(worker.actor)
        self._workers = []
