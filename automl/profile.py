"""The data profile: what a table holds and what is wrong with it, before any model.

Made by ``automl profile`` and at the start of every fit (stored in run.json).
Every check is cheap: the leakage check works on a sample of at most
LEAKAGE_SAMPLE_ROWS rows; it screens every numeric column at once (its quantile
bins' mean target, out of fold, and its rank correlation with the target), and
every categorical column of at most SCREEN_BINS levels (each level's mean target),
and fits a small tree only on the columns the screen cannot clear and on
categorical ones with more levels (a tree takes 25-140 ms per column: 50 s for
2,000 columns, 4.8 s for soybean's 35 categorical ones; the screen ~0.5 s for
them all).
"""

from __future__ import annotations

import html
import warnings
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
from pandas.api import types as ptypes
from scipy.stats import rankdata
from sklearn.base import clone
from sklearn.metrics import r2_score, roc_auc_score
from sklearn.model_selection import KFold, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import TargetEncoder
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

from automl.data import BOOLEAN, CATEGORICAL, CONSTANT, DATETIME, ID_LIKE, NUMERIC, column_kinds, parse_datetime

HIGH_CARDINALITY_LEVELS = 50
"""A categorical column with more levels than this is flagged: it is slow to one-hot and prone to overfit."""
MOSTLY_MISSING_SHARE = 0.5
"""Columns missing in more than this share of rows get a warning."""
IMBALANCED_MINORITY_SHARE = 0.05
"""A class below this share of rows makes the target imbalanced."""
LEAKAGE_SCORE = 0.99
"""A column that alone reaches this CV ROC AUC (classification) or R2 (regression) is a leakage suspect."""
NEAR_COPY_CORRELATION = 0.99
"""A numeric column whose rank correlation with a numeric target is at least this is a near copy of it."""
LEAKAGE_SAMPLE_ROWS = 5000
LEAKAGE_SAMPLE_CELLS, LEAKAGE_MIN_ROWS = 2_000_000, 1000
"""Wide tables are checked on fewer rows (rows x columns within LEAKAGE_SAMPLE_CELLS, at least
LEAKAGE_MIN_ROWS): a column that alone predicts the target shows on a thousand rows, and
5,000 rows x 2,000 columns took 6.6 s of a 60 s budget."""
LEAKAGE_FOLDS = 3
SCREEN_BINS = 64
"""The screen cuts a numeric column into this many quantile bins (its distinct values,
when fewer): a piecewise-constant model like the small tree's (depth 8, leaves of 5)."""
SCREEN_MARGIN = 0.1
"""A column whose screen score is this far below LEAKAGE_SCORE is cleared without a tree
(bins can blur a sharp boundary a tree would find, so the margin is wide)."""


@dataclass
class ColumnProfile:
    name: str
    kind: str
    missing_share: float
    unique: int


@dataclass
class DataProfile:
    rows: int
    columns: int
    target: str
    task: str
    column_profiles: list[ColumnProfile]
    duplicate_rows: int
    missing_target: int
    constant: list[str] = field(default_factory=list)
    id_like: list[str] = field(default_factory=list)
    high_cardinality: dict[str, int] = field(default_factory=dict)
    class_balance: dict[str, float] = field(default_factory=dict)
    """Share of rows per class (classification only)."""
    leakage_suspects: list[dict] = field(default_factory=list)
    """``{"column", "reason", "score"}`` for each column that may give the answer away."""
    warnings: list[str] = field(default_factory=list)

    @property
    def kinds(self) -> dict[str, str]:
        return {c.name: c.kind for c in self.column_profiles}

    def to_dict(self) -> dict:
        out = asdict(self)
        out["column_profiles"] = {c.name: {"kind": c.kind, "missing_share": round(c.missing_share, 4),
                                           "unique": c.unique} for c in self.column_profiles}
        return out


def profile_data(frame: pd.DataFrame, target: str, task: str, seed: int = 0,
                 deduplicate: bool = False) -> DataProfile:
    """Profile ``frame`` (features and ``target``) for a ``task`` of binary, multiclass or regression;
    ``deduplicate`` says the fit drops exact duplicates (the warning then says so)."""
    features = frame.drop(columns=[target])
    kinds, distinct = column_kinds(features)
    missing = features.isna().mean()
    columns = [ColumnProfile(str(c), kind, float(missing.iloc[j]), count)
               for j, (c, kind, count) in enumerate(zip(features.columns, kinds, distinct, strict=True))]
    profile = DataProfile(
        rows=len(frame), columns=len(frame.columns), target=target, task=task, column_profiles=columns,
        duplicate_rows=duplicate_rows(frame), missing_target=int(frame[target].isna().sum()),
        constant=[c.name for c in columns if c.kind == CONSTANT],
        id_like=[c.name for c in columns if c.kind == ID_LIKE],
        high_cardinality={c.name: c.unique for c in columns
                          if c.kind == CATEGORICAL and c.unique > HIGH_CARDINALITY_LEVELS},
    )
    labelled = frame[frame[target].notna()]
    if task != "regression":
        shares = labelled[target].astype(str).value_counts(normalize=True)
        profile.class_balance = {str(k): round(float(v), 4) for k, v in shares.items()}
    profile.leakage_suspects = leakage_suspects(labelled, target, task, profile.kinds, seed)
    profile.warnings = _warnings(profile, deduplicate)
    return profile


def duplicate_rows(frame: pd.DataFrame) -> int:
    """Rows equal to an earlier row, counted by a 64-bit hash of each row (a chance clash
    is negligible in a count that only warns): ``duplicated`` took 0.9 s on 5k x 2,000."""
    return int(pd.util.hash_pandas_object(frame, index=False).duplicated().sum())


def _warnings(profile: DataProfile, deduplicate: bool) -> list[str]:
    notes = []
    if profile.duplicate_rows:
        action = "dropped (data.deduplicate)" if deduplicate else "set data.deduplicate: true to drop them"
        notes.append(f"{profile.duplicate_rows} exact duplicate rows ({profile.duplicate_rows / profile.rows:.1%}); "
                     + action)
    if profile.missing_target:
        notes.append(f"{profile.missing_target} rows have no target value; they are left out of training")
    if profile.constant:
        notes.append(f"constant columns, dropped: {', '.join(profile.constant)}")
    if profile.id_like:
        notes.append(f"id-like columns, dropped: {', '.join(profile.id_like)}")
    for column in profile.column_profiles:
        if column.missing_share > MOSTLY_MISSING_SHARE:
            notes.append(f"column '{column.name}' is missing in {column.missing_share:.0%} of rows")
    for name, levels in profile.high_cardinality.items():
        notes.append(f"column '{name}' is a categorical with {levels} levels (high cardinality)")
    if profile.class_balance:
        label, share = min(profile.class_balance.items(), key=lambda item: item[1])
        if share < IMBALANCED_MINORITY_SHARE:
            notes.append(f"imbalanced target: class '{label}' is {share:.1%} of rows; "
                         "roc_auc or balanced_accuracy judge such a task better than accuracy")
    for suspect in profile.leakage_suspects:
        notes.append(f"leakage suspect: column '{suspect['column']}' {suspect['reason']}; "
                     "check it is known at prediction time")
    return notes


# -- leakage ------------------------------------------------------------------
def leakage_suspects(frame: pd.DataFrame, target: str, task: str, kinds: dict[str, str],
                     seed: int = 0) -> list[dict]:
    """Columns that alone predict the target almost perfectly in CV, or are a near copy of it."""
    rows = min(LEAKAGE_SAMPLE_ROWS, max(LEAKAGE_MIN_ROWS, LEAKAGE_SAMPLE_CELLS // max(1, len(kinds))))
    if len(frame) > rows:
        frame = frame.sample(rows, random_state=seed)
    y = _target_values(frame[target], task)
    if y is None:
        return []
    folds = KFold if task == "regression" else StratifiedKFold
    splits = list(folds(LEAKAGE_FOLDS, shuffle=True, random_state=seed).split(np.zeros(len(y)), y))
    checked = {name: kind for name, kind in kinds.items() if kind in (NUMERIC, BOOLEAN, CATEGORICAL, DATETIME)}
    values = {name: _column_values(frame[name], kind) for name, kind in checked.items()}
    numeric = [name for name, kind in checked.items() if kind != CATEGORICAL]
    few_levels = [name for name, kind in checked.items()  # each level a bin of its own in the screen
                  if kind == CATEGORICAL and len(np.unique(values[name])) <= SCREEN_BINS]
    cleared = set()
    if numeric or few_levels:
        codes = [pd.factorize(values[name][:, 0])[0].astype(float).reshape(-1, 1) for name in few_levels]
        X = pd.DataFrame(np.hstack([values[n] for n in numeric] + codes))
        copies = np.concatenate([_rank_correlations(X.iloc[:, :len(numeric)], frame[target], task) if numeric
                                 else np.zeros(0), np.zeros(len(few_levels))])
        screened = numeric + few_levels
        cleared = {name for name, score, copy in zip(screened, _screen_scores(X, y, task, splits), copies, strict=True)
                   if score < LEAKAGE_SCORE - SCREEN_MARGIN and copy < NEAR_COPY_CORRELATION}
    suspects = []
    for name, kind in checked.items():
        if name in cleared:
            continue
        x = values[name]
        copy = _near_copy(x, frame[target], task) if kind == NUMERIC else None
        if copy is not None:
            suspects.append({"column": name, "reason": f"is a near copy of the target (rank correlation "
                                                       f"{copy:.3f})", "score": round(copy, 4)})
            continue
        score = _single_column_score(x, y, task, kind == CATEGORICAL, seed, splits)
        if score >= LEAKAGE_SCORE:
            measure = "R2" if task == "regression" else "ROC AUC"
            suspects.append({"column": name, "reason": f"alone predicts the target with CV {measure} {score:.3f}",
                             "score": round(score, 4)})
    return suspects


def _target_values(values: pd.Series, task: str) -> np.ndarray | None:
    if task == "regression":
        return pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
    codes, _ = pd.factorize(values.astype(str), sort=True)
    if np.bincount(codes).min() < LEAKAGE_FOLDS:
        return None  # too few rows of a class to cross-validate
    return codes


def _column_values(values: pd.Series, kind: str) -> np.ndarray:
    if kind == CATEGORICAL:
        return values.astype(str).where(values.notna(), "<missing>").to_numpy(dtype=object).reshape(-1, 1)
    if kind == DATETIME:
        stamps = parse_datetime(values)
        if stamps.dt.tz is not None:
            stamps = stamps.dt.tz_localize(None)
        return (stamps - pd.Timestamp(0)).dt.total_seconds().to_numpy(dtype=float).reshape(-1, 1)
    if kind == BOOLEAN:
        return values.astype(float).to_numpy().reshape(-1, 1)
    return pd.to_numeric(values, errors="coerce").to_numpy(dtype=float).reshape(-1, 1)


def _near_copy(x: np.ndarray, target: pd.Series, task: str) -> float | None:
    if task == "multiclass" or not ptypes.is_numeric_dtype(target):
        return None
    pair = pd.DataFrame({"x": x[:, 0], "y": target.to_numpy(dtype=float)}).dropna()
    if len(pair) < 10 or pair["x"].nunique() < 2:
        return None
    correlation = abs(pair["x"].corr(pair["y"], method="spearman"))
    return float(correlation) if correlation >= NEAR_COPY_CORRELATION else None


def _screen_scores(X: pd.DataFrame, y: np.ndarray, task: str,
                   splits: list[tuple[np.ndarray, np.ndarray]]) -> list[float]:
    """Each column's out-of-fold score when its quantile bins (missing values a bin of
    their own) predict their training rows' mean target: every column at once."""
    n_rows, n_columns = X.shape
    codes = _bin_codes(X)
    flat = codes + np.arange(n_columns) * (SCREEN_BINS + 1)  # one bin index space per column
    targets = (y[:, None] == np.arange(int(y.max()) + 1)).astype(float) if task == "multiclass" else y[:, None]
    oof = np.zeros((n_rows, n_columns, targets.shape[1]))
    for train, valid in splits:
        bins, size = flat[train].ravel(), n_columns * (SCREEN_BINS + 1)
        counts = np.bincount(bins, minlength=size).astype(float)
        sums = np.column_stack([np.bincount(bins, weights=np.repeat(targets[train, k], n_columns), minlength=size)
                                for k in range(targets.shape[1])])
        means = np.where(counts[:, None] > 0, sums / np.maximum(counts, 1.0)[:, None], targets[train].mean(axis=0))
        oof[valid] = means[flat[valid]]
    if task == "regression":
        residual = ((oof[:, :, 0] - y[:, None]) ** 2).sum(axis=0)
        return list(1.0 - residual / max(((y - y.mean()) ** 2).sum(), 1e-12))
    if task == "binary":
        return list(_aucs(y, oof[:, :, 0]))
    return list(np.mean([_aucs(targets[:, k], oof[:, :, k]) for k in range(targets.shape[1])], axis=0))


def _bin_codes(X: pd.DataFrame) -> np.ndarray:
    """Each column's quantile bins 0..SCREEN_BINS-1 (each distinct value its own bin, when
    there are few), missing values in bin SCREEN_BINS. NumPy sorts each column once
    (missing values last); pandas' rank took 1 s per 10M values."""
    values = X.to_numpy(dtype=float)
    missing = np.isnan(values)
    order = np.argsort(values, axis=0, kind="stable")
    ordered = np.take_along_axis(values, order, axis=0)
    changes = np.vstack([np.zeros((1, values.shape[1])), np.diff(ordered, axis=0) != 0])
    dense_ordered = np.cumsum(changes, axis=0)
    position, dense = np.empty_like(values), np.empty_like(values)
    columns = np.arange(values.shape[1])
    position[order, columns] = np.arange(len(values))[:, None]
    dense[order, columns] = dense_ordered
    present = np.maximum((~missing).sum(axis=0), 1)
    distinct = np.where(missing, 0, dense).max(axis=0) + 1
    codes = np.where(distinct <= SCREEN_BINS, dense, np.floor(position * SCREEN_BINS / present))
    return np.where(missing, SCREEN_BINS, np.minimum(codes, SCREEN_BINS - 1)).astype(int)


def _aucs(y: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """ROC AUC of each column of ``scores`` for the 0/1 labels ``y`` (Mann-Whitney, ties
    averaged), 0 where one class is absent."""
    positives = int(np.sum(y == 1))
    negatives = len(y) - positives
    if positives == 0 or negatives == 0:
        return np.zeros(scores.shape[1])
    ranks = rankdata(scores, axis=0)
    return (ranks[y == 1].sum(axis=0) - positives * (positives + 1) / 2) / (positives * negatives)


def _rank_correlations(X: pd.DataFrame, target: pd.Series, task: str) -> np.ndarray:
    """|Spearman correlation| of each column with a numeric target, all at once (what
    ``_near_copy`` checks one column at a time); 0 for a multiclass or text target."""
    if task == "multiclass" or not ptypes.is_numeric_dtype(target):
        return np.zeros(X.shape[1])
    target = target.astype(float).reset_index(drop=True)
    complete = X.notna().all().to_numpy()
    correlations = np.zeros(X.shape[1])
    correlations[complete] = _pearson(X.loc[:, complete].rank().to_numpy(), target.rank().to_numpy())
    gappy = X.loc[:, ~complete]  # pairwise deletion, one column at a time
    if gappy.shape[1]:
        correlations[~complete] = gappy.corrwith(target, method="spearman").to_numpy()
    return np.nan_to_num(np.abs(correlations))


def _pearson(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson correlation of each column of ``X`` with ``y`` (NaN for a constant column)."""
    Xc, yc = X - X.mean(axis=0), y - y.mean()
    with np.errstate(invalid="ignore", divide="ignore"):
        return (Xc * yc[:, None]).sum(axis=0) / np.sqrt((Xc**2).sum(axis=0) * (yc**2).sum())


def _single_column_score(x: np.ndarray, y: np.ndarray, task: str, categorical: bool, seed: int,
                         splits: list[tuple[np.ndarray, np.ndarray]]) -> float:
    """Out-of-fold score of a small tree on this one column (categories target-encoded
    first), scored once over all rows: a few milliseconds per column."""
    if task == "regression":
        model = DecisionTreeRegressor(max_depth=8, min_samples_leaf=5, random_state=seed)
    else:
        model = DecisionTreeClassifier(max_depth=8, min_samples_leaf=5, random_state=seed)
    if categorical:
        target_type = "continuous" if task == "regression" else ("binary" if task == "binary" else "multiclass")
        model = make_pipeline(TargetEncoder(target_type=target_type, random_state=seed), model)
    n_classes = int(y.max()) + 1 if task != "regression" else 0
    oof = np.zeros(len(y)) if task == "regression" else np.zeros((len(y), n_classes))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for train, valid in splits:
            fitted = clone(model).fit(x[train], y[train])
            if task == "regression":
                oof[valid] = fitted.predict(x[valid])
            else:
                oof[np.ix_(valid, fitted.classes_)] = fitted.predict_proba(x[valid])
        try:
            if task == "regression":
                return float(r2_score(y, oof))
            return float(roc_auc_score(y, oof[:, 1]) if task == "binary" else roc_auc_score(y, oof, multi_class="ovr"))
        except ValueError:
            return 0.0


# -- presentation -------------------------------------------------------------
def profile_html(profile: dict) -> str:
    """A profile (as ``DataProfile.to_dict`` gives it, e.g. from run.json) as an HTML fragment:
    the report embeds it; ``automl profile --html`` wraps it in a page."""
    facts = {"rows": profile["rows"], "columns": profile["columns"], "target": profile["target"],
             "task": profile["task"], "exact duplicate rows": profile["duplicate_rows"],
             "rows without a target": profile["missing_target"]}
    if profile["class_balance"]:
        facts["class balance"] = ", ".join(f"{k}: {v:.1%}" for k, v in profile["class_balance"].items())
    fact_rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in facts.items())
    column_rows = "".join(
        f"<tr><td>{html.escape(name)}</td><td>{c['kind']}</td><td>{c['missing_share']:.1%}</td><td>{c['unique']}</td></tr>"
        for name, c in profile["column_profiles"].items())
    notes = "".join(f"<li>{html.escape(w)}</li>" for w in profile["warnings"]) or "<li>none</li>"
    return (f"<table>{fact_rows}</table><h3>Warnings</h3><ul class='warnings'>{notes}</ul>"
            f"<h3>Columns</h3><table><tr><th>column</th><th>kind</th><th>missing</th><th>distinct</th></tr>"
            f"{column_rows}</table>")
