"""The planner: portfolio order, budget shares, and the search following both."""

from __future__ import annotations

import time

import optuna
import pytest
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState

from automl.budget import CONFIRM_LIMIT_FACTOR
from automl.metrics import get_metric
from automl.models import get_family
from automl.outputs import failure_warnings
from automl.planner import FamilyShares, TrialClock, plan
from automl.search import FAMILY_PARAM, Search, make_pruner
from automl.spec import build_spec
from automl.trial import COMPLETE, FAILED, TrialOutcome


def _spec(time_s=60, include=None):
    return build_spec({"data": {"train": "x.csv", "target": "y"}, "budget": {"time_s": time_s},
                       "models": {"include": include}})


def test_plan_carries_the_portfolios_of_the_chosen_families_only():
    chosen = plan(_spec(include=["linear", "knn"]), "regression", 500, 5)
    assert chosen.portfolios == {name: get_family(name).portfolio("regression") for name in ("linear", "knn")}
    assert chosen.describe()["portfolio_sizes"] == {"linear": 2, "knn": 2}


def test_shares_halve_with_each_rank_and_follow_the_metric_direction():
    families = [get_family(n) for n in ("lightgbm", "linear", "knn")]
    higher = FamilyShares(families, higher_is_better=True)
    shares = higher.shares({"lightgbm": 0.80, "linear": 0.90, "knn": 0.85})
    assert shares["linear"] == 2 * shares["knn"] == 4 * shares["lightgbm"]
    assert abs(sum(shares.values()) - 1) < 1e-12
    lower = FamilyShares(families, higher_is_better=False).shares({"lightgbm": 0.80, "linear": 0.90, "knn": 0.85})
    assert max(lower, key=lower.get) == "lightgbm"
    # a family with no finished trial ranks last
    partial = higher.shares({"lightgbm": 0.8, "linear": 0.7})
    assert min(partial, key=partial.get) == "knn"


def test_next_family_goes_to_the_one_furthest_below_its_share():
    families = [get_family(n) for n in ("lightgbm", "linear")]
    shares = FamilyShares(families, higher_is_better=True)
    best = {"lightgbm": 0.9, "linear": 0.8}  # lightgbm's share 2/3, linear's 1/3 (in cost units)
    cost = {f.name: f.relative_cost for f in families}
    assert 1 * cost["lightgbm"] / (1 * cost["lightgbm"] + 3 * cost["linear"]) < 2 / 3
    assert shares.next_family(best, {"lightgbm": 1, "linear": 3}) == "lightgbm"
    # lightgbm has spent far beyond its two thirds: the next trial tunes linear
    assert shares.next_family(best, {"lightgbm": 20, "linear": 1}) == "linear"
    assert 20 * cost["lightgbm"] / (20 * cost["lightgbm"] + cost["linear"]) > 2 / 3


class _InstantExecutor:
    """Runs each trial at once in this process, with a scripted score per family."""

    slots = 1
    ready_gpu_workers = None  # GPU trials start their own workers
    warming = False

    def __init__(self, scores):
        self.scores, self.done, self.time_limits = scores, [], []

    def report_link(self, number):
        return None

    def submit(self, fn, payload, spec, **resources):
        outcome = TrialOutcome(spec.number, spec.family, spec.params, COMPLETE,
                               fold_scores=[self.scores[spec.family]])
        self.done.append(outcome)
        self.time_limits.append(spec.time_limit_s)
        return len(self.done) - 1

    def wait(self, handles, timeout):
        return handles, []

    def answer(self, verdicts):
        pass

    def result(self, handle):
        return self.done[handle], type("Placement", (), {"node_id": "local"})()

    def cancel(self, handle):
        pass

    def take_warnings(self):
        return []


def _search(tmp_path, families, max_trials, shares=True):
    run_plan = plan(_spec(include=[f.name for f in families]), "binary", 1000, 5)
    return Search(families, "binary", get_metric("roc_auc", "binary"), f"sqlite:///{tmp_path / 's.db'}", "s",
                  seed=0, max_trials=max_trials, portfolios=run_plan.portfolios,
                  shares=FamilyShares(families, True) if shares else None)


def test_search_tries_each_family_first_then_gives_the_winner_its_portfolio_and_the_most_trials(tmp_path):
    families = [get_family(n) for n in ("lightgbm", "linear", "knn")]
    executor = _InstantExecutor({"lightgbm": 0.7, "linear": 0.9, "knn": 0.8})
    _search(tmp_path, families, max_trials=60).run(executor, None, deadline=lambda: float("inf"))
    ran = [(o.family, o.params) for o in executor.done]
    assert ran[:3] == [(f.name, f.default_params("binary")) for f in families]
    # the winner's next trial is its second proven configuration, not a sampled one
    assert ran[3] == ("linear", get_family("linear").portfolio("binary")[1])
    names = [name for name, _ in ran[3:]]
    assert names.count("linear") > names.count("knn") > names.count("lightgbm")
    # by the end, each family's share of the trial cost is close to its target
    cost = {f.name: f.relative_cost * [n for n, _ in ran].count(f.name) for f in families}
    targets = FamilyShares(families, True).shares(executor.scores)
    for name, target in targets.items():
        assert abs(cost[name] / sum(cost.values()) - target) < 0.1, (name, cost, targets)
    # the budget went to the winner first: the losers waited for their further entries
    assert {name for name, _ in ran[3:8]} == {"linear"}


def test_a_resumed_search_does_not_repeat_portfolio_configurations(tmp_path):
    families = [get_family(n) for n in ("linear", "knn")]
    first = _InstantExecutor({"linear": 0.9, "knn": 0.8})
    _search(tmp_path, families, max_trials=3).run(first, None, deadline=lambda: float("inf"))
    again = _InstantExecutor({"linear": 0.9, "knn": 0.8})
    _search(tmp_path, families, max_trials=6).run(again, None, deadline=lambda: float("inf"))
    assert len(again.done) == 3
    portfolio = [("linear", c) for c in get_family("linear").portfolio("binary")]
    tried = [(o.family, o.params) for o in first.done + again.done]
    assert all(tried.count(pair) == 1 for pair in portfolio)


def test_a_search_resumes_past_trials_cut_off_mid_run(tmp_path):
    families = [get_family(n) for n in ("linear", "knn")]
    first = _InstantExecutor({"linear": 0.9, "knn": 0.8})
    _search(tmp_path, families, max_trials=2).run(first, None, deadline=lambda: float("inf"))
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 's.db'}")
    study.ask()  # killed right after asking: running, no family yet
    study.ask({"family": optuna.distributions.CategoricalDistribution(["linear", "knn"])})  # killed mid-trial
    again = _InstantExecutor({"linear": 0.9, "knn": 0.8})
    resumed = _search(tmp_path, families, max_trials=6)
    resumed.run(again, None, deadline=lambda: float("inf"))
    assert {t.state for t in resumed.study.trials} <= {TrialState.COMPLETE, TrialState.FAIL}
    assert not [t for t in resumed.study.trials if t.state == TrialState.RUNNING]
    assert again.done  # it went on


def test_a_first_trial_cut_short_for_an_early_model_runs_again_in_full_next(tmp_path):
    families = [get_family(n) for n in ("lightgbm", "linear")]
    default = ("lightgbm", get_family("lightgbm").default_params("binary"))
    runs, limits = {}, {}
    for early in (True, False):
        (tmp_path / str(early)).mkdir()
        search = _search(tmp_path / str(early), families, max_trials=8)
        search.trial_time_limit_s = 10.0
        if early:  # a first model must come within a millisecond: the first trial is cut short
            search.clock = TrialClock(first_result_s=0.001, train_rows=1000, n_features=5, n_folds=5)
        executor = _InstantExecutor({"lightgbm": 0.9, "linear": 0.8})
        search.run(executor, None, deadline=lambda: float("inf"))
        runs[early] = [(o.family, o.params) for o in executor.done]
        limits[early] = executor.time_limits
    assert runs[True].count(default) == 2
    assert runs[True][:3] == [default, default, ("linear", runs[False][1][1])]  # the first model confirmed first
    assert limits[True][1:3] == [10.0 * CONFIRM_LIMIT_FACTOR, 10.0]  # on a longer limit
    assert runs[False].count(default) == 1


def test_a_family_whose_first_trial_would_fit_on_too_few_rows_is_dropped_not_run(tmp_path):
    """On 100k rows with 2 s a trial, linear and k-NN fit only a few thousand rows in time
    (under the 10,000 that show what a family can do): skipped once, never asked again.
    HGB fits ~14k rows and runs on that sample."""
    families = [get_family(n) for n in ("lightgbm", "linear", "hist_gradient_boosting", "knn")]
    search = _search(tmp_path, families, max_trials=12)
    search.trial_time_limit_s = 2.0
    search.clock = TrialClock(first_result_s=2.0, train_rows=100_000, n_features=50, n_folds=1)
    rows = []

    class _Recording(_InstantExecutor):
        def submit(self, fn, payload, spec, **resources):
            rows.append((spec.family, spec.max_train_rows))
            return super().submit(fn, payload, spec, **resources)

    executor = _Recording({"lightgbm": 0.9, "linear": 0.8, "hist_gradient_boosting": 0.85, "knn": 0.7})
    outcomes = search.run(executor, None, deadline=lambda: float("inf"))
    dropped = {o.family: o.error for o in outcomes if "first trial would fit on only" in (o.error or "")}
    assert set(dropped) == search.dropped == {"linear", "knn"}
    assert [o.family for o in outcomes].count("linear") == [o.family for o in outcomes].count("knn") == 1
    assert rows[0] == ("lightgbm", None)
    hgb_rows = [n for family, n in rows if family == "hist_gradient_boosting"]
    assert hgb_rows and 10_000 <= hgb_rows[0] < 100_000
    assert {family for family, _ in rows} == {"lightgbm", "hist_gradient_boosting"}


def test_with_one_split_no_trial_asks_for_a_report_link(tmp_path):
    """Nothing to prune between folds: a Ray run then never starts its mailbox actor."""
    search = _search(tmp_path, [get_family("linear")], max_trials=2)
    search.pruning = False
    executor = _InstantExecutor({"linear": 0.8})
    executor.report_link = lambda number: pytest.fail("a report link was asked for")
    search.run(executor, None, deadline=lambda: float("inf"))
    assert len(executor.done) == 2


class _PruningStudy:
    """A study with the run's pruner, over trials that name only their family."""

    def __init__(self, families: list[str]):
        self.study = optuna.create_study(direction="maximize", pruner=make_pruner())
        self.family = CategoricalDistribution(families)

    def add_completed(self, name: str, score: float) -> None:
        self.study.add_trial(optuna.trial.create_trial(params={FAMILY_PARAM: name},
                                                       distributions={FAMILY_PARAM: self.family},
                                                       value=score, intermediate_values={0: score}))

    def pruned_after_fold_one(self, name: str, score: float) -> bool:
        self.study.enqueue_trial({FAMILY_PARAM: name})
        trial = self.study.ask()
        trial.suggest_categorical(FAMILY_PARAM, self.family.choices)
        trial.report(score, 0)
        pruned = trial.should_prune()
        self.study.tell(trial, state=TrialState.PRUNED)
        return pruned


def test_a_familys_trials_are_judged_for_pruning_only_once_the_family_has_completed_one():
    pruning = _PruningStudy(["lightgbm", "knn"])
    add_completed, pruned_after_fold_one = pruning.add_completed, pruning.pruned_after_fold_one
    for score in (0.90, 0.91, 0.92, 0.93):
        add_completed("lightgbm", score)
    assert pruned_after_fold_one("lightgbm", 0.80)  # its family has completed trials: judged
    assert not pruned_after_fold_one("knn", 0.80)  # the family's first: runs to the end
    add_completed("knn", 0.85)
    assert pruned_after_fold_one("knn", 0.80)


def test_a_family_on_a_gpu_is_judged_for_pruning_against_its_own_trials_only():
    """Its trials take GPU slots no other family could use: pruned against LightGBM's
    better scores, every one after the first would stop, and the GPU sit idle."""
    pruning = _PruningStudy(["lightgbm", "mlp"])
    pruning.study.pruner.apart = frozenset({"mlp"})
    add_completed, pruned_after_fold_one = pruning.add_completed, pruning.pruned_after_fold_one
    for score in (0.92, 0.93, 0.94, 0.95):
        add_completed("lightgbm", score)
    add_completed("mlp", 0.90)
    assert pruned_after_fold_one("lightgbm", 0.91)
    assert not pruned_after_fold_one("mlp", 0.905)  # behind LightGBM, but only one MLP trial to judge by
    for score in (0.90, 0.91):
        add_completed("mlp", score)
    assert not pruned_after_fold_one("mlp", 0.905)  # among the MLP's own: not in their bottom quarter
    assert pruned_after_fold_one("mlp", 0.85)


class _SlotExecutor(_InstantExecutor):
    """Four trials at once: each ``wait`` records the families running together, then ends them."""

    slots = 4

    def __init__(self, scores):
        super().__init__(scores)
        self.together, self.resources = [], {}

    def submit(self, fn, payload, spec, **resources):
        self.resources[spec.family] = resources
        return super().submit(fn, payload, spec)

    def wait(self, handles, timeout):
        self.together.append(sorted(self.done[handle].family for handle in handles))
        return handles, []


def test_trials_on_a_gpu_run_in_slots_of_their_own_beside_the_cpu_trials(tmp_path):
    search = _search(tmp_path, [get_family("lightgbm"), get_family("mlp")], max_trials=20)
    search.use_gpus(0.5, gpus=1)  # two MLP trials share the GPU; each takes one of the four CPUs
    on_gpu = _SlotExecutor({"lightgbm": 0.95, "mlp": 0.90})
    search.run(on_gpu, None, deadline=lambda: float("inf"))
    assert on_gpu.together[0] == ["lightgbm"] * 3 + ["mlp"]  # one GPU trial until one has finished
    assert on_gpu.together[1:-1] and all(families == ["lightgbm", "lightgbm", "mlp", "mlp"]
                                         for families in on_gpu.together[1:-1])
    assert on_gpu.resources == {"lightgbm": {"num_cpus": 1, "num_gpus": 0}, "mlp": {"num_cpus": 1, "num_gpus": 0.5}}
    (tmp_path / "cpu").mkdir()
    no_gpu = _search(tmp_path / "cpu", [get_family("lightgbm"), get_family("mlp")], max_trials=20)
    on_cpus = _SlotExecutor({"lightgbm": 0.95, "mlp": 0.90})
    no_gpu.run(on_cpus, None, deadline=lambda: float("inf"))
    mlp_trials = [sum(o.family == "mlp" for o in executor.done) for executor in (on_gpu, on_cpus)]
    assert mlp_trials[0] == 9 and mlp_trials[1] < 5  # on the CPUs, its budget share decides


class _WarmingExecutor(_SlotExecutor):
    """Two GPU workers, warming up until the first ``wait`` ends (see ``Executor.start_gpu_workers``)."""

    def __init__(self, scores):
        super().__init__(scores)
        self.ready_gpu_workers, self.warming = 0, True

    def wait(self, handles, timeout):
        self.ready_gpu_workers, self.warming = 2, False
        return super().wait(handles, timeout)


def test_gpu_trials_wait_for_a_warm_worker_and_the_workers_hold_their_cpus(tmp_path):
    search = _search(tmp_path, [get_family("lightgbm"), get_family("mlp")], max_trials=12)
    search.use_gpus(0.5, gpus=1)
    executor = _WarmingExecutor({"lightgbm": 0.95, "mlp": 0.90})
    search.run(executor, None, deadline=lambda: float("inf"))
    assert executor.together[0] == ["lightgbm"] * 2  # the two GPU workers hold two of the four CPUs
    assert executor.together[1] == ["lightgbm"] * 2 + ["mlp"]  # one GPU trial until one has finished
    assert executor.together[2] == ["lightgbm"] * 2 + ["mlp"] * 2


def test_a_search_of_gpu_families_only_waits_for_its_workers_to_warm_up(tmp_path):
    search = _search(tmp_path, [get_family("mlp")], max_trials=3)
    search.use_gpus(1, gpus=1)
    executor = _WarmingExecutor({"mlp": 0.90})
    outcomes = search.run(executor, None, deadline=lambda: time.monotonic() + 60)
    assert executor.together[0] == [] and len(outcomes) == 3


class _RewarmingExecutor(_WarmingExecutor):
    """Ready at once, and warming up again (a worker replaced) from its second ``wait`` on."""

    def __init__(self, scores):
        super().__init__(scores)
        self.ready_gpu_workers, self.warming = 2, False

    def wait(self, handles, timeout):
        self.together.append(sorted(self.done[handle].family for handle in handles))
        self.warming = len(self.together) > 1
        return handles, []


def test_a_search_with_no_trial_left_to_ask_ends_without_waiting_for_a_warm_up(tmp_path):
    search = _search(tmp_path, [get_family("mlp")], max_trials=2)
    search.use_gpus(0.5, gpus=1)
    executor = _RewarmingExecutor({"mlp": 0.90})
    deadline = time.monotonic() + 5
    search.run(executor, None, deadline=lambda: deadline)
    assert executor.together == [["mlp"], ["mlp"]]  # and no wait with nothing running until the deadline


class _FailingExecutor(_InstantExecutor):
    """Every task raises from ``result``: the worker lost, or the task failing outside the trial's guard."""

    def __init__(self, lost: bool):
        super().__init__({})
        self.lost = lost

    def submit(self, fn, payload, spec, **resources):
        self.done.append(spec)
        return len(self.done) - 1

    def result(self, handle):
        raise RuntimeError("Traceback (most recent call last):\n  File \"x.py\", line 1\nValueError: boom")

    def is_lost(self, error):
        return self.lost


@pytest.mark.parametrize("lost", [False, True])
def test_a_trial_that_raises_from_its_worker_keeps_its_message_and_traceback(tmp_path, lost):
    search = _search(tmp_path, [get_family("linear")], max_trials=1)
    outcome, = search.run(_FailingExecutor(lost), None, deadline=lambda: float("inf"))
    expected = "worker lost: RuntimeError: ValueError: boom" if lost else "ValueError: boom"
    assert outcome.error == expected and outcome.traceback.endswith("ValueError: boom")
    assert failure_warnings([outcome]) == [f"every linear trial failed (1), the first with: {expected}"]


def test_no_failure_warning_for_a_family_with_a_completed_trial_or_left_out_by_the_budget():
    failed = TrialOutcome(0, "knn", {}, FAILED, error="ValueError: boom")
    done = TrialOutcome(1, "knn", {}, COMPLETE, fold_scores=[0.8])
    skipped = TrialOutcome(2, "mlp", {}, FAILED, error="skipped: estimated ~9.0s even on a tenth of the rows")
    assert failure_warnings([failed, done, skipped]) == []
