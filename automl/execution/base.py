"""The interface every execution backend follows.

The search calls ``put``, ``submit``, ``wait``, ``result``, ``cancel``,
``answer``, ``report_link`` and ``slots``; nothing else about the backend.

Workers never open the run's study. They ask the driver, through the backend,
whether to stop after each fold (``report_link``); the driver answers from the
study it owns (see ``Search``). So the study can stay in one SQLite file on the
driver's disk while trials run on machines that cannot see that disk.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Handle = Any
Question = tuple[Any, int, float]
"""(trial key, fold step, running score): a worker asking whether to stop."""
Answer = tuple[Any, int, bool]
"""(trial key, fold step, stop?)."""


@dataclass
class Placement:
    """Where and how a task ran, for the trial log."""

    node_id: str = ""
    pid: int = 0
    gpu_ids: list = field(default_factory=list)


class Executor(ABC):
    """Runs functions somewhere, several at once."""

    close_s: float = 0.0
    """Seconds ``close`` takes, measured: the run keeps them back at the end of its budget."""
    warnings: list[str]
    """What went wrong in the backend's own machinery that the run went on without
    (a lost helper actor, say): said once each, then cleared by ``take_warnings``."""

    def take_warnings(self) -> list[str]:
        taken, self.warnings = self.warnings, []
        return taken

    @property
    @abstractmethod
    def slots(self) -> int:
        """How many trials can run at the same time."""

    @property
    def gpus(self) -> float:
        """The GPUs trials may ask for (none but on Ray)."""
        return 0

    def start_gpu_workers(self, count: int, resources: dict[str, float],  # noqa: B027 (no GPUs: none to start)
                          warm_up: Callable[[], Any]) -> None:
        """Start ``count`` workers that hold ``resources`` (``num_cpus``, ``num_gpus``: a trial's
        on a GPU) for the whole search, each warmed up by ``warm_up`` once: trials given a GPU
        then run in them, one at a time, and only the warm-up pays what a process's first fit
        on a GPU costs. A backend without GPUs starts none."""

    @property
    def ready_gpu_workers(self) -> int | None:
        """GPU workers warmed up and not lost, whether busy or idle; None where none were
        started (each GPU trial then starts in a worker of its own)."""
        return None

    @property
    def warming(self) -> bool:
        """Whether a GPU worker is still warming up (``wait`` returns when one is ready)."""
        return False

    @property
    def gpu_workers_ready_after_s(self) -> list[float]:
        """Seconds each GPU worker took to start and warm up, for run.json's timings."""
        return []

    @abstractmethod
    def put(self, obj: Any) -> Any:
        """Store shared data once; the returned reference is passed to tasks."""

    @abstractmethod
    def submit(self, fn: Callable, *args: Any, num_cpus: float = 1, num_gpus: float = 0) -> Handle: ...

    @abstractmethod
    def wait(self, handles: list[Handle], timeout: float) -> tuple[list[Handle], list[Question]]:
        """Block until a task finishes, a worker asks a question, or the timeout passes."""

    @abstractmethod
    def answer(self, answers: list[Answer]) -> None:
        """Reply to the workers' questions."""

    @abstractmethod
    def report_link(self, key: Any) -> Any:
        """A picklable object whose ``connect()`` gives a task its ``(step, score) -> stop?`` function."""

    @abstractmethod
    def result(self, handle: Handle) -> tuple[Any, Placement]:
        """The function's return value and where it ran; raises if the worker was lost."""

    def is_lost(self, error: Exception) -> bool:
        """Whether ``error``, raised by ``result``, says the worker itself was lost (killed,
        out of memory, its node gone) rather than the task failing on its own."""
        return False

    @abstractmethod
    def cancel(self, handle: Handle) -> None:
        """Stop a running task at once (its worker is killed)."""

    def close(self) -> None:  # noqa: B027 -- a backend that starts nothing has nothing to release
        """Release what the executor started."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


def trial_slots(offered_cpus: float, cap: int | None, cpus_per_trial: int) -> int:
    """Trials at once: the CPUs the run may use (the cluster's, capped by
    ``hardware.cpus``) divided by the CPUs each trial asks for; at least one."""
    usable = min(cap, offered_cpus) if cap else offered_cpus
    return max(1, int(usable // cpus_per_trial))
