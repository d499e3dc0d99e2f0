"""Where trials run: one small interface, and its Ray backend.

The search only ever calls ``put``, ``submit``, ``wait``, ``result``,
``cancel`` and ``slots``; a cluster, or another backend, plugs in here.
"""

from __future__ import annotations

import logging
import os
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

Handle = Any


class Executor(ABC):
    """Runs functions somewhere, several at once."""

    @property
    @abstractmethod
    def slots(self) -> int:
        """How many trials can run at the same time."""

    @abstractmethod
    def put(self, obj: Any) -> Any:
        """Store shared data once; the returned reference is passed to tasks."""

    @abstractmethod
    def submit(self, fn: Callable, *args: Any, num_cpus: float = 1, num_gpus: float = 0) -> Handle: ...

    @abstractmethod
    def wait(self, handles: list[Handle], timeout: float) -> list[Handle]:
        """The handles that finished (at least one, unless the timeout passed)."""

    @abstractmethod
    def result(self, handle: Handle) -> Any:
        """The function's return value; raises if the worker died."""

    @abstractmethod
    def cancel(self, handle: Handle) -> None:
        """Stop a running task at once (its worker is killed)."""

    def close(self) -> None:  # noqa: B027 -- a backend that starts nothing has nothing to release
        """Release what the executor started."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


class RayExecutor(Executor):
    """Trials as Ray tasks: on an embedded local instance started for the run
    (and stopped after it), or on an existing cluster when ``address`` is set."""

    def __init__(self, address: str | None = None, cpus: int | None = None, gpus: int = 0,
                 cpus_per_trial: int = 1):
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # never phone home
        import ray

        self._ray = ray
        self._owns_ray = False
        if not ray.is_initialized():
            if address:
                ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False)
            else:
                ray.init(num_cpus=cpus or os.cpu_count(), num_gpus=gpus, include_dashboard=False,
                         _node_ip_address="127.0.0.1", logging_level=logging.ERROR,
                         log_to_driver=False)
                self._owns_ray = True
        available = int(ray.cluster_resources().get("CPU", 1))
        self._cpus = min(cpus, available) if cpus else available
        self._cpus_per_trial = cpus_per_trial
        self._remote_fns: dict[Callable, Any] = {}

    @property
    def slots(self) -> int:
        return max(1, self._cpus // self._cpus_per_trial)

    def put(self, obj: Any) -> Any:
        return self._ray.put(obj)

    def submit(self, fn: Callable, *args: Any, num_cpus: float = 1, num_gpus: float = 0) -> Handle:
        remote = self._remote_fns.get(fn)
        if remote is None:
            remote = self._remote_fns[fn] = self._ray.remote(max_retries=0)(fn)
        return remote.options(num_cpus=num_cpus, num_gpus=num_gpus).remote(*args)

    def wait(self, handles: list[Handle], timeout: float) -> list[Handle]:
        done, _ = self._ray.wait(handles, num_returns=1, timeout=max(0.0, timeout))
        return done

    def result(self, handle: Handle) -> Any:
        return self._ray.get(handle)

    def cancel(self, handle: Handle) -> None:
        self._ray.cancel(handle, force=True)

    def close(self) -> None:
        if self._owns_ray:
            self._ray.shutdown()
            self._owns_ray = False
