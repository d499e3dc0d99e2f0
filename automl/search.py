"""The hyperparameter search: one Optuna study per run, driven by ask/tell.

Each family's default configuration is enqueued first, then TPE (multivariate,
grouped by family, with the constant liar so parallel trials spread out)
proposes the rest. Workers report running fold scores into the study, so the
median pruner can stop a hopeless trial after a fold or two.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from automl.execution import Executor
from automl.metrics import Metric
from automl.models import ModelFamily
from automl.trial import COMPLETE, FAILED, PRUNED, TrialOutcome, TrialSpec, run_trial

optuna.logging.set_verbosity(optuna.logging.WARNING)

FAMILY_PARAM = "family"


def make_sampler(seed: int) -> optuna.samplers.BaseSampler:
    with warnings.catch_warnings():  # multivariate and group are flagged experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True, constant_liar=True)


def make_pruner() -> optuna.pruners.BasePruner:
    """Prune a hopeless trial: after any fold, once three trials have reported,
    one whose running CV score is in the bottom quarter of the others' scores on
    the same folds stops there. Budgets are short and the first fold already
    says a lot, so a slow, weak configuration costs one fold instead of k."""
    return optuna.pruners.PercentilePruner(75.0, n_startup_trials=3, n_warmup_steps=0, n_min_trials=3)


def storage_url(path: str) -> str:
    return f"sqlite:///{path}"


def _storage(url: str) -> optuna.storages.RDBStorage:
    # Workers and the driver write to one SQLite file; wait for its lock rather than fail.
    return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 60}})


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


@dataclass(frozen=True)
class PruningLink:
    """Lets a worker report fold scores into the run's study (picklable)."""

    storage_url: str
    study_name: str
    trial_id: int

    def connect(self) -> Callable[[int, float], bool]:
        study = optuna.load_study(study_name=self.study_name, storage=_storage(self.storage_url),
                                  pruner=make_pruner())
        trial = optuna.trial.Trial(study, self.trial_id)

        def report(step: int, value: float) -> bool:
            trial.report(value, step)
            return trial.should_prune()

        return report


class Search:
    """Asks the study for configurations, runs them on an executor, tells it the results."""

    def __init__(self, families: list[ModelFamily], task: str, metric: Metric, storage: str,
                 study_name: str, seed: int, cpus_per_trial: int = 1, max_trials: int | None = None):
        self.families = {family.name: family for family in families}
        self.task = task
        self.metric = metric
        self.storage = storage
        self.seed = seed
        self.cpus_per_trial = cpus_per_trial
        self.max_trials = max_trials
        self.study = optuna.create_study(study_name=study_name, storage=_storage(storage),
                                         direction=metric.direction, sampler=make_sampler(seed),
                                         pruner=make_pruner(), load_if_exists=True)
        if not self.study.trials:
            self._enqueue_defaults()

    def _enqueue_defaults(self) -> None:
        for name, family in self.families.items():
            defaults = family.default_params(self.task)
            self.study.enqueue_trial({FAMILY_PARAM: name, **{f"{name}.{k}": v for k, v in defaults.items()}})

    def _propose(self, trial: optuna.Trial) -> tuple[str, dict[str, Any]]:
        name = trial.suggest_categorical(FAMILY_PARAM, list(self.families))
        space = self.families[name].search_space(self.task)
        return name, {key: _suggest(trial, f"{name}.{key}", dist) for key, dist in space.items()}

    def _trial_spec(self, trial: optuna.Trial) -> TrialSpec:
        family, params = self._propose(trial)
        link = PruningLink(self.storage, self.study.study_name, trial._trial_id)
        return TrialSpec(trial.number, family, params, self.metric.name, self.seed, self.cpus_per_trial, link)

    def run(self, executor: Executor, payload: Any, deadline: Callable[[], float],
            on_outcome: Callable[[TrialOutcome], None] = lambda outcome: None) -> list[TrialOutcome]:
        """Run trials until ``deadline()`` (a monotonic time, re-read as results come in)
        or ``max_trials``; trials still running then are cancelled and recorded as failed."""
        pending: dict[Any, tuple[optuna.Trial, TrialSpec]] = {}
        outcomes: list[TrialOutcome] = []
        asked = len(self.study.trials) - len(self.study.get_trials(states=(TrialState.WAITING,)))
        while time.monotonic() < deadline():
            while len(pending) < executor.slots and (self.max_trials is None or asked < self.max_trials):
                trial = self.study.ask()
                spec = self._trial_spec(trial)
                handle = executor.submit(run_trial, payload, spec, num_cpus=self.cpus_per_trial)
                pending[handle] = (trial, spec)
                asked += 1
            if not pending:
                break
            for handle in executor.wait(list(pending), timeout=deadline() - time.monotonic()):
                trial, spec = pending.pop(handle)
                outcome = self._collect(executor, handle, spec)
                self._tell(trial, outcome)
                outcomes.append(outcome)
                on_outcome(outcome)
        for handle, (trial, spec) in pending.items():
            executor.cancel(handle)
            outcome = TrialOutcome(spec.number, spec.family, spec.params, FAILED,
                                   error="cancelled: the time budget ran out")
            self._tell(trial, outcome)
            outcomes.append(outcome)
        return outcomes

    @staticmethod
    def _collect(executor: Executor, handle: Any, spec: TrialSpec) -> TrialOutcome:
        try:
            return executor.result(handle)
        except Exception as exc:  # the worker died (killed, out of memory): record it and go on
            return TrialOutcome(spec.number, spec.family, spec.params, FAILED,
                                error=f"worker lost: {type(exc).__name__}")

    def _tell(self, trial: optuna.Trial, outcome: TrialOutcome) -> None:
        attrs = {"fold_scores": outcome.fold_scores, "fit_time_s": outcome.fit_time_s,
                 "predict_time_s": outcome.predict_time_s, "error": outcome.error,
                 "host": outcome.host, "pid": outcome.pid, "started_at": outcome.started_at,
                 "ended_at": outcome.ended_at}
        for key, value in attrs.items():
            trial.set_user_attr(key, value)
        if outcome.status == COMPLETE:
            self.study.tell(trial, outcome.cv_score)
        elif outcome.status == PRUNED:
            self.study.tell(trial, state=TrialState.PRUNED)
        else:
            self.study.tell(trial, state=TrialState.FAIL)
