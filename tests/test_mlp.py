"""The PyTorch MLP family on the CPU, and the planner's rule for it."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch
from sklearn import datasets, metrics
from sklearn.preprocessing import QuantileTransformer

from automl.artifact import Member, Predictor, load_predictor
from automl.data import prepare_training
from automl.models import _tabular_mlp, get_family
from automl.models._tabular_mlp import GRAPH_WARMUP_STEPS, _GraphedStep, batch_rows, pick_device, scaled_learning_rate
from automl.models.mlp import LARGE_TABLE_ROWS, LARGE_TABLE_SPREAD, WARM_UP_LIMIT_S, WARM_UP_ROWS
from automl.planner import plan
from automl.spec import build_spec

MLP = get_family("mlp")


def _split(frame, target="target", task="auto", test_rows=0.25, seed=0):
    data = prepare_training(frame, target, task)
    order = np.random.default_rng(seed).permutation(len(data.y))
    cut = int(len(order) * (1 - test_rows))
    return data, order[:cut], order[cut:]


def _fit(data, rows, **changes):
    params = {**MLP.default_params(data.task), **changes}
    return MLP.build(params, data.task, n_jobs=1, seed=0).fit(data.X.iloc[rows], data.y[rows])


def test_binary_breast_cancer_auc_floor():
    data, train, test = _split(datasets.load_breast_cancer(as_frame=True).frame)
    model = _fit(data, train)
    assert metrics.roc_auc_score(data.y[test], model.predict_proba(data.X.iloc[test])[:, 1]) > 0.95


def test_multiclass_wine_accuracy_floor():
    data, train, test = _split(datasets.load_wine(as_frame=True).frame, task="multiclass")
    model = _fit(data, train)
    proba = model.predict_proba(data.X.iloc[test])
    assert proba.shape == (len(test), 3) and np.abs(proba.sum(axis=1) - 1).max() < 1e-12  # log loss warns at 1.5e-8
    assert metrics.accuracy_score(data.y[test], model.predict(data.X.iloc[test])) > 0.85


def test_regression_target_is_standardised_and_inverted():
    data, train, test = _split(datasets.load_diabetes(as_frame=True, scaled=False).frame, task="regression")
    model = _fit(data, train)
    predictions = model.predict(data.X.iloc[test])
    # on the target's own scale (hundreds), and better than predicting the mean
    assert 50 < predictions.mean() < 300
    assert metrics.root_mean_squared_error(data.y[test], predictions) < data.y[test].std()


def test_categorical_embeddings_and_missing_values(binary_frame):
    frame = binary_frame.copy()
    frame["band"] = np.where(frame["mean_radius"] > 14, "wide", "narrow")
    frame.loc[::7, "mean_texture"] = np.nan
    data, train, test = _split(frame)
    model = _fit(data, train)
    assert model.categorical_columns_ == ["band"] and len(model.network_.embeddings) == 1
    assert np.isfinite(model.predict_proba(data.X.iloc[test])).all()


def test_same_seed_same_predictions_on_the_cpu():
    data, train, test = _split(datasets.load_breast_cancer(as_frame=True).frame)
    first = _fit(data, train).predict_proba(data.X.iloc[test])
    second = _fit(data, train).predict_proba(data.X.iloc[test])
    np.testing.assert_array_equal(first, second)


def test_uses_the_threads_it_was_given():
    data, train, _ = _split(datasets.load_breast_cancer(as_frame=True).frame)
    MLP.build(MLP.default_params("binary"), "binary", n_jobs=2, seed=0).fit(data.X.iloc[train], data.y[train])
    assert torch.get_num_threads() == 2


def test_saved_model_loads_on_a_cpu_only_machine(tmp_path, monkeypatch):
    data, train, test = _split(datasets.load_breast_cancer(as_frame=True).frame)
    model = _fit(data, train)
    assert all(p.device.type == "cpu" for p in model.network_.parameters())  # never pickled on a GPU
    predictor = Predictor(data.schema, data.target, "target", "roc_auc",
                          [Member("mlp_0", "mlp", {}, 1.0, model)])
    expected = predictor.predict_matrix(data.X.iloc[test])
    predictor.save(tmp_path / "model")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    loaded = load_predictor(tmp_path / "model")
    np.testing.assert_array_equal(loaded.predict_matrix(data.X.iloc[test]), expected)


def test_the_batch_grows_with_the_rows_and_more_on_a_gpu():
    assert [batch_rows(n, "cpu") for n in (100, 156, 3_600, 26_000, 1_000_000)] == [32, 32, 128, 256, 1024]
    assert [batch_rows(n, "cuda") for n in (3_600, 26_000, 1_000_000)] == [1024, 2048, 16384]
    assert batch_rows(20, "cpu") == 20  # never more than the rows


def test_a_larger_batch_than_the_cpus_learns_faster_by_the_square_root_of_the_ratio(monkeypatch):
    assert scaled_learning_rate(1e-3, batch_rows(26_000, "cpu"), 26_000) == 1e-3  # the CPU's batch: as tuned
    assert scaled_learning_rate(1e-3, 4 * batch_rows(26_000, "cpu"), 26_000) == pytest.approx(2e-3)
    rates = []
    adamw = _tabular_mlp._adamw
    monkeypatch.setattr(_tabular_mlp, "_adamw", lambda network, device, lr, **kw: rates.append(lr) or adamw(
        network, device, lr, **kw))
    data, train, _ = _split(datasets.load_breast_cancer(as_frame=True).frame)
    own, larger = (_fit(data, train, learning_rate=1e-3, max_epochs=1, batch_size=batch) for batch in (0, 128))
    assert larger.batch_size_ == 4 * own.batch_size_  # 128 against the CPU's 32
    assert rates == [1e-3, pytest.approx(2e-3)]


class _FakeCuda:
    """Stands in for torch.cuda's streams and graphs on a CPU: a captured step is recorded,
    not run (as CUDA's capture records kernels), and a replay runs what was captured."""

    def __init__(self, monkeypatch, capture_fails=False):
        self.capturing, self.capture_fails, self.graphs = False, capture_fails, 0
        cuda = self

        class Graph:
            def __init__(self):
                cuda.graphs += 1
                self.captured = None

            def replay(self):
                self.captured()

        @contextlib.contextmanager
        def graph(g):
            cuda.capturing = True
            try:
                yield
                if cuda.capture_fails:
                    raise RuntimeError("operation not permitted when stream is capturing")
            finally:
                cuda.capturing = False
            g.captured = cuda.last_step

        stream = type("Stream", (), {"wait_stream": lambda self, other: None})
        monkeypatch.setattr(torch.cuda, "Stream", stream)
        monkeypatch.setattr(torch.cuda, "current_stream", lambda: stream())
        monkeypatch.setattr(torch.cuda, "stream", lambda s: contextlib.nullcontext())
        monkeypatch.setattr(torch.cuda, "CUDAGraph", Graph)
        monkeypatch.setattr(torch.cuda, "graph", graph)
        monkeypatch.setattr(torch.cuda, "synchronize", lambda: None)


def _recording_step(cuda, ran):
    def step(rows):
        if cuda.capturing:  # recorded, run only on replay, reading the rows then in the captured tensor
            cuda.last_step = lambda: ran.append(("replay", rows.tolist()))
        else:
            ran.append(("eager", rows.tolist()))
    return step


def test_a_gpu_step_runs_eagerly_a_few_times_then_is_captured_once_and_replayed(monkeypatch):
    cuda, ran = _FakeCuda(monkeypatch), []
    step = _GraphedStep(_recording_step(cuda, ran), batch=2, device=torch.device("cpu"))
    batches = [torch.tensor([2 * i, 2 * i + 1]) for i in range(GRAPH_WARMUP_STEPS + 3)]
    for rows in batches:
        step(rows)
    assert ran == ([("eager", b.tolist()) for b in batches[:GRAPH_WARMUP_STEPS]]
                   + [("replay", b.tolist()) for b in batches[GRAPH_WARMUP_STEPS:]])  # each step once, on its rows
    assert cuda.graphs == 1


def test_a_gpu_step_that_cannot_be_captured_stays_eager(monkeypatch):
    cuda, ran = _FakeCuda(monkeypatch, capture_fails=True), []
    step = _GraphedStep(_recording_step(cuda, ran), batch=2, device=torch.device("cpu"))
    batches = [torch.tensor([2 * i, 2 * i + 1]) for i in range(GRAPH_WARMUP_STEPS + 3)]
    for rows in batches:
        step(rows)
    assert ran == [("eager", b.tolist()) for b in batches] and cuda.graphs == 1  # tried once, then eager


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_on_a_gpu_graphed_steps_learn_as_eager_ones_do(monkeypatch):
    data, train, test = _split(datasets.load_breast_cancer(as_frame=True).frame)
    scores = {}
    for graphs in (True, False):
        monkeypatch.setattr(_tabular_mlp, "CUDA_GRAPHS", graphs)
        model = _fit(data, train, device="cuda")
        scores[graphs] = metrics.roc_auc_score(data.y[test], model.predict_proba(data.X.iloc[test])[:, 1])
    assert scores[True] > 0.97 and abs(scores[True] - scores[False]) < 0.01, scores


def test_the_device_is_the_gpu_where_one_is_visible(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert pick_device("auto").type == "cuda" and pick_device("cpu").type == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert pick_device("auto").type == "cpu"


def test_a_gpu_workers_warm_up_fits_on_the_gpu_once_and_is_only_the_import_without_one(monkeypatch):
    fits = []
    monkeypatch.setattr(_tabular_mlp.TabularMLP, "fit", lambda model, X, y, time_limit_s=None: fits.append(
        (model.device, len(X), time_limit_s)))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    MLP.warm_up()
    assert fits == []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    MLP.warm_up()
    assert fits == [("auto", WARM_UP_ROWS, WARM_UP_LIMIT_S)]  # "auto": the GPU CUDA shows the worker


def test_large_tables_get_finer_numeric_inputs(monkeypatch):
    model = MLP.build(MLP.default_params("binary"), "binary", n_jobs=1, seed=0)
    assert model.resolved_inputs(LARGE_TABLE_ROWS - 1) == ("robust", 1.0)
    assert model.resolved_inputs(LARGE_TABLE_ROWS) == ("quantile", LARGE_TABLE_SPREAD)
    model.set_params(numeric_transform="robust", frequency_spread=10.0)
    assert model.resolved_inputs(10**6) == ("robust", 10.0)
    monkeypatch.setattr(_tabular_mlp, "LARGE_TABLE_ROWS", 300)  # breast cancer's 383 training rows count as large
    data, train, test = _split(datasets.load_breast_cancer(as_frame=True).frame)
    fitted = _fit(data, train, max_epochs=1)
    assert isinstance(fitted.numeric_[-1], QuantileTransformer)
    frequencies = fitted.network_.periodic.frequencies.detach()
    assert frequencies[:, -1].std() > 30 * frequencies[:, 0].std()  # spread from 0.1 to 10, a step of training apart


def test_the_members_are_trained_apart_and_averaged():
    data, train, test = _split(datasets.load_breast_cancer(as_frame=True).frame)
    model = _fit(data, train, ensemble_size=4)
    numeric, codes = model._tensors(data.X.iloc[test])
    with torch.no_grad():
        members = torch.softmax(model.network_(numeric, codes), dim=2)
    assert members.shape == (len(test), 4, 2)
    assert not torch.allclose(members[:, 0], members[:, 1])  # four different models...
    np.testing.assert_allclose(model.predict_proba(data.X.iloc[test]), members.mean(dim=1).numpy(), rtol=1e-5)


def test_diverging_training_fails_loudly():
    data, train, _ = _split(datasets.load_breast_cancer(as_frame=True).frame)
    with pytest.raises(FloatingPointError, match="diverged"):  # a failed trial, never a silent model
        _fit(data, train, learning_rate=1e30)


def _spec(time_s, include=None):
    return build_spec({"data": {"train": "x.csv", "target": "y"}, "budget": {"time_s": time_s},
                       "models": {"include": include}, "hardware": {"cpus": 2, "gpus": 0}})  # as on CI


def test_planner_gives_the_mlp_budget_only_where_a_trial_can_finish():
    small = plan(_spec(60), "binary", n_rows=600, n_features=10)
    assert "mlp" in [f.name for f in small.families]
    large = plan(_spec(60), "binary", n_rows=30_000, n_features=14)
    assert "mlp" not in [f.name for f in large.families] and "fewer than 20" in large.skipped["mlp"]
    assert "mlp" in [f.name for f in plan(_spec(3600), "binary", 30_000, 14).families]
    # asked for by name, it is tried whatever the estimate
    assert [f.name for f in plan(_spec(60, ["mlp"]), "binary", 30_000, 14).families] == ["mlp"]


def test_the_driver_imports_torch_once_an_mlp_may_join_the_final_model():
    """Loading a fitted MLP imports torch (seconds): the engine does it during the search,
    when an MLP becomes a candidate, not in the end phase; never for other families."""
    import subprocess
    import sys

    code = """
import sys
from automl.final_model import import_model_modules
from automl.trial import COMPLETE, TrialOutcome
assert "torch" not in sys.modules, "the engine imports torch by itself"
assert import_model_modules([TrialOutcome(0, "linear", {}, COMPLETE), TrialOutcome(1, "lightgbm", {}, COMPLETE)]) == []
assert "torch" not in sys.modules, "torch imported for families that do not need it"
for thread in import_model_modules([TrialOutcome(2, "mlp", {}, COMPLETE)]):
    thread.join()
assert "torch" in sys.modules, "torch not imported for an MLP candidate"
assert import_model_modules([TrialOutcome(3, "mlp", {}, COMPLETE)]) == [], "imported twice"
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
