"""Greedy ensemble selection over out-of-fold predictions (Caruana et al., 2004).

Each round adds, with replacement, the candidate whose inclusion gives the best
score of the averaged prediction; the weights are how often each was picked.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from automl.metrics import Metric


@dataclass
class EnsembleSelection:
    weights: dict[int, float]
    """Candidate index -> weight; the weights sum to 1."""
    score: float


def select_ensemble(predictions: list[np.ndarray], y: np.ndarray, metric: Metric, rounds: int) -> EnsembleSelection:
    """Pick weights for ``predictions`` (aligned out-of-fold arrays over the same rows)."""
    counts = np.zeros(len(predictions), dtype=int)
    blend = np.zeros_like(predictions[0], dtype=float)
    best_score = metric.worst()
    for step in range(1, rounds + 1):
        scores = [metric.score(y, (blend * (step - 1) + candidate) / step) for candidate in predictions]
        pick = int(np.argmax(scores) if metric.higher_is_better else np.argmin(scores))
        if step > 1 and not metric.is_better(scores[pick], best_score):
            break  # no candidate improves the blend any more
        counts[pick] += 1
        blend = (blend * (step - 1) + predictions[pick]) / step
        best_score = scores[pick]
    total = counts.sum()
    return EnsembleSelection({i: c / total for i, c in enumerate(counts) if c}, float(best_score))
