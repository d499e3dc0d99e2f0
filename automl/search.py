"""The hyperparameter search: one Optuna study per run, driven by ask/tell.

Every family's first portfolio configuration is tried first. Then the budget
shares pick the family of each trial, which runs the family's next portfolio
configuration or, once those are spent, one TPE proposes (multivariate,
grouped by family, with the constant liar so parallel trials spread out).
Workers report running fold scores to the driver, which records them in the
study and answers with the pruner's verdict, so a hopeless trial stops after
a fold or two.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState
from sqlalchemy import event

from automl.budget import CONFIRM_LIMIT_FACTOR
from automl.checkpoint import OutcomeStore
from automl.ctrl_c import remembering_ctrl_c
from automl.errors import TRACEBACK_CHARS
from automl.execution import Executor
from automl.metrics import Metric
from automl.models import ModelFamily
from automl.planner import GIB, MIN_SAMPLE_SHARE, FamilyShares, MemoryBudget, TrialClock, useful_first_rows
from automl.trial import COMPLETE, FAILED, PRUNED, TrialOutcome, TrialSpec, run_trial, warm_up_for_gpu

optuna.logging.set_verbosity(optuna.logging.WARNING)

FAMILY_PARAM = "family"
TRIAL_LOG_ATTR = "trial_log"
"""The study's user attribute holding where and how a trial ran."""
MAX_SKIPS_IN_A_ROW = 20
"""Stop asking for trials after this many in a row were skipped as too large for the memory budget."""
GPU_TRIAL_CPUS = 1
"""The CPUs a trial on a GPU takes: one, for Python's part of each training step. The other
CPUs go on running the CPU families' trials (see ``Search.use_gpus``)."""


def make_sampler(seed: int) -> optuna.samplers.BaseSampler:
    with warnings.catch_warnings():  # multivariate and group are flagged experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True, constant_liar=True)


def make_pruner() -> optuna.pruners.BasePruner:
    """Prune a hopeless trial: after any fold, once three trials have reported,
    one whose running CV score is in the bottom quarter of the others' scores on
    the same folds stops there. Budgets are short and the first fold already
    says a lot, so a slow, weak configuration costs one fold instead of k. A
    family's first trial is judged only once it has completed (``FirstOfFamilyPruner``)."""
    return FirstOfFamilyPruner(optuna.pruners.PercentilePruner(75.0, n_startup_trials=3, n_warmup_steps=0,
                                                               n_min_trials=3))


class FirstOfFamilyPruner(optuna.pruners.BasePruner):
    """Wraps a pruner, which judges a trial only once its model family has a completed trial.

    Judged on every fold against the leading family's many trials, a family a little
    behind it never completed one: on titanic (668 rows) every k-NN, MLP and forest
    trial was pruned on its first folds, and the ensemble, with only LightGBM trials
    to blend, never beat the best of them. A family's first completed trial gives the
    ensemble its out-of-fold predictions; the family's later trials are judged as before."""

    def __init__(self, pruner: optuna.pruners.BasePruner):
        self._pruner = pruner
        self.apart: frozenset[str] = frozenset()
        """Families judged against their own trials only: those with slots of their own (on a
        GPU), where a trial behind another family's takes no time from it. Judged against
        LightGBM's on adult, every MLP trial after the first was pruned, and the GPU sat idle."""

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        family = trial.params.get(FAMILY_PARAM)
        completed = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if not any(done.params.get(FAMILY_PARAM) == family for done in completed):
            return False
        return self._pruner.prune(_FamilyTrials(study, family) if family in self.apart else study, trial)


class _FamilyTrials:
    """A study seen through one family's trials: what a pruner reads of it (its trials and direction)."""

    def __init__(self, study: optuna.Study, family: str):
        self._study, self._family = study, family

    @property
    def direction(self) -> optuna.study.StudyDirection:
        return self._study.direction

    def get_trials(self, deepcopy: bool = True, states: tuple[TrialState, ...] | None = None) -> list:
        return [trial for trial in self._study.get_trials(deepcopy=deepcopy, states=states)
                if trial.params.get(FAMILY_PARAM) == self._family]


def _fast_sqlite(connection, _record) -> None:
    # WAL with synchronous=NORMAL: a committed trial survives the process being
    # killed, at half the cost per write of SQLite's default (measured: 88 -> 46 ms a trial).
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def open_storage(url: str) -> optuna.storages.BaseStorage:
    storage = optuna.storages.RDBStorage(url)
    if url.startswith("sqlite:"):
        event.listen(storage.engine, "connect", _fast_sqlite)
        storage.engine.dispose()  # reconnect with the pragmas
    return storage


def _family_params(params: dict[str, Any]) -> dict[str, Any]:
    """A trial's configuration without the family: ``{"lightgbm.num_leaves": 31}`` -> ``{"num_leaves": 31}``."""
    return {key.split(".", 1)[1]: value for key, value in params.items() if key != FAMILY_PARAM}


def _suggest(trial: optuna.Trial, name: str, distribution: BaseDistribution) -> Any:
    if isinstance(distribution, FloatDistribution):
        return trial.suggest_float(name, distribution.low, distribution.high, log=distribution.log,
                                   step=distribution.step)
    if isinstance(distribution, IntDistribution):
        return trial.suggest_int(name, distribution.low, distribution.high, log=distribution.log,
                                 step=distribution.step)
    if isinstance(distribution, CategoricalDistribution):
        return trial.suggest_categorical(name, distribution.choices)
    raise TypeError(f"unsupported distribution {distribution!r}")


@dataclass
class _Running:
    trial: optuna.Trial
    spec: TrialSpec
    started: float
    """time.monotonic() at submission."""
    limit_s: float
    """Its hard time limit: cancelled once it has run this long."""
    first_round: bool = False
    """Asked for before any trial had completed (see ``TrialClock.first_result_s``)."""


class Search:
    """Asks the study for configurations, runs them on an executor, tells it the results.

    The driver owns the study: workers' fold reports reach it through the
    executor, and it answers with the pruner's verdict."""

    def __init__(self, families: list[ModelFamily], task: str, metric: Metric, storage: str,
                 study_name: str, seed: int, cpus_per_trial: int = 1,
                 max_trials: int | None = None, trial_time_limit_s: float = float("inf"),
                 portfolios: dict[str, list[dict[str, Any]]] | None = None,
                 shares: FamilyShares | None = None, max_model_bytes: int = 0,
                 outcome_store: OutcomeStore | None = None, warm_start: list[tuple[str, dict[str, Any]]] = ()):
        self.families = {family.name: family for family in families}
        self.task = task
        self.metric = metric
        self.seed = seed
        self.cpus_per_trial = cpus_per_trial
        self.gpus_per_trial = 0.0
        """The share of a GPU each trial of a family that can use one takes (see ``use_gpus``)."""
        self.gpu_slots = 0
        """Trials at once on the GPUs."""
        self._gpu_trial_finished = False
        self.max_trials = max_trials
        self.trial_time_limit_s = trial_time_limit_s
        self.study = optuna.create_study(study_name=study_name, storage=open_storage(storage),
                                         direction=metric.direction,
                                         sampler=make_sampler(seed), pruner=make_pruner(), load_if_exists=True)
        self.shares = shares
        self.max_model_bytes = max_model_bytes
        self.outcome_store = outcome_store
        """Where finished trials' outcomes are kept, for a resumed run (None: nowhere)."""
        self.interrupted = False
        """Whether the last ``run`` was stopped by Ctrl-C (SIGINT) rather than its deadline."""
        self.memory: MemoryBudget | None = None
        """What a trial may take of the memory budget (None: no limit)."""
        self.clock: TrialClock | None = None
        """How long trials take here, to keep each within its time (None: trials run as they are)."""
        self.pruning = True
        """Whether workers report after each fold (off with one split: nothing to prune between)."""
        self.recovered = self._recover() if self.study.trials else []
        """A resumed study's finished trials, as outcomes (see ``_recover``)."""
        portfolios = portfolios or {name: [family.default_params(task)] for name, family in self.families.items()}
        self.untried = {name: list(portfolios.get(name, [])) for name in self.families}
        """Each family's portfolio configurations not yet asked for, in order."""
        self.trials_per_family: dict[str, int] = {}
        self.best_scores: dict[str, float] = {}
        self.dropped: set[str] = set()
        """Families no longer asked for: their first trial would have fit on too few rows to show anything."""
        waiting = self.study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
        self._queued = len(waiting)
        """A resumed study's trials queued before it stopped, or a new one's ``warm_start``: asked for first."""
        if warm_start and not self.study.trials:  # a new study: these (family, params) are its first trials
            self._enqueue([(name, params) for name, params in warm_start if name in self.families])
            self._queued = len(self.study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))
        for trial in self.study.get_trials(deepcopy=False):  # a resumed study: its history counts
            if trial.state != TrialState.WAITING and FAMILY_PARAM in trial.params:  # else killed before it had one
                name = trial.params[FAMILY_PARAM]
                self._note_asked(name)
                self._note_score(name, trial.value)
                tried = _family_params(trial.params)
                self.untried[name] = [config for config in self.untried.get(name, []) if config != tried]
        queued = {t.system_attrs.get("fixed_params", {}).get(FAMILY_PARAM) for t in waiting}
        self._confirming: tuple[str, dict[str, Any]] | None = None
        """The configuration of the run's first model, while its run in full waits to be asked for."""
        self._first_round = [name for name, configs in self.untried.items()
                             if configs and name not in self.trials_per_family and name not in queued]
        """Families whose first configuration is still to be asked for, in plan order."""

    def _recover(self) -> list[TrialOutcome]:
        """Bring back a resumed study's finished trials from the outcome store. A trial
        the study still calls running was cut off with its run: it is finished from its
        saved outcome when it has one, otherwise failed and queued to run again."""
        saved = self.outcome_store.load_all() if self.outcome_store else {}
        states = {COMPLETE: TrialState.COMPLETE, PRUNED: TrialState.PRUNED}
        recovered = []
        for trial in self.study.get_trials(deepcopy=False):
            outcome = saved.get(trial.number)
            if trial.state == TrialState.RUNNING:
                if outcome is None:
                    self.study.tell(trial.number, state=TrialState.FAIL)
                    if FAMILY_PARAM in trial.params:  # killed before it was given one: nothing to run again
                        self.study.enqueue_trial(trial.params)
                    continue
                state = states.get(outcome.status, TrialState.FAIL)
                self.study.tell(trial.number, outcome.cv_score if state == TrialState.COMPLETE else None, state=state)
            elif trial.state == TrialState.WAITING or FAMILY_PARAM not in trial.params:
                continue
            if outcome is None:  # finished without a saved outcome (failed before saving was possible)
                outcome = TrialOutcome(trial.number, trial.params[FAMILY_PARAM], _family_params(trial.params),
                                       FAILED, error="its outcome was not saved")
            recovered.append(outcome)
        return recovered

    def _enqueue(self, configs: list[tuple[str, dict[str, Any]]]) -> None:
        """Queue (family, params) pairs to be tried, in order, before TPE samples anything."""
        for name, params in configs:
            self.study.enqueue_trial({FAMILY_PARAM: name, **{f"{name}.{k}": v for k, v in params.items()}})

    def _propose(self, trial: optuna.Trial) -> tuple[str, dict[str, Any]]:
        name = trial.suggest_categorical(FAMILY_PARAM, list(self.families))
        space = self.families[name].search_space(self.task)
        return name, {key: _suggest(trial, f"{name}.{key}", dist) for key, dist in space.items()}

    def use_gpus(self, gpus_per_trial: float, gpus: float) -> None:
        """Run the families that can use a GPU on ``gpus`` GPUs, ``gpus_per_trial`` of one per
        trial: they get slots of their own there (one per share), kept busy whatever the
        budget shares say, and are pruned against their own trials; the CPUs' slots, less the
        GPU trials' CPUs, go on running the other families."""
        self.gpus_per_trial = gpus_per_trial if gpus else 0.0
        self.gpu_slots = int(gpus / gpus_per_trial + 1e-9) if self.gpus_per_trial else 0
        self.study.pruner.apart = frozenset(name for name in self.families if self._on_gpu(name))

    def _on_gpu(self, family: str) -> bool:
        return bool(self.gpus_per_trial) and self.families[family].uses_gpu

    def resources(self, family: str) -> dict[str, float]:
        """What a trial of ``family`` asks for: a share of a GPU and GPU_TRIAL_CPUS where the
        run has GPUs and the family can use one, else ``cpus_per_trial``."""
        if self._on_gpu(family):
            return {"num_cpus": GPU_TRIAL_CPUS, "num_gpus": self.gpus_per_trial}
        return {"num_cpus": self.cpus_per_trial, "num_gpus": 0}

    def held_gpu_slots(self, slots: int) -> int:
        """GPU trials at once, of the executor's ``slots``: one per GPU share, their CPUs taken
        out of the CPU slots, which keep one at least (on 2 CPUs: one GPU trial, one CPU trial)."""
        cpus = slots * self.cpus_per_trial
        return min(self.gpu_slots, max(1, (cpus - self.cpus_per_trial) // GPU_TRIAL_CPUS))

    def start_gpu_workers(self, executor: Executor) -> None:
        """Have ``executor`` start the workers the GPU trials run in, warmed up for the
        families on the GPU (see ``Executor.start_gpu_workers``)."""
        on_gpu = tuple(name for name in self.families if self._on_gpu(name))
        if on_gpu:  # all take the same resources
            executor.start_gpu_workers(self.held_gpu_slots(executor.slots), self.resources(on_gpu[0]),
                                       partial(warm_up_for_gpu, on_gpu))

    def _open_families(self, pending: dict[Any, _Running], executor: Executor) -> list[str]:
        """The families a trial may be asked for now: any while one of the executor's slots
        is free; with GPUs, those on a GPU while a GPU slot is free and, where the executor
        started GPU workers, one of them is ready; the others while a CPU slot is free."""
        slots = executor.slots
        on_gpu = self._left(on_gpu=True)
        if not on_gpu:
            return list(self.families) if len(pending) < slots else []
        held = self.held_gpu_slots(slots)
        # One GPU trial runs until one has finished: finished, it has measured the family's cost
        # on the device, which the others' time limits and rows then follow (and where each
        # trial starts its own worker, four paying CUDA's start at once ran one past its limit).
        gpu_slots = held if self._gpu_trial_finished else 1
        ready = executor.ready_gpu_workers
        if ready is not None:
            gpu_slots = min(gpu_slots, ready)
        # Started GPU workers hold their CPUs all along; trials starting their own, while they run.
        gpu_cpus = (held if ready is not None else gpu_slots) * GPU_TRIAL_CPUS
        cpu_slots = max(1, (slots * self.cpus_per_trial - gpu_cpus) // self.cpus_per_trial)
        gpu_busy = sum(self._on_gpu(running.spec.family) for running in pending.values())
        on_cpu = self._left(on_gpu=False)
        return ((on_gpu if gpu_busy < gpu_slots else [])
                + (on_cpu if len(pending) - gpu_busy < cpu_slots else []))

    def _left(self, on_gpu: bool) -> list[str]:
        """The families not dropped that run on a GPU (``on_gpu``), or on the CPUs."""
        return [name for name in self.families if self._on_gpu(name) == on_gpu and name not in self.dropped]

    def _may_ask(self, asked: int) -> bool:
        """Whether ``max_trials`` leaves a trial to ask for, ``asked`` having been."""
        return self.max_trials is None or asked < self.max_trials

    def _note_asked(self, family: str) -> None:
        self.trials_per_family[family] = self.trials_per_family.get(family, 0) + 1

    def _note_score(self, family: str, score: float | None) -> None:
        """Keep each family's best completed score, for the budget shares."""
        best = self.best_scores.get(family)
        if score is not None and np.isfinite(score) and (best is None or self.metric.is_better(score, best)):
            self.best_scores[family] = score

    def _ask(self, open_families: list[str]) -> optuna.Trial:
        """Every family's first configuration, in plan order; after those, a trial of the
        family furthest below its budget share: its next portfolio configuration, or
        TPE's proposal. Without shares, TPE also picks the family. Only ``open_families``
        (those with a free slot) are asked for."""
        first = [name for name in self._first_round if name in open_families]
        if self._queued:
            self._queued -= 1
        elif first:
            self._first_round.remove(first[0])
            self._enqueue([(first[0], self.untried[first[0]].pop(0))])
        elif self.shares is not None:
            closed = self.dropped | (set(self.families) - set(open_families))
            name = self.shares.next_family(self.best_scores, self.trials_per_family, excluded=closed)
            config = self.untried[name].pop(0) if self.untried[name] else {}
            self._enqueue([(name, config)])
        return self.study.ask()

    def _prepare(self, executor: Executor, deadline: float, open_families: list[str]) -> _Running:
        """Ask for a trial: its family, configuration, time limit and the rows that fit
        its memory and its time."""
        trial = self._ask(open_families)
        family, params = self._propose(trial)
        self._note_asked(family)
        now = time.monotonic()
        limit_s = self.trial_limit_s(now, deadline)
        if self._confirming == (family, params):  # the run's first model, run again in full
            self._confirming = None
            limit_s = max(0.0, min(CONFIRM_LIMIT_FACTOR * self.trial_time_limit_s, deadline - now))
        rows, reason = self._rows(family, params, limit_s)
        growing_s = self._allowed_s(limit_s) if self.clock is not None else limit_s  # learners stop growing by then
        resources = self.resources(family)
        spec = TrialSpec(trial.number, family, params, self.metric.name, self.seed, int(resources["num_cpus"]),
                         executor.report_link(trial.number) if self.pruning else None, self.max_model_bytes, rows,
                         reason, growing_s, resources["num_gpus"], submitted_at=time.time())
        return _Running(trial, spec, now, limit_s, first_round=not self.best_scores)

    def _rows(self, family: str, params: dict[str, Any], limit_s: float) -> tuple[int | None, str]:
        """The rows a trial may fit each fold on (None: all; 0: none) and what limits them.
        Before any trial has completed, a trial must fit in the clock's ``first_result_s``;
        after that, a family's first trial is not run on fewer than ``useful_first_rows``
        for time (reason "too few rows"): it would take a slot and show nothing."""
        rows = self.memory.rows_for(self.families[family], params) if self.memory else None
        reason = "memory" if rows is not None else ""
        if rows != 0 and self.clock is not None:
            first = not self.best_scores
            timed = self.clock.rows_for(self.families[family], self._allowed_s(limit_s), first)
            if timed is not None and (rows is None or timed < rows):
                rows, reason = timed, "time"
            if (reason == "time" and not first and family not in self.best_scores
                    and rows < useful_first_rows(self.clock.train_rows)):
                return 0, "too few rows"
        return rows, reason

    def _allowed_s(self, limit_s: float) -> float:
        """The time a trial asked for now should take: its limit, and before any trial
        has completed, the clock's ``first_result_s``."""
        return min(limit_s, self.clock.first_result_s) if not self.best_scores else limit_s

    def _run_again_in_full(self, running: _Running, first_model: bool) -> bool:
        """A trial cut short so that a first model came early (its learners stopped growing
        before its own limit, or it fit on fewer rows for time) gave that model; its
        configuration is then its family's next, to run in full. When it gave the run's
        first model, that runs next, before other families' first trials: where time is
        short, the first family (the strongest, in plan order) is confirmed before the rest
        are tried, on up to CONFIRM_LIMIT_FACTOR times the trial limit. Returns whether it
        will run again."""
        spec = running.spec
        if running.first_round and (spec.time_limit_s < running.limit_s or spec.sample_reason == "time"):
            self.untried[spec.family].insert(0, spec.params)
            if first_model:
                self._first_round.insert(0, spec.family)
                self._confirming = (spec.family, spec.params)
            return True
        return False

    def _skipped(self, spec: TrialSpec) -> TrialOutcome:
        family = self.families[spec.family]
        if spec.sample_reason == "too few rows":
            self.dropped.add(spec.family)
            fit = self.clock.rows_within(family, spec.time_limit_s)
            return self._failed(spec, f"skipped: its first trial would fit on only ~{fit:,} of "
                                      f"{self.clock.train_rows:,} rows in its {spec.time_limit_s:.1f}s, "
                                      f"under the {useful_first_rows(self.clock.train_rows):,} that show what "
                                      "it can do; the family is not tried again")
        if spec.sample_reason == "time":
            least = self.clock.least_s(family, int(self.clock.train_rows * MIN_SAMPLE_SHARE))
            return self._failed(spec, f"skipped: estimated ~{least:.1f}s even on a tenth of the rows, over the "
                                      f"{spec.time_limit_s:.1f}s it may take")
        need = self.memory.need_bytes(family, spec.params) / GIB
        return self._failed(spec, f"skipped: needs ~{need:.2g} GB, over the {self.memory.per_trial_bytes / GIB:.2g}"
                                  " GB a trial may use (budget.memory_gb) even on a tenth of the rows")

    def trial_limit_s(self, now: float, deadline: float) -> float:
        """A trial's hard time limit: the planner's per-trial limit, or the time left
        before the search must stop, whichever is shorter."""
        return max(0.0, min(self.trial_time_limit_s, deadline - now))

    def run(self, executor: Executor, payload: Any, deadline: Callable[[], float],
            on_outcome: Callable[[TrialOutcome], None] = lambda outcome: None,
            trial_fn: Callable[[Any, TrialSpec], TrialOutcome] = run_trial,
            on_warning: Callable[[str], None] = lambda message: None) -> list[TrialOutcome]:
        """Run trials until ``deadline()`` (a monotonic time, re-read as results come in)
        or ``max_trials``. A trial past its time limit, or still running at the
        deadline, is cancelled and recorded as failed. What the executor went on
        without (``Executor.take_warnings``) goes to ``on_warning``."""
        pending: dict[Any, _Running] = {}
        outcomes: list[TrialOutcome] = []

        def finish(trial: optuna.Trial, outcome: TrialOutcome) -> None:
            outcome.resources = self.resources(outcome.family)
            self._gpu_trial_finished |= self._on_gpu(outcome.family)
            self._tell(trial, outcome)
            outcomes.append(outcome)
            on_outcome(outcome)

        asked = len(self.study.trials) - len(self.study.get_trials(states=(TrialState.WAITING,)))
        self.interrupted = False
        skips_in_a_row = 0  # trials skipped as too large for the memory budget, one after another
        with remembering_ctrl_c() as ctrl_c:
            try:
                while time.monotonic() < deadline():
                    ctrl_c.check()  # pressed while a finalizer ran, which drops the KeyboardInterrupt
                    while ((open_families := self._open_families(pending, executor))
                           and self._may_ask(asked)
                           and skips_in_a_row < MAX_SKIPS_IN_A_ROW and not self._first_model_on_a_sample(pending)
                           and deadline() - time.monotonic() >= self._fastest_trial_s(outcomes)):
                        running = self._prepare(executor, deadline(), open_families)
                        asked += 1
                        if running.spec.max_train_rows == 0:
                            skips_in_a_row += 1
                            finish(running.trial, self._skipped(running.spec))
                            continue
                        skips_in_a_row = 0
                        handle = executor.submit(trial_fn, payload, running.spec, **self.resources(running.spec.family))
                        pending[handle] = running
                    if not pending and not self._may_wait_for_gpu_workers(executor, asked):
                        break
                    next_limit = min((r.started + r.limit_s for r in pending.values()), default=float("inf"))
                    done, questions = executor.wait(list(pending), min(deadline(), next_limit) - time.monotonic())
                    executor.answer(self._verdicts(questions, pending))
                    for message in executor.take_warnings():
                        on_warning(message)
                    for handle in done:
                        running = pending.pop(handle)
                        outcome = self._collect(executor, handle, running.spec)
                        first_model = not self.best_scores
                        finish(running.trial, outcome)
                        if outcome.status == COMPLETE:
                            outcome.cut_short = self._run_again_in_full(running, first_model)
                    for handle, running in list(pending.items()):
                        if time.monotonic() - running.started >= running.limit_s and time.monotonic() < deadline():
                            executor.cancel(handle)
                            pending.pop(handle)
                            finish(running.trial, self._failed(running.spec, f"timeout: ran past its limit of "
                                                                             f"{running.limit_s:.1f}s"))
            except KeyboardInterrupt:  # Ctrl-C: stop here, keep what finished
                self.interrupted = True
        self.interrupted = self.interrupted or ctrl_c.pressed
        reason = "cancelled: interrupted" if self.interrupted else "cancelled: the time budget ran out"
        for handle, running in list(pending.items()):
            executor.cancel(handle)
            finish(running.trial, self._failed(running.spec, reason))
        return outcomes

    def _may_wait_for_gpu_workers(self, executor: Executor, asked: int) -> bool:
        """Whether, with no trial running, the search waits for a GPU worker still warming up:
        only while a GPU family may still be asked for a trial."""
        return executor.warming and bool(self._left(on_gpu=True)) and self._may_ask(asked)

    def _first_model_on_a_sample(self, pending: dict[Any, _Running]) -> bool:
        """Whether the run's first model is on its way from a trial on a sample for time: the
        data is too large for the first result's share of the budget, so the other families'
        first trials wait for it, then get their own time limit instead of that share (on a
        sample it would shrink to a few hundred rows, which shows nothing: see ``useful_first_rows``)."""
        return not self.best_scores and any(r.spec.sample_reason == "time" for r in pending.values())

    @staticmethod
    def _fastest_trial_s(outcomes: list[TrialOutcome]) -> float:
        """The shortest wall time of a completed trial so far: with less time than that
        left, a new trial would only be cancelled (0 before any completes)."""
        times = [o.ended_at - o.started_at for o in outcomes if o.status == COMPLETE and o.ended_at]
        return min(times, default=0.0)

    @staticmethod
    def _verdicts(questions: list[tuple[Any, int, float]], pending: dict[Any, _Running]) -> list[tuple[Any, int, bool]]:
        """Report each worker's running score to its trial and answer with the pruner's verdict."""
        trials = {running.trial.number: running.trial for running in pending.values()}
        answers = []
        for number, step, score in questions:
            trial = trials.get(number)
            if trial is None:  # already cancelled or finished: tell the worker to stop
                answers.append((number, step, True))
                continue
            with warnings.catch_warnings():  # a retried task reports its folds again
                warnings.simplefilter("ignore", UserWarning)
                trial.report(score, step)
            answers.append((number, step, trial.should_prune()))
        return answers

    @staticmethod
    def _failed(spec: TrialSpec, error: str) -> TrialOutcome:
        return TrialOutcome(spec.number, spec.family, spec.params, FAILED, error=error)

    @classmethod
    def _collect(cls, executor: Executor, handle: Any, spec: TrialSpec) -> TrialOutcome:
        try:
            outcome, placement = executor.result(handle)
        except Exception as exc:  # the worker died (killed, out of memory, node lost) or the task failed outside
            text = str(exc).strip()  # the trial's own guard: record it with its message, go on
            message = text.splitlines()[-1] if text else ""
            lost = f"worker lost: {type(exc).__name__}: " if executor.is_lost(exc) else ""
            failed = cls._failed(spec, f"{lost}{message or type(exc).__name__}"[:500])
            failed.traceback = text[-TRACEBACK_CHARS:]
            return failed
        outcome.node_id = placement.node_id
        return outcome

    def _tell(self, trial: optuna.Trial, outcome: TrialOutcome) -> None:
        """Record a finished trial: its outcome on disk first, then in the study (see ``automl.checkpoint``)."""
        if self.outcome_store is not None:
            self.outcome_store.save(outcome)
        trial.set_user_attr(TRIAL_LOG_ATTR, {  # one write, not one per field
            "fold_scores": outcome.fold_scores, "fit_time_s": outcome.fit_time_s,
            "predict_time_s": outcome.predict_time_s, "error": outcome.error, "host": outcome.host,
            "pid": outcome.pid, "node_id": outcome.node_id, "resources": outcome.resources,
            "started_at": outcome.started_at, "ended_at": outcome.ended_at})
        if outcome.status == COMPLETE:
            self._note_score(outcome.family, outcome.cv_score)
            if self.clock is not None:
                self.clock.observe(self.families[outcome.family], outcome.fit_time_s, outcome.train_rows)
            self.study.tell(trial, outcome.cv_score)
        elif outcome.status == PRUNED:
            self.study.tell(trial, state=TrialState.PRUNED)
        else:
            self.study.tell(trial, state=TrialState.FAIL)
