"""Parallel efficiency of the search loop on Ray.

Trials of a fixed, known cost (a busy loop of ``--cost-s`` CPU seconds) go
through the real search path: Optuna ask/tell in SQLite, Ray task submission,
result collection. For 1, 2, ... workers (up to the machine's cores), prints
trials per minute, parallel efficiency = throughput(N) / (N x throughput(1)),
and the scheduling overhead per trial = wall per trial on one worker - cost.

    python benchmarks/scaling.py [--cost-s 1.0] [--trials-per-worker 15]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import pandas as pd

from automl.execution import RayExecutor
from automl.metrics import get_metric
from automl.models import get_family
from automl.search import Search, storage_url
from automl.trial import COMPLETE, TrialOutcome, TrialSpec

COST_S = 1.0


def busy_trial(payload: float, spec: TrialSpec) -> TrialOutcome:
    """Burns exactly ``payload`` CPU-bound seconds, then reports a score."""
    end = time.perf_counter() + payload
    while time.perf_counter() < end:
        pass
    return TrialOutcome(spec.number, spec.family, spec.params, COMPLETE, fold_scores=[0.5])


def measure(workers: int, trials: int, cost_s: float, folder: Path) -> float:
    """Wall seconds for ``trials`` trials on ``workers`` workers (Ray start excluded)."""
    with RayExecutor(cpus=workers) as executor:
        search = Search([get_family("lightgbm")], "binary", get_metric("roc_auc", "binary"),
                        storage_url(str(folder / f"scaling-{workers}.db")), study_name=f"w{workers}",
                        seed=0, max_trials=trials)
        payload = executor.put(cost_s)
        warm = Search([get_family("lightgbm")], "binary", get_metric("roc_auc", "binary"),
                      storage_url(str(folder / f"warm-{workers}.db")), study_name="warm", seed=0,
                      max_trials=workers)
        warm.run(executor, payload, lambda: float("inf"), trial_fn=busy_trial)  # start the workers
        started = time.perf_counter()
        outcomes = search.run(executor, payload, lambda: float("inf"), trial_fn=busy_trial)
        wall = time.perf_counter() - started
    assert len(outcomes) == trials and all(o.status == COMPLETE for o in outcomes)
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cost-s", type=float, default=COST_S)
    parser.add_argument("--trials-per-worker", type=int, default=15)
    parser.add_argument("--max-workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="automl-scaling-") as tmp:
        for workers in range(1, args.max_workers + 1):
            trials = workers * args.trials_per_worker
            wall = measure(workers, trials, args.cost_s, Path(tmp))
            rows.append({"workers": workers, "trials": trials, "wall_s": round(wall, 2),
                         "trials_per_min": round(60 * trials / wall, 1)})
    base = rows[0]["trials_per_min"]
    for row in rows:
        row["efficiency"] = round(row["trials_per_min"] / (row["workers"] * base), 3)
    one = rows[0]
    overhead_ms = 1000 * (one["wall_s"] / one["trials"] - args.cost_s)
    print(f"trial cost {args.cost_s:g}s (CPU-bound), {os.cpu_count()} cores")
    print(pd.DataFrame(rows).to_string(index=False))
    print(f"scheduling overhead per trial (1 worker): {overhead_ms:.1f} ms; "
          f"targets: efficiency >= 0.85 at {args.max_workers} workers, overhead < 50 ms")


if __name__ == "__main__":
    main()
