"""A tabular MLP in PyTorch, after the strong tabular MLPs of 2024.

- Inputs: numeric columns robust-scaled and smoothly clipped (RealMLP, Holzmüller et
  al., 2024), or on large tables mapped through their quantiles, optionally through
  periodic embeddings (Gorishniy et al., 2022, "PLR lite" as TabM uses them) whose
  frequencies start wider spread on large tables; categoricals as learned embeddings.
- Network: TabM-mini (Gorishniy et al., 2024): ``ensemble_size`` implicit MLPs share
  one network; each sees the inputs through its own multiplicative adapter and has
  its own output head. Each is trained on its own loss; their predictions are averaged.
- Training: AdamW with beta2 = 0.95 and optional label smoothing (RealMLP), a short warm-up then
  a cosine decay, early stopping on a validation split carved from the rows ``fit`` is
  given (10%, stratified; with ``in_time_order`` the latest tenth), the best epoch's
  weights restored. The fold's own validation rows are never seen, so out-of-fold
  scores stay honest.
- Devices: the data stays on the device for the whole fit, the batch grows with the
  rows (``batch_rows``; larger on a GPU, where a step costs little more for more rows),
  and a GPU trains in bfloat16, each step replayed from a CUDA graph (``_GraphedStep``).
  The fitted network is kept on the CPU, so a model trained on a GPU loads and predicts
  on a CPU-only machine.
"""

from __future__ import annotations

import copy
import math
import time

import numpy as np
import pandas as pd
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.impute import SimpleImputer
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import QuantileTransformer, StandardScaler
from torch import nn

from automl.models.mlp import (
    LARGE_TABLE_ROWS,
    LARGE_TABLE_SPREAD,
    MAX_EMBEDDED_FEATURES,
    PERIODIC_FREQUENCIES,
    PERIODIC_SIZE,
)

VALIDATION_SHARE = 0.1
MAX_EPOCHS = 60
PATIENCE = 8
MIN_STEPS, MIN_PATIENCE_STEPS = 200, 100
"""On small data, where an epoch is a few steps, training may take more epochs (up to
MIN_STEPS steps in all) and waits longer for a better one (MIN_PATIENCE_STEPS steps)."""
WARMUP_SHARE = 0.05
"""The share of the planned steps over which the learning rate rises to its peak."""
TIME_CHECK_STEPS = 32
"""Under a time limit, the clock is read every this many steps (once an epoch is kept)."""
GRAPH_WARMUP_STEPS = 3
"""Steps run eagerly, on a side stream, before a GPU step is captured (as CUDA graphs require)."""
CUDA_GRAPHS = True
"""Whether GPU steps are replayed from a CUDA graph (benchmarks/gpu.py turns it off to
measure what the graphs gain)."""
BATCH_LIMITS = {"cpu": (32, 1024), "cuda": (256, 16384)}
"""The fewest and most rows a batch takes on each kind of device (see ``batch_rows``)."""


def batch_rows(n_rows: int, device_type: str) -> int:
    """The batch for ``n_rows`` training rows: twice their square root on a CPU, as a power
    of two (156 rows: 32, 3.6k: 128, 26k: 256, 1M: 1024, TabM's range), eight times that on
    a GPU, where a step is dominated by Python's overhead rather than the rows it takes."""
    low, high = BATCH_LIMITS.get(device_type, BATCH_LIMITS["cpu"])
    scale = 8 if device_type == "cuda" else 1
    size = 2 ** round(math.log2(max(1.0, 2 * math.sqrt(n_rows) * scale)))
    return int(min(max(size, low), high, max(2, n_rows)))


def scaled_learning_rate(learning_rate: float, batch: int, n_rows: int) -> float:
    """``learning_rate`` for a batch of ``batch`` rows: the learning rates in the search space and
    portfolio are for the CPU's batch (``batch_rows``), and a larger one takes fewer, less noisy
    steps, so its rate grows with the square root of the ratio (Malladi et al., 2022, "On the
    SDEs and Scaling Rules for Adaptive Gradient Algorithms": the rule for Adam). The default
    trained on the CPU at the GPU's batch (8x), then with the rule, against the CPU's batch
    (three seeds; one for adult and diamonds): wine_white log loss 1.041 -> 1.008 (0.997),
    soybean 0.201 -> 0.182 (0.185), titanic AUC 0.847 -> 0.852 (0.847), diamonds RMSE 577 ->
    561 (564), adult AUC 0.9229 -> 0.9240 (0.9235); mammography 0.959 -> 0.950 (0.953), sonar
    0.931 -> 0.923 (0.923), ionosphere 0.980 -> 0.978 (0.982) and quake stay within their
    seeds' spread."""
    return learning_rate * math.sqrt(batch / batch_rows(n_rows, "cpu"))


def pick_device(requested: str = "auto") -> torch.device:
    """``auto``: the first visible GPU where there is one (Ray makes only a trial's own GPUs
    visible to it), else the CPU."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def embedding_size(levels: int) -> int:
    """fast.ai's rule of thumb, capped: 1.6 * levels^0.56, at most 32."""
    return int(min(32, round(1.6 * levels**0.56)))


class RobustSmoothClip(TransformerMixin, BaseEstimator):
    """RealMLP's numeric scaling (Holzmüller et al., 2024): centre on the median, divide by
    the interquartile range, or where that is zero (a column mostly of one value, such as
    a capital gain) by half the range, then clip softly to about (-3, 3) with
    x / sqrt(1 + (x/3)^2). scikit-learn's RobustScaler would divide such a column by 1."""

    def fit(self, X, y=None) -> RobustSmoothClip:
        X = np.asarray(X, dtype=np.float64)
        self.center_ = np.median(X, axis=0)
        low, high = np.quantile(X, [0.25, 0.75], axis=0)
        spread = high - low
        half_range = (X.max(axis=0) - X.min(axis=0)) / 2
        spread = np.where(spread > 0, spread, half_range)
        self.scale_ = np.where(spread > 0, spread, 1.0)
        return self

    def transform(self, X) -> np.ndarray:
        scaled = (np.asarray(X, dtype=np.float64) - self.center_) / self.scale_
        return scaled / np.sqrt(1 + (scaled / 3) ** 2)


class _PeriodicEmbedding(nn.Module):
    """Each numeric feature as cos and sin of learned frequencies, through one linear map
    shared by the features and a ReLU (PLR "lite", Gorishniy et al., 2022). The frequencies
    start at random normal values whose spread runs, across the PERIODIC_FREQUENCIES, from
    ``scale`` to ``scale * spread`` (log-spaced; spread 1: all ``scale``)."""

    def __init__(self, n_features: int, scale: float, spread: float, generator: torch.Generator):
        super().__init__()
        scales = torch.logspace(math.log10(scale), math.log10(scale * spread), PERIODIC_FREQUENCIES)
        self.frequencies = nn.Parameter(
            torch.randn(n_features, PERIODIC_FREQUENCIES, generator=generator) * scales)
        self.linear = nn.Linear(2 * PERIODIC_FREQUENCIES, PERIODIC_SIZE)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        angles = 2 * math.pi * self.frequencies * x.unsqueeze(-1)
        features = torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)
        return torch.relu(self.linear(features)).flatten(1)


class _Network(nn.Module):
    """TabM-mini: ``members`` MLPs sharing their layers, each with its own input adapter
    (initialised to random signs, as TabM does) and output head. Returns
    (rows, members, outputs)."""

    def __init__(self, n_numeric: int, levels: list[int], n_outputs: int, n_layers: int, width: int,
                 dropout: float, activation: str, members: int, periodic_scale: float | None,
                 frequency_spread: float, generator: torch.Generator):
        super().__init__()
        self.periodic = _PeriodicEmbedding(n_numeric, periodic_scale, frequency_spread, generator) \
            if periodic_scale is not None and n_numeric else None
        # one extra row per embedding: index 0 is "missing or unseen"
        self.embeddings = nn.ModuleList(nn.Embedding(k + 1, embedding_size(k + 1)) for k in levels)
        size = (n_numeric * (PERIODIC_SIZE if self.periodic is not None else 1)
                + sum(e.embedding_dim for e in self.embeddings))
        signs = torch.randint(0, 2, (members, size), generator=generator).float() * 2 - 1
        self.adapters = nn.Parameter(signs)
        layers: list[nn.Module] = []
        for _ in range(n_layers):
            layers += [nn.Linear(size, width), _ACTIVATIONS[activation](), nn.Dropout(dropout)]
            size = width
        self.body = nn.Sequential(*layers)
        bound = 1 / math.sqrt(size)  # nn.Linear's own initialisation, per member
        self.head_weight = nn.Parameter(torch.empty(members, size, n_outputs).uniform_(-bound, bound,
                                                                                       generator=generator))
        self.head_bias = nn.Parameter(torch.zeros(members, n_outputs))

    def forward(self, numeric: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        parts = [self.periodic(numeric) if self.periodic is not None else numeric]
        parts += [embed(codes[:, i]) for i, embed in enumerate(self.embeddings)]
        inputs = torch.cat(parts, dim=1).unsqueeze(1) * self.adapters  # (rows, members, size)
        hidden = self.body(inputs)
        return torch.einsum("rms,mso->rmo", hidden, self.head_weight) + self.head_bias


_ACTIVATIONS = {"relu": nn.ReLU, "selu": nn.SELU, "silu": nn.SiLU}


class TabularMLP(BaseEstimator):
    """scikit-learn estimator around ``_Network``; ``task`` picks the loss and outputs.

    ``batch_size`` 0 lets the rows and the device choose it (``batch_rows``);
    ``periodic_scale`` None feeds numeric values to the network as they are, a number
    starts periodic embeddings' frequencies at that spread, widening across them by
    ``frequency_spread``. ``numeric_transform`` and ``frequency_spread`` "auto" depend on the
    rows trained on: quantiles and a spread of LARGE_TABLE_SPREAD from LARGE_TABLE_ROWS rows,
    robust scaling and one spread below (see ``automl.models.mlp.LARGE_TABLE_ROWS``)."""

    def __init__(self, task: str = "binary", n_layers: int = 3, width: int = 256, dropout: float = 0.1,
                 activation: str = "relu", ensemble_size: int = 8, periodic_scale: float | None = None,
                 learning_rate: float = 2e-3, weight_decay: float = 3e-4, label_smoothing: float = 0.0,
                 batch_size: int = 0, numeric_transform: str = "robust", frequency_spread: float | str = 1.0,
                 max_epochs: int = MAX_EPOCHS,
                 n_jobs: int = 1, random_state: int = 0, device: str = "auto"):
        self.task = task
        self.n_layers = n_layers
        self.width = width
        self.dropout = dropout
        self.activation = activation
        self.ensemble_size = ensemble_size
        self.periodic_scale = periodic_scale
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.label_smoothing = label_smoothing
        self.batch_size = batch_size
        self.numeric_transform = numeric_transform
        self.frequency_spread = frequency_spread
        self.max_epochs = max_epochs
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.device = device

    # -- inputs ------------------------------------------------------------
    def _split_columns(self, X: pd.DataFrame) -> tuple[list[str], list[str]]:
        categorical = [c for c in X.columns if isinstance(X[c].dtype, pd.CategoricalDtype)]
        return [c for c in X.columns if c not in categorical], categorical

    def _tensors(self, X: pd.DataFrame) -> tuple[torch.Tensor, torch.Tensor]:
        numeric = (self.numeric_.transform(X[self.numeric_columns_]) if self.numeric_columns_
                   else np.zeros((len(X), 0)))
        codes = np.stack([X[c].cat.codes.to_numpy() + 1 for c in self.categorical_columns_], axis=1) \
            if self.categorical_columns_ else np.zeros((len(X), 0), dtype=np.int64)
        return torch.as_tensor(numeric, dtype=torch.float32), torch.as_tensor(codes, dtype=torch.long)

    def resolved_inputs(self, n_rows: int) -> tuple[str, float]:
        """The numeric transform and frequency spread for training on ``n_rows`` rows ("auto" resolved)."""
        large = n_rows >= LARGE_TABLE_ROWS
        transform = ("quantile" if large else "robust") if self.numeric_transform == "auto" else self.numeric_transform
        spread = (LARGE_TABLE_SPREAD if large else 1.0) if self.frequency_spread == "auto" else self.frequency_spread
        return transform, float(spread)

    def _numeric_pipeline(self, n_rows: int):
        transform, _ = self.resolved_inputs(n_rows)
        if transform == "quantile":
            scaler = QuantileTransformer(output_distribution="normal", n_quantiles=min(1000, n_rows),
                                         random_state=self.random_state)
        elif transform == "robust":
            scaler = RobustSmoothClip()
        else:
            scaler = StandardScaler()
        return make_pipeline(SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True),
                             scaler)

    # -- training ----------------------------------------------------------
    def fit(self, X: pd.DataFrame, y: np.ndarray, time_limit_s: float | None = None,
            in_time_order: bool = False) -> TabularMLP:
        """Train; with ``time_limit_s``, training ends then and keeps its best epoch so far.
        Early stopping watches a random share of the rows, or with ``in_time_order`` (rows
        oldest first) the latest share."""
        deadline = time.monotonic() + time_limit_s if time_limit_s is not None else math.inf
        torch.manual_seed(self.random_state)
        torch.set_num_threads(max(1, self.n_jobs))
        self.numeric_columns_, self.categorical_columns_ = self._split_columns(X)
        y = np.asarray(y)
        classification = self.task != "regression"
        if in_time_order:
            cut = int(len(y) * (1 - VALIDATION_SHARE))
            train_rows, valid_rows = np.arange(cut), np.arange(cut, len(y))
        else:
            stratify = y if classification and np.bincount(y).min() >= 2 else None
            train_rows, valid_rows = train_test_split(np.arange(len(y)), test_size=VALIDATION_SHARE,
                                                      random_state=self.random_state, stratify=stratify)
        if self.numeric_columns_:
            self.numeric_ = self._numeric_pipeline(len(train_rows)).fit(X.iloc[train_rows][self.numeric_columns_])
        if classification:
            self.classes_ = np.unique(y)
            targets = torch.as_tensor(np.searchsorted(self.classes_, y), dtype=torch.long)
            n_outputs = len(self.classes_)
        else:
            self.y_mean_, self.y_std_ = float(y[train_rows].mean()), float(y[train_rows].std() or 1.0)
            targets = torch.as_tensor((y - self.y_mean_) / self.y_std_, dtype=torch.float32)
            n_outputs = 1
        numeric, codes = self._tensors(X)
        levels = [len(X[c].cat.categories) for c in self.categorical_columns_]
        periodic = self.periodic_scale if numeric.shape[1] <= MAX_EMBEDDED_FEATURES else None
        generator = torch.Generator().manual_seed(self.random_state)
        _, spread = self.resolved_inputs(len(train_rows))
        network = _Network(numeric.shape[1], levels, n_outputs, self.n_layers, self.width, self.dropout,
                           self.activation, self.ensemble_size, periodic, spread, generator)
        self.network_ = self._train(network, numeric, codes, targets, train_rows, valid_rows, deadline)
        return self

    def _member_loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The mean of the members' own losses: each is trained as a model of its own."""
        members = outputs.shape[1]
        if self.task == "regression":
            return nn.functional.mse_loss(outputs.squeeze(2).float(), targets.unsqueeze(1).expand(-1, members))
        each = targets.unsqueeze(1).expand(-1, members).flatten()  # repeat_interleave, with no sync for a graph
        return nn.functional.cross_entropy(outputs.flatten(0, 1).float(), each, label_smoothing=self.label_smoothing)

    def _ensemble_loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> float:
        """The loss of the members' averaged prediction, as the fitted model predicts."""
        if self.task == "regression":
            return float(nn.functional.mse_loss(outputs.float().mean(dim=1).squeeze(1), targets))
        probabilities = torch.softmax(outputs.float(), dim=2).mean(dim=1)
        return float(nn.functional.nll_loss(torch.log(probabilities.clamp_min(1e-12)), targets))

    def _train(self, network: _Network, numeric, codes, targets, train_rows, valid_rows,
               deadline: float = math.inf) -> _Network:
        device = pick_device(self.device)
        network.to(device)
        half = torch.bfloat16 if device.type == "cuda" else None
        numeric, codes, targets = (t.to(device) for t in (numeric, codes, targets))
        train = torch.as_tensor(train_rows, device=device)
        valid = torch.as_tensor(valid_rows, device=device)
        batch = self.batch_size or batch_rows(len(train_rows), device.type)
        batch = min(batch, len(train_rows))
        steps = max(1, len(train_rows) // batch)  # the last, partial batch is dropped
        epochs = max(self.max_epochs, math.ceil(MIN_STEPS / steps))
        patience = max(PATIENCE, math.ceil(MIN_PATIENCE_STEPS / steps))
        learning_rate = scaled_learning_rate(self.learning_rate, batch, len(train_rows))
        optimizer = _adamw(network, device, lr=learning_rate, weight_decay=self.weight_decay, betas=(0.9, 0.95))
        schedule = _warmup_cosine(epochs * steps)
        train_step = self._train_step(network, optimizer, numeric, codes, targets, half)
        if device.type == "cuda" and CUDA_GRAPHS:
            train_step = _GraphedStep(train_step, batch, device)
        shuffler = torch.Generator(device="cpu").manual_seed(self.random_state)
        best_loss, best_state, stale, taken = float("inf"), None, 0, 0
        for _ in range(epochs):
            network.train()
            order = train[torch.randperm(len(train), generator=shuffler).to(device)]
            for step in range(steps):
                if step % TIME_CHECK_STEPS == 0 and time.monotonic() >= deadline and best_state is not None:
                    break
                _set_learning_rate(optimizer, learning_rate * schedule(taken))
                train_step(order[step * batch:(step + 1) * batch])
                taken += 1
            valid_loss = self._validation_loss(network, numeric, codes, targets, valid, half)
            if valid_loss < best_loss - 1e-4:
                best_loss, best_state, stale = valid_loss, copy.deepcopy(network.state_dict()), 0
            else:
                stale += 1
                if stale >= patience:
                    break
            if time.monotonic() >= deadline:
                break
        if best_state is None:  # no finite validation loss at all (diverged): that is a failure
            raise FloatingPointError("the MLP diverged: its validation loss was never finite")
        network.load_state_dict(best_state)
        self.best_validation_loss_ = best_loss
        self.batch_size_ = batch
        return network.to("cpu").eval()  # kept on the CPU: it pickles and predicts anywhere

    def _train_step(self, network: _Network, optimizer: torch.optim.Optimizer, numeric, codes, targets, half):
        """One optimiser step on the given rows of the device-resident data."""
        def train_step(rows: torch.Tensor) -> None:
            # no autocast cache: a CUDA graph must not keep casts made while it was captured
            with torch.autocast(rows.device.type, dtype=half, enabled=half is not None, cache_enabled=False):
                loss = self._member_loss(network(numeric[rows], codes[rows]), targets[rows])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        return train_step

    @torch.no_grad()
    def _validation_loss(self, network: _Network, numeric, codes, targets, rows: torch.Tensor, half) -> float:
        network.eval()
        with torch.autocast(rows.device.type, dtype=half, enabled=half is not None):
            outputs = network(numeric[rows], codes[rows])
        return self._ensemble_loss(outputs, targets[rows])

    # -- prediction --------------------------------------------------------
    @torch.no_grad()
    def _outputs(self, X: pd.DataFrame) -> torch.Tensor:
        numeric, codes = self._tensors(X)
        return self.network_(numeric, codes).float()

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """The members' probabilities averaged, in float64: float32's rows sum to one only
        within 1e-7, and scikit-learn's log loss warns beyond 1.5e-8."""
        return torch.softmax(self._outputs(X).double(), dim=2).mean(dim=1).numpy()

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        if self.task == "regression":
            return self._outputs(X).mean(dim=1).squeeze(1).numpy() * self.y_std_ + self.y_mean_
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]


def _adamw(network: nn.Module, device: torch.device, lr: float, **settings) -> torch.optim.AdamW:
    """AdamW's fused kernel: one call a step for all parameters, half the fit time of its
    per-parameter loop on a CPU (1.3 s against 2.5 s on breast cancer). torch before 2.4
    has it on GPUs only. On a GPU it can be captured in a CUDA graph, with its learning
    rate a tensor on the device, so that a replayed step reads the schedule's current one."""
    if device.type == "cuda":
        return torch.optim.AdamW(network.parameters(), lr=torch.tensor(lr, device=device), fused=True,
                                 capturable=True, **settings)
    try:
        return torch.optim.AdamW(network.parameters(), lr=lr, fused=True, **settings)
    except RuntimeError:
        return torch.optim.AdamW(network.parameters(), lr=lr, **settings)


def _set_learning_rate(optimizer: torch.optim.Optimizer, value: float) -> None:
    for group in optimizer.param_groups:
        if isinstance(group["lr"], torch.Tensor):
            group["lr"].fill_(value)
        else:
            group["lr"] = value


class _GraphedStep:
    """A training step on a GPU, replayed from a CUDA graph. A tabular network's step is a
    few hundred small kernels, each launched from Python: the GPU waits on the launches
    (issue #16 measured a 256-row batch slower on an H100 than on the CPUs). A replay
    launches them all at once: adult's default fit on an H100, 3.13 s -> 0.89 s.

    The first GRAPH_WARMUP_STEPS run eagerly on a side stream, as capture requires; the
    next is captured, then replayed with each batch's rows copied into the captured index
    tensor. Should capture fail, steps stay eager."""

    def __init__(self, step, batch: int, device: torch.device):
        self._step = step
        self._rows = torch.zeros(batch, dtype=torch.long, device=device)
        self._graph: torch.cuda.CUDAGraph | None = None
        self._eager_steps = 0
        self._eager = False

    def __call__(self, rows: torch.Tensor) -> None:
        self._rows.copy_(rows)
        if self._graph is not None:
            self._graph.replay()
        elif self._eager:
            self._step(self._rows)
        elif self._eager_steps < GRAPH_WARMUP_STEPS:
            self._eager_steps += 1
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                self._step(self._rows)
            torch.cuda.current_stream().wait_stream(side)
        else:
            self._capture()

    def _capture(self) -> None:
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph):
                self._step(self._rows)
        except RuntimeError:
            self._eager = True
            torch.cuda.synchronize()
            self._step(self._rows)
            return
        self._graph = graph
        graph.replay()  # capture records the step without running it


def _warmup_cosine(total_steps: int):
    """The learning rate's factor at each step (counted from 0): up linearly over WARMUP_SHARE of the steps,
    then down along a half cosine to zero."""
    warmup = max(1, int(WARMUP_SHARE * total_steps))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total_steps - warmup))))

    return factor
