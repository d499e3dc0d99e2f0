"""The planner: which model families a run tries, in what order, and with what share of the budget.

A family is tried when the spec allows it, it supports the task, and the budget
can pay for it: a family that knows its cost (the MLP) must fit at least
MIN_AFFORDABLE_TRIALS trials of its default configuration into the budget, or it
would take slots from cheaper families without getting far enough to win (measured
on the shared benchmarks: with one trial's worth of budget, the MLP cut the other
families' trials by two thirds and lowered the final score). Families left out
are reported with the reason, in ``run.json``. An explicit ``models.include`` is
always honoured.

Every chosen family's best-known configuration is tried first, so each family
is seen at its best before any is tuned. After that, budget shares decide
which family gets the next trial (see ``FamilyShares``), and that trial is the
family's next untried portfolio configuration, or, once those are spent, one
the sampler proposes. A family that is losing never spends the budget on its
further portfolio entries (measured on adult at 60 s: queueing every family's
whole portfolio up front used all 12 trials of the run on it).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from automl.budget import (
    BUSY_CPU_SHARE,
    BUSY_SAMPLE_S,
    CV_MIN_TRIALS,
    FEW_TRIALS_PER_CPU,
    FIRST_RESULT_SHARE,
    MAX_AUTO_CPUS_PER_TRIAL,
    MIN_AFFORDABLE_TRIALS,
    trial_time_limit_s,
)
from automl.devices import gpu_memory_bytes, run_gpus
from automl.errors import InputError
from automl.models import ModelFamily, family_names, get_family
from automl.spec import Spec

if TYPE_CHECKING:
    from automl.trial import Workload

MIN_SAMPLE_SHARE, MIN_SAMPLE_ROWS = 0.1, 100
"""A trial too large for its memory runs on a subsample of at least this share of its rows
(and this many); below that it is skipped."""
USEFUL_SAMPLE_SHARE, USEFUL_SAMPLE_ROWS = 0.5, 10_000
"""A family's first trial, once the run has a model, shows what the family can do here only
on half the rows, or on USEFUL_SAMPLE_ROWS at least: on a smaller sample for time it is not
run (see ``useful_first_rows``)."""


def useful_first_rows(train_rows: int) -> int:
    """The fewest rows a family's first trial must fit on to be worth its slot. Measured on
    5k x 2,000 with both cores busy: the linear, k-NN and forest first trials fit on 500-1,500
    rows scored AUC 0.53-0.75 and never joined the ensemble, and their slot slowed the
    LightGBM trials beside them (0.9488 on the holdout; without them, 0.9587)."""
    return min(int(USEFUL_SAMPLE_SHARE * train_rows), USEFUL_SAMPLE_ROWS)


class FamilyShares:
    """Which family gets the next trial, once every family has had its first.

    Families are ranked by their best cross-validated score so far; the best
    gets a share of 1/2 of the trial cost, the second 1/4, and so on (halved at
    each rank, normalised), and the next trial goes to the family furthest below
    its share. Cost is counted in each family's ``relative_cost`` per trial, not
    in seconds, so the same results give the same choices (determinism). A
    family keeps a small share however it ranks, so a family that starts badly
    can still catch up, while most of the budget tunes what is winning.
    """

    def __init__(self, families: list[ModelFamily], higher_is_better: bool):
        self.order = [family.name for family in families]
        self.cost = {family.name: family.relative_cost for family in families}
        self.higher_is_better = higher_is_better

    def shares(self, best_scores: dict[str, float]) -> dict[str, float]:
        sign = -1.0 if self.higher_is_better else 1.0
        scored = sorted((n for n in self.order if n in best_scores), key=lambda n: sign * best_scores[n])
        ranked = scored + [n for n in self.order if n not in best_scores]  # no result yet: last, in plan order
        raw = {name: 0.5 ** rank for rank, name in enumerate(ranked)}
        total = sum(raw.values())
        return {name: value / total for name, value in raw.items()}

    def next_family(self, best_scores: dict[str, float], trials: dict[str, int],
                    excluded: set[str] | frozenset[str] = frozenset()) -> str:
        """The family of the next trial, among those not ``excluded`` (never all of them)."""
        shares = self.shares(best_scores)
        used = {name: trials.get(name, 0) * self.cost[name] for name in self.order}
        spent = sum(used.values()) or 1.0
        candidates = [name for name in self.order if name not in excluded] or self.order
        return max(candidates, key=lambda name: (shares[name] - used[name] / spent, -self.order.index(name)))


GIB = 2**30


def memory_budget_bytes(memory_gb: float | None) -> float:
    """``budget.memory_gb`` in bytes; null: the memory this machine has available now."""
    if memory_gb is not None:
        return memory_gb * GIB
    import psutil

    return float(psutil.virtual_memory().available)


@dataclass(frozen=True)
class MemoryBudget:
    """What one trial may take of ``budget.memory_gb``, and how a larger one is made to fit.

    The data is held twice: by the driver, and once more where every worker maps it
    (Ray's object store, or the local backend's shared segment); what is left is
    shared evenly between the trials that run at once. A trial whose family
    estimates more than its share fits on a random subsample of each fold's
    training rows (estimates grow about linearly with rows), so it still
    predicts every validation row; one that would need less than MIN_SAMPLE_SHARE
    of the rows is skipped."""

    per_trial_bytes: float
    train_rows: int
    """Training rows of one fold fit."""
    n_features: int
    n_classes: int
    n_folds: int

    @classmethod
    def share(cls, total_bytes: float, data_bytes: float, slots: int, train_rows: int, n_features: int,
              n_classes: int, n_folds: int) -> MemoryBudget:
        per_trial = (total_bytes - 2 * data_bytes) / max(1, slots)
        return cls(max(0.0, per_trial), train_rows, n_features, n_classes, n_folds)

    def need_bytes(self, family: ModelFamily, params: dict[str, Any], rows: int | None = None) -> float:
        return family.estimated_trial_bytes(params, rows or self.train_rows, self.n_features, self.n_classes,
                                            self.n_folds)

    def rows_for(self, family: ModelFamily, params: dict[str, Any]) -> int | None:
        """None: the trial fits as it is; otherwise the rows to fit each fold on (0: skip it)."""
        need = self.need_bytes(family, params)
        if need <= self.per_trial_bytes:
            return None
        rows = int(self.train_rows * self.per_trial_bytes / need)
        return rows if rows >= max(MIN_SAMPLE_ROWS, MIN_SAMPLE_SHARE * self.train_rows) else 0


WALL_OVER_FIT = 2.5
"""A trial's wall time over its fitting time at a few thousand rows (predictions, train
scores, per-tree costs that do not shrink with the rows): 2.2-2.7 measured on adult at 6,000."""
THREAD_SPEEDUP_EXPONENT = 0.75
"""A fit on c threads runs about c**0.75 times faster than on one (LightGBM on 240k rows:
1.7x on 2 threads, measured)."""
MIN_SPEED, MAX_SPEED = 0.25, 8.0


def thread_speedup(cpus: int) -> float:
    return max(1, cpus) ** THREAD_SPEEDUP_EXPONENT


@dataclass
class TrialClock:
    """How long a trial of a family should take here, and how to keep it within a limit.

    Estimates start from each family's measured cost on an idle machine (``fold_fit_s``)
    and are corrected by what this run's own completed trials took: ``speed`` is their
    measured fit time over the estimate (2 on a machine busy with other work), per family
    once it has results, else over all. A trial estimated to take longer than it may fits
    each fold on a subsample that fits (as FLAML starts large data on a sample); one that
    would need under MIN_SAMPLE_SHARE of the rows is not started."""

    first_result_s: float
    """The time a trial may take before any has completed (FIRST_RESULT_SHARE of the budget)."""
    train_rows: int
    n_features: int
    n_folds: int
    cpus_per_trial: int = 1
    gpu_families: frozenset[str] = frozenset()
    """Families whose trials run on a GPU in this run."""
    ratios: dict[str, list[float]] = field(default_factory=dict)
    """Per family: measured fit seconds over estimated, one per completed trial."""

    def fit_estimate_s(self, family: ModelFamily, rows: int | None = None) -> float:
        """Idle-machine seconds of all of a trial's fold fits, on ``rows`` per fold: on the
        trial's threads, or for a family on a GPU, its ``gpu_speedup`` over one thread."""
        rows = rows or self.train_rows
        speedup = family.gpu_speedup if family.name in self.gpu_families else thread_speedup(self.cpus_per_trial)
        return self.n_folds * family.fold_fit_s(rows, self.n_features) / speedup

    def speed(self, family: ModelFamily) -> float:
        """The family's own measured ratio; before it has one, the other families' can say
        the machine is slow but never that it is fast: their fits may have ended early
        (early stopping, a time limit), which says nothing about this family's cost."""
        own = self.ratios.get(family.name)
        if own:
            return float(np.clip(np.median(own), MIN_SPEED, MAX_SPEED))
        if family.name in self.gpu_families:  # CPU trials' pace says nothing of a GPU's
            return 1.0
        others = [r for rs in self.ratios.values() for r in rs]
        return float(np.clip(np.median(others), 1.0, MAX_SPEED)) if others else 1.0

    def estimate_s(self, family: ModelFamily, rows: int | None = None) -> float:
        """Wall seconds a trial of the family's default configuration takes here."""
        return WALL_OVER_FIT * self.fit_estimate_s(family, rows) * self.speed(family)

    def least_s(self, family: ModelFamily, rows: int | None = None) -> float:
        """Wall seconds before a trial can return a model: all of it, or for a learner
        grown in steps, its first (``ModelFamily.first_step_share``)."""
        return self.estimate_s(family, rows) * family.first_step_share

    def observe(self, family: ModelFamily, fit_time_s: float, rows: int | None) -> None:
        """Learn from a completed trial: its fold fits took ``fit_time_s`` on ``rows`` each."""
        estimate = self.fit_estimate_s(family, rows)
        if estimate > 0 and fit_time_s > 0:
            self.ratios.setdefault(family.name, []).append(fit_time_s / estimate)

    def rows_for(self, family: ModelFamily, allowed_s: float, first: bool = False) -> int | None:
        """None: the trial can return a model within ``allowed_s`` as it is (``least_s``);
        otherwise the rows to fit each fold on (0: not even MIN_SAMPLE_SHARE of them would). A ``first`` trial (no model
        yet) is never left out: it gets MIN_SAMPLE_ROWS at least."""
        if self.least_s(family) <= allowed_s:
            return None
        rows = self.rows_within(family, allowed_s)
        if first:
            return min(self.train_rows, max(MIN_SAMPLE_ROWS, rows))
        return rows if rows >= max(MIN_SAMPLE_ROWS, MIN_SAMPLE_SHARE * self.train_rows) else 0

    def rows_within(self, family: ModelFamily, allowed_s: float) -> int:
        """The most rows whose estimate is within ``allowed_s`` (costs grow with the rows,
        faster than linearly for some families: bisection, not a ratio)."""
        low, high = 0, self.train_rows
        while high - low > max(1, self.train_rows // 1000):
            middle = (low + high) // 2
            low, high = (middle, high) if self.least_s(family, middle) <= allowed_s else (low, middle)
        return low




@dataclass(frozen=True)
class Validation:
    """How candidates are validated: k folds, or one split of ``split_size`` of the rows."""

    method: str
    """"kfold" or "split"."""
    folds: int
    split_size: float | None
    reason: str

    def describe(self) -> dict:
        return {"method": self.method, "folds": self.folds, "split_size": self.split_size, "reason": self.reason}


def choose_validation(spec: Spec, reference: ModelFamily, n_rows: int, n_features: int, cpus: int) -> Validation:
    """k-fold (``validation.folds``) while the budget pays for CV_MIN_TRIALS trials of
    ``reference``, then 3 folds, then one split; what the spec names, when it names one."""
    v = spec.validation
    if v.method == "kfold":
        return Validation("kfold", v.folds, None, "validation.method: kfold, as the spec says")
    if v.method == "split":
        return Validation("split", 1, v.split_size, "validation.method: split, as the spec says")
    affordable_s = spec.budget.time_s * cpus / CV_MIN_TRIALS
    for k in dict.fromkeys((v.folds, min(v.folds, 3))):
        trial_s = k * reference.fold_fit_s(int(n_rows * (k - 1) / k), n_features)
        if trial_s <= affordable_s:
            return Validation("kfold", k, None, f"{k}-fold: a {reference.name} trial takes ~{trial_s:.1f} CPU-s, "
                                                f"so the budget pays for {CV_MIN_TRIALS} or more")
    return Validation("split", 1, v.split_size,
                      f"one split, {v.split_size:.0%} of the rows validated on: on {n_rows:,} rows x {n_features:,} "
                      f"features a {k}-fold {reference.name} trial takes ~{trial_s:.0f} CPU-s, so the budget "
                      f"would pay for fewer than {CV_MIN_TRIALS}")


def cpus_busy_elsewhere() -> float:
    """CPUs other processes keep busy now: the machine's use over BUSY_SAMPLE_S, less this
    process's and its children's (the local backend's workers, importing as it plans)."""
    import psutil

    ours = [psutil.Process(), *psutil.Process().children(recursive=True)]
    for process in ours:
        process.cpu_percent(None)  # starts each one's count
    psutil.cpu_percent(None)
    time.sleep(BUSY_SAMPLE_S)
    used = psutil.cpu_percent(None) / 100 * (psutil.cpu_count() or 1)
    own = 0.0
    for process in ours:
        try:
            own += process.cpu_percent(None) / 100
        except psutil.Error:  # ended meanwhile
            pass
    return max(0.0, used - own)


def choose_cpus_per_trial(spec: Spec, trial_s: float, cpus: int,
                          busy_elsewhere: Callable[[], float] = cpus_busy_elsewhere) -> tuple[int, str]:
    """One CPU per trial, or all the run's when fewer than FEW_TRIALS_PER_CPU trials (of
    ``trial_s`` on one CPU) fit in the budget, unless other processes keep BUSY_CPU_SHARE
    of the CPUs busy (measured only then): a trial's threads then wait on each other at
    every step (LightGBM on 5k x 2,000 with both cores busy: 39.9 s on two threads, 31.5 s
    on one). What the spec names, when it names one."""
    named = spec.hardware.cpus_per_trial
    if named != "auto":
        return named, "hardware.cpus_per_trial, as the spec says"
    if spec.hardware.ray_address:  # its nodes' sizes are unknown here: a trial must fit on any
        return 1, "one CPU per trial on a cluster: a trial must fit on any of its nodes"
    per_cpu = spec.budget.time_s / max(trial_s, 1e-9)
    if per_cpu >= FEW_TRIALS_PER_CPU or cpus == 1:
        return 1, f"one CPU per trial, {cpus} at once: ~{per_cpu:.0f} trials per CPU fit in the budget"
    busy = busy_elsewhere()
    if busy >= BUSY_CPU_SHARE * cpus:
        return 1, (f"one CPU per trial: other processes keep ~{busy:.1f} of the {cpus} CPUs busy, and a trial's "
                   "threads would wait on each other")
    threads = min(cpus, MAX_AUTO_CPUS_PER_TRIAL)
    return threads, (f"{threads} CPUs per trial: only ~{per_cpu:.1f} trials per CPU fit in the budget, "
                     "so each gets them all and models come sooner")


MAX_TRIALS_PER_GPU = 4
"""A tabular MLP's step leaves a GPU mostly idle (Python's overhead, small batches): up to
four trials share one, as far as its memory allows."""
GPU_TRIAL_BASE_BYTES, GPU_BYTES_PER_DATA_BYTE = 2 * GIB, 4.0
"""A GPU trial's memory: CUDA's context and the network (about 2 GB), and the training
table held on the device (float32) with its batches and gradients (4 times its size)."""
ASSUMED_GPU_MEMORY_BYTES = 16 * GIB
"""A GPU's memory where nvidia-smi cannot say (a cluster's nodes): a small data-centre GPU."""


def choose_gpus_per_trial(spec: Spec, gpus: float, n_rows: int, n_features: int) -> tuple[float, str]:
    """The share of a GPU a GPU family's trial takes: what the spec names, or as many
    trials per GPU (up to MAX_TRIALS_PER_GPU) as its memory holds."""
    named = spec.hardware.gpus_per_trial
    if not gpus:
        return 0.0, "no GPU"
    if named != "auto":
        return float(named), "hardware.gpus_per_trial, as the spec says"
    memory = gpu_memory_bytes() or ASSUMED_GPU_MEMORY_BYTES
    table_bytes = 4 * n_rows * n_features  # float32
    need = GPU_TRIAL_BASE_BYTES + GPU_BYTES_PER_DATA_BYTE * table_bytes
    per_gpu = int(min(MAX_TRIALS_PER_GPU, max(1, memory // need)))
    return 1 / per_gpu, (f"{per_gpu} trial(s) per GPU: each needs ~{need / GIB:.1f} GB of its "
                         f"{memory / GIB:.0f} GB")


def gpu_families(families: list[ModelFamily], gpus_per_trial: float) -> frozenset[str]:
    """The families whose trials run on a GPU: those that can use one, when trials get one."""
    return frozenset(family.name for family in families if family.uses_gpu and gpus_per_trial)


def run_cpus(spec: Spec) -> int:
    """The CPUs the run plans for: ``hardware.cpus``, else this machine's."""
    return spec.hardware.cpus or os.cpu_count() or 1


@dataclass
class Plan:
    families: list[ModelFamily]
    skipped: dict[str, str] = field(default_factory=dict)
    trial_time_limit_s: float = float("inf")
    portfolios: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    """Each chosen family's proven configurations, best first."""
    validation: Validation = Validation("kfold", 5, None, "")
    cpus_per_trial: int = 1
    cpus_reason: str = ""
    clock: TrialClock | None = None
    """What the plan estimated trials with; the search goes on correcting it with what they take."""
    gpus_per_trial: float = 0.0
    gpus_reason: str = ""

    def describe(self) -> dict:
        return {"families": [f.name for f in self.families], "skipped": self.skipped,
                "trial_time_limit_s": self.trial_time_limit_s,
                "portfolio_sizes": {name: len(configs) for name, configs in self.portfolios.items()},
                "validation": self.validation.describe(),
                "cpus_per_trial": self.cpus_per_trial, "cpus_per_trial_reason": self.cpus_reason,
                "gpus_per_trial": self.gpus_per_trial, "gpus_per_trial_reason": self.gpus_reason}

    def use_gpus(self, spec: Spec, gpus: float, n_rows: int, n_features: int) -> None:
        """Fit the plan to the GPUs the executor found (a cluster's are known only once it is
        joined): none there, no trial asks for one (Ray would wait for it for ever)."""
        if not gpus:
            self.gpus_per_trial, self.gpus_reason = 0.0, "no GPU"
        elif not self.gpus_per_trial:
            self.gpus_per_trial, self.gpus_reason = choose_gpus_per_trial(spec, gpus, n_rows, n_features)
        if self.clock is not None:
            self.clock.gpu_families = gpu_families(self.families, self.gpus_per_trial)


def plan(spec: Spec, task: str, n_rows: int, n_features: int) -> Plan:
    """The families to try, the validation, the CPUs per trial and the trial time limit."""
    limit = trial_time_limit_s(spec.budget.time_s)
    names = spec.models.include or family_names()
    skipped = {name: "excluded by the spec" for name in names if name in spec.models.exclude}
    families = [get_family(name) for name in names if name not in skipped]  # excluded: never imported
    chosen = [family for family in families if family.supports(task)]
    skipped |= {family.name: f"does not support {task} tasks" for family in families if family not in chosen}
    if not chosen:
        raise InputError(f"models: no model family left to try for a {task} task")
    cpus = run_cpus(spec)
    gpus = run_gpus(spec.hardware)
    gpus_per_trial, gpus_reason = choose_gpus_per_trial(spec, gpus, n_rows, n_features)
    on_gpu = gpu_families(chosen, gpus_per_trial)
    # The CPUs' validation and threads are sized on the first family that runs on them.
    reference = next((family for family in chosen if family.name not in on_gpu), chosen[0])
    validation = choose_validation(spec, reference, n_rows, n_features, cpus)
    train_rows = int(n_rows * (1 - validation.split_size) if validation.split_size
                     else n_rows * (validation.folds - 1) / validation.folds)
    cpus_per_trial, cpus_reason = choose_cpus_per_trial(
        spec, validation.folds * reference.fold_fit_s(train_rows, n_features), cpus)
    clock = TrialClock(FIRST_RESULT_SHARE * spec.budget.time_s, train_rows, n_features, validation.folds,
                       cpus_per_trial, on_gpu)
    for family in [] if spec.models.include else list(chosen):  # what the spec names is always tried
        at_once = gpus / gpus_per_trial if family.name in clock.gpu_families else cpus
        reason = _cannot_pay_for(family, spec, clock, limit, at_once)
        if reason and len(chosen) > 1:  # never none left
            chosen.remove(family)
            skipped[family.name] = reason
    return Plan(chosen, skipped, limit, {family.name: family.portfolio(task) for family in chosen}, validation,
                cpus_per_trial, cpus_reason, clock, gpus_per_trial, gpus_reason)


def _cannot_pay_for(family: ModelFamily, spec: Spec, clock: TrialClock, limit_s: float, at_once: float) -> str:
    """Why the budget cannot pay for ``family`` on this data ("" when it can): a trial must
    fit in its time limit on MIN_SAMPLE_SHARE of the rows at least, and a family that knows
    its full cost (the MLP) needs MIN_AFFORDABLE_TRIALS of it, ``at_once`` side by side (one
    per CPU, or on GPUs as many as their shares allow), at its cost on a GPU where it gets one."""
    sampled_s = clock.least_s(family, int(clock.train_rows * MIN_SAMPLE_SHARE))
    if sampled_s > limit_s:
        return (f"a trial would take about {sampled_s:.0f}s even on {MIN_SAMPLE_SHARE:.0%} of the rows, "
                f"over its {limit_s:.0f}s limit")
    estimate = family.estimated_trial_s(clock.train_rows, clock.n_features, clock.n_folds)
    if estimate is not None and family.name in clock.gpu_families:
        estimate /= family.gpu_speedup
    if estimate is not None and estimate > spec.budget.time_s * at_once / MIN_AFFORDABLE_TRIALS:
        return f"a trial would take about {estimate:.1f}s: the budget pays for fewer than {MIN_AFFORDABLE_TRIALS}"
    return ""


def memory_budget(spec: Spec, workload: Workload, slots: int) -> MemoryBudget:
    """Each trial's share of ``budget.memory_gb`` (see ``MemoryBudget``)."""
    data, folds = workload.data, workload.folds
    data_bytes = data.X.memory_usage(deep=True).sum() + data.y.nbytes
    if workload.holdout is not None:
        data_bytes += workload.holdout.memory_usage(deep=True).sum()
    train_rows = max(len(train_idx) for train_idx, _ in folds.splits)
    return MemoryBudget.share(memory_budget_bytes(spec.budget.memory_gb), float(data_bytes), slots, train_rows,
                              data.X.shape[1], data.target.n_classes, len(folds))
