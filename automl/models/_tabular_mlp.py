"""A tabular MLP in PyTorch: numeric inputs scaled, categoricals as learned embeddings.

Training: AdamW with a one-cycle schedule, early stopping on a validation split
carved from the rows ``fit`` is given (10%, stratified for classification), with
the best epoch's weights restored. The fold's own validation rows are never
seen, so out-of-fold scores stay honest. On a GPU it trains in mixed precision
on the device Ray assigned; the fitted network is kept on the CPU, so a model
trained on a GPU loads and predicts on a CPU-only machine.
"""

from __future__ import annotations

import copy
import math
import time

import numpy as np
import pandas as pd
import torch
from sklearn.base import BaseEstimator
from sklearn.impute import SimpleImputer
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import QuantileTransformer, StandardScaler
from torch import nn

VALIDATION_SHARE = 0.1
MAX_EPOCHS = 60
PATIENCE = 6
TIME_CHECK_STEPS = 32
"""Under a time limit, the clock is read every this many steps (once an epoch is kept)."""


def embedding_size(levels: int) -> int:
    """fast.ai's rule of thumb, capped: 1.6 * levels^0.56, at most 32."""
    return int(min(32, round(1.6 * levels**0.56)))


class _Network(nn.Module):
    def __init__(self, n_numeric: int, levels: list[int], n_outputs: int, n_layers: int, width: int,
                 dropout: float, normalization: str):
        super().__init__()
        # one extra row per embedding: index 0 is "missing or unseen"
        self.embeddings = nn.ModuleList(nn.Embedding(k + 1, embedding_size(k + 1)) for k in levels)
        size = n_numeric + sum(e.embedding_dim for e in self.embeddings)
        layers: list[nn.Module] = []
        for _ in range(n_layers):
            layers.append(nn.Linear(size, width))
            if normalization == "batch":
                layers.append(nn.BatchNorm1d(width))
            elif normalization == "layer":
                layers.append(nn.LayerNorm(width))
            layers += [nn.ReLU(), nn.Dropout(dropout)]
            size = width
        layers.append(nn.Linear(size, n_outputs))
        self.body = nn.Sequential(*layers)

    def forward(self, numeric: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        parts = [numeric] + [embed(codes[:, i]) for i, embed in enumerate(self.embeddings)]
        return self.body(torch.cat(parts, dim=1))


class TabularMLP(BaseEstimator):
    """scikit-learn estimator around ``_Network``; ``task`` picks the loss and outputs."""

    def __init__(self, task: str = "binary", n_layers: int = 2, width: int = 128, dropout: float = 0.1,
                 normalization: str = "batch", learning_rate: float = 3e-3, weight_decay: float = 1e-4,
                 batch_size: int = 256, numeric_transform: str = "standard", max_epochs: int = MAX_EPOCHS,
                 n_jobs: int = 1, random_state: int = 0, device: str = "auto"):
        self.task = task
        self.n_layers = n_layers
        self.width = width
        self.dropout = dropout
        self.normalization = normalization
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.numeric_transform = numeric_transform
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

    def _numeric_pipeline(self, n_rows: int):
        scaler = (QuantileTransformer(output_distribution="normal", n_quantiles=min(1000, n_rows),
                                      random_state=self.random_state)
                  if self.numeric_transform == "quantile" else StandardScaler())
        return make_pipeline(SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True),
                             scaler)

    def _device(self) -> torch.device:
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)

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
        network = _Network(numeric.shape[1], levels, n_outputs, self.n_layers, self.width, self.dropout,
                           self.normalization)
        self.network_ = self._train(network, numeric, codes, targets, train_rows, valid_rows, deadline)
        return self

    def _loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if self.task == "regression":
            return nn.functional.mse_loss(outputs.squeeze(1).float(), targets)
        return nn.functional.cross_entropy(outputs.float(), targets)

    def _train(self, network: _Network, numeric, codes, targets, train_rows, valid_rows,
               deadline: float = math.inf) -> _Network:
        device = self._device()
        network.to(device)
        mixed = device.type == "cuda"
        tensors = [t.to(device) for t in (numeric, codes, targets)]
        train = torch.as_tensor(train_rows, device=device)
        batch = min(self.batch_size, len(train_rows))
        steps = max(1, len(train_rows) // batch)  # the last, partial batch is dropped (BatchNorm needs 2+ rows)
        optimizer = torch.optim.AdamW(network.parameters(), lr=self.learning_rate, weight_decay=self.weight_decay)
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=self.learning_rate,
                                                       total_steps=self.max_epochs * steps)
        scaler = torch.amp.GradScaler("cuda", enabled=mixed)
        shuffler = torch.Generator(device="cpu").manual_seed(self.random_state)
        best_loss, best_state, stale = float("inf"), None, 0
        for _ in range(self.max_epochs):
            network.train()
            order = train[torch.randperm(len(train), generator=shuffler).to(device)]
            for step in range(steps):
                if step % TIME_CHECK_STEPS == 0 and time.monotonic() >= deadline and best_state is not None:
                    break
                rows = order[step * batch:(step + 1) * batch]
                with torch.autocast(device.type, dtype=torch.float16, enabled=mixed):
                    loss = self._loss(network(tensors[0][rows], tensors[1][rows]), tensors[2][rows])
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                schedule.step()
            valid_loss = self._validation_loss(network, tensors, torch.as_tensor(valid_rows, device=device))
            if valid_loss < best_loss - 1e-4:
                best_loss, best_state, stale = valid_loss, copy.deepcopy(network.state_dict()), 0
            else:
                stale += 1
                if stale >= PATIENCE:
                    break
            if time.monotonic() >= deadline:
                break
        if best_state is None:  # no finite validation loss at all (diverged): that is a failure
            raise FloatingPointError("the MLP diverged: its validation loss was never finite")
        network.load_state_dict(best_state)
        self.best_validation_loss_ = best_loss
        return network.to("cpu").eval()  # kept on the CPU: it pickles and predicts anywhere

    @torch.no_grad()
    def _validation_loss(self, network: _Network, tensors, rows: torch.Tensor) -> float:
        network.eval()
        return float(self._loss(network(tensors[0][rows], tensors[1][rows]), tensors[2][rows]))

    # -- prediction --------------------------------------------------------
    @torch.no_grad()
    def _outputs(self, X: pd.DataFrame) -> torch.Tensor:
        numeric, codes = self._tensors(X)
        return self.network_(numeric, codes).float()

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        return torch.softmax(self._outputs(X), dim=1).numpy()

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        if self.task == "regression":
            return self._outputs(X).squeeze(1).numpy() * self.y_std_ + self.y_mean_
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]
