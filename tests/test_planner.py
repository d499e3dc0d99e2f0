"""The planner: portfolio order, budget shares, and the search following both."""

from __future__ import annotations

from automl.metrics import get_metric
from automl.models import get_family
from automl.planner import FamilyShares, plan, portfolio_queue
from automl.search import Search
from automl.spec import build_spec
from automl.trial import COMPLETE, TrialOutcome


def _spec(time_s=60, include=None):
    return build_spec({"data": {"train": "x.csv", "target": "y"}, "budget": {"time_s": time_s},
                       "models": {"include": include}})


def test_portfolio_queue_lets_families_take_turns():
    lightgbm, linear, knn = (get_family(n) for n in ("lightgbm", "linear", "knn"))
    queue = portfolio_queue([lightgbm, linear, knn], "binary")
    names = [name for name, _ in queue]
    assert names[:3] == ["lightgbm", "linear", "knn"]  # every family's best-known configuration first
    assert names[3:6] == ["lightgbm", "linear", "knn"]
    assert names.count("lightgbm") == len(lightgbm.portfolio("binary"))
    assert [params for name, params in queue if name == "lightgbm"] == lightgbm.portfolio("binary")


def test_plan_queues_the_portfolio_of_the_chosen_families_only():
    chosen = plan(_spec(include=["linear", "knn"]), "regression", 500, 5, 5)
    assert {name for name, _ in chosen.portfolio} == {"linear", "knn"}
    assert chosen.describe()["portfolio"][:2] == ["linear", "knn"]


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

    def __init__(self, scores):
        self.scores, self.done = scores, []

    def report_link(self, number):
        return None

    def submit(self, fn, payload, spec, **resources):
        outcome = TrialOutcome(spec.number, spec.family, spec.params, COMPLETE,
                               fold_scores=[self.scores[spec.family]])
        self.done.append(outcome)
        return len(self.done) - 1

    def wait(self, handles, timeout):
        return handles, []

    def answer(self, verdicts):
        pass

    def result(self, handle):
        return self.done[handle], type("Placement", (), {"node_id": "local"})()

    def cancel(self, handle):
        pass


def test_search_runs_the_portfolio_then_tunes_the_winning_family_most(tmp_path):
    families = [get_family(n) for n in ("lightgbm", "linear", "knn")]
    metric = get_metric("roc_auc", "binary")
    run_plan = plan(_spec(include=["lightgbm", "linear", "knn"]), "binary", 1000, 5, 5)
    search = Search(families, "binary", metric, f"sqlite:///{tmp_path / 's.db'}", "s", seed=0, max_trials=60,
                    first_configs=run_plan.portfolio, shares=FamilyShares(families, True))
    executor = _InstantExecutor({"lightgbm": 0.7, "linear": 0.9, "knn": 0.8})
    search.run(executor, None, deadline=lambda: float("inf"))
    families_run = [o.family for o in executor.done]
    queued = len(run_plan.portfolio)
    assert [(o.family, o.params) for o in executor.done[:queued]] == run_plan.portfolio
    tuned = families_run[queued:]
    assert tuned.count("linear") > tuned.count("knn") > tuned.count("lightgbm")
    # by the end, each family's share of the trial cost is close to its target
    cost = {f.name: f.relative_cost * families_run.count(f.name) for f in families}
    targets = FamilyShares(families, True).shares(executor.scores)
    for name, target in targets.items():
        assert abs(cost[name] / sum(cost.values()) - target) < 0.1, (name, cost, targets)
