"""GPU: the MLP on the GPU against the CPU, and a whole fit that uses the GPU.

Under 5 minutes on a one-GPU machine. Prints:
- the MLP's default configuration fitted on adult and diamonds, on the GPU and on the
  GPU without CUDA graphs and on the CPUs only (all cores): fit seconds, test score, the
  batch it chose. A first GPU fit on generated rows comes before them, timed: what each
  process pays once (CUDA's context, kernels loaded on first use);
- with ``--batches``, adult's GPU fit at each of those batch sizes;
- ``automl fit`` of adult at 90 s with ``hardware.gpus: 1`` and the MLP with LightGBM:
  MLP trials completed, and those stopped at their time limit, whether an MLP is in the
  final model, and the GPU's busy share during the fit (nvidia-smi, sampled twice a second),
  the seconds its GPU workers took to start and warm up, and how many processes ran MLP trials;
  then ``automl evaluate`` of that GPU-trained model in a process that sees no GPU.

Without a GPU it says so and exits 0.

    python benchmarks/gpu.py [--datasets ../shared/datasets] [--budget-s 90] [--batches 1024 4096]
                             [--keep DIR] [--fit-only]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def gpu_present() -> bool:
    import torch

    return torch.cuda.is_available()


def first_fit_s() -> float:
    """A process's first GPU fit (CUDA's context, kernels loaded on first use), on 2,000
    generated rows: what each trial worker pays once, and no timed fit below pays."""
    import numpy as np
    import pandas as pd
    from sklearn.datasets import make_classification

    from automl.models import get_family

    X, y = make_classification(2000, 10, random_state=0)
    frame = pd.DataFrame(X).rename(columns=str).assign(band=pd.Categorical(np.where(X[:, 0] > 0, "a", "b")))
    family = get_family("mlp")
    model = family.build(family.default_params("binary"), "binary", 1, 0).set_params(device="cuda")
    started = time.perf_counter()
    model.fit(frame, y)
    return round(time.perf_counter() - started, 2)


def fit_mlp(datasets: Path, entry: dict, device: str, batch_size: int = 0, graphs: bool = True) -> dict:
    """The MLP's default on one dataset and device: fit seconds, test score and batch
    (``batch_size`` 0: the one the MLP chooses; ``graphs``: GPU steps replayed from CUDA graphs)."""
    from mlp import fit_and_score, prepared  # benchmarks/mlp.py

    from automl.models import _tabular_mlp, get_family

    data, X_test, y_test, metric = prepared(datasets, entry)
    family = get_family("mlp")
    model = family.build(family.default_params(data.task), data.task, os.cpu_count() or 1, 0)
    model.set_params(device=device, batch_size=batch_size)
    _tabular_mlp.CUDA_GRAPHS = graphs
    try:
        fit_s, score = fit_and_score(model, data, X_test, y_test, metric)
    finally:
        _tabular_mlp.CUDA_GRAPHS = True
    return {"dataset": entry["name"], "device": device, "cuda_graphs": graphs and device == "cuda",
            "fit_s": fit_s, "score": score, "metric": entry["metric"], "batch": model.batch_size_}


class GpuSampler(threading.Thread):
    """The GPU's utilisation, read from nvidia-smi twice a second until ``stop``."""

    def __init__(self):
        super().__init__(daemon=True)
        self.samples: list[float] = []
        self._done = threading.Event()  # not _stop: threading.Thread has a method of that name

    def run(self) -> None:
        while not self._done.wait(0.5):
            try:
                out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"],
                                     capture_output=True, text=True, timeout=5).stdout.split()
                self.samples.append(float(out[0]))
            except (OSError, subprocess.SubprocessError, ValueError, IndexError):
                pass

    def stop(self) -> None:
        self._done.set()
        self.join()


def gpu_fit(datasets: Path, entry: dict, budget_s: float, keep: Path | None = None) -> dict:
    """``automl fit`` of one dataset with a GPU: the MLP's trials and the GPU's busy share,
    and whether the model evaluates where no GPU is visible (``keep``: a folder for run.json)."""
    from automl import AutoML

    with tempfile.TemporaryDirectory() as folder:
        run = Path(folder) / "run"
        spec = {"name": f"gpu-{entry['name']}", "data": {"train": str((datasets / entry["train"]).resolve()),
                                                          "target": entry["target"]},
                "task": entry["task"], "metric": entry["metric"], "budget": {"time_s": budget_s},
                "models": {"include": ["mlp", "lightgbm"]}, "hardware": {"gpus": 1}, "output": str(run)}
        spec_path = Path(folder) / "spec.yaml"
        spec_path.write_text(yaml.safe_dump(spec))
        sampler = GpuSampler()
        sampler.start()
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "automl", "fit", str(spec_path), "--quiet"],
                              capture_output=True, text=True)
        wall_s = time.perf_counter() - started
        sampler.stop()
        if done.returncode != 0:
            return {"dataset": entry["name"], "error": done.stderr.strip().splitlines()[-1:]}
        summary = json.loads((run / "run.json").read_text())
        if keep is not None:
            shutil.copy(run / "run.json", keep / "gpu_fit_run.json")
        mlp = [t for t in summary["trial_log"] if t["family"] == "mlp"]
        members = [m.family for m in AutoML.load(run).predictor_.members]
        on_cpu = subprocess.run([sys.executable, "-m", "automl", "evaluate", str(run), str(datasets / entry["test"])],
                                capture_output=True, text=True, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    busy = sampler.samples
    return {"dataset": entry["name"], "budget_s": budget_s, "wall_s": round(wall_s, 1),
            "mlp_trials": len(mlp), "mlp_complete": sum(t["status"] == "complete" for t in mlp),
            "mlp_past_limit": sum("ran past its limit" in (t["error"] or "") for t in mlp),
            "mlp_trial_s": _means(mlp, fit="fit_time_s", predict="predict_time_s",
                                  start_wait="start_wait_s", verdict_wait="verdict_wait_s"),
            "gpus_per_trial": summary["plan"].get("gpus_per_trial"),
            "gpu_worker_start_s": summary["timings"].get("gpu_worker_start_s"),
            "mlp_worker_pids": len({t["pid"] for t in mlp if t["pid"]}),
            "mlp_in_final_model": "mlp" in members, "members": members,
            "gpu_busy_mean_pct": round(sum(busy) / len(busy), 1) if busy else None,
            "gpu_busy_share": round(sum(s > 0 for s in busy) / len(busy), 2) if busy else None,
            "cpu_only_evaluate": (json.loads(on_cpu.stdout)["score"] if on_cpu.returncode == 0
                                  else on_cpu.stderr.strip().splitlines()[-1:])}


def _means(trials: list[dict], **columns: str) -> dict:
    """Mean seconds per finished trial: its wall time (start to ``ended_at``) and each logged
    column (where a trial's time goes besides fitting: a new worker's start, waiting for
    pruning verdicts)."""
    ran = [t for t in trials if t["ended_at"]]
    if not ran:
        return {}
    rows = [{"wall": t["ended_at"] - t["started_at"], **{name: t[key] for name, key in columns.items()}}
            for t in ran]
    return {name: round(sum(row[name] for row in rows) / len(rows), 2) for name in rows[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", type=Path, default=ROOT.parent / "shared" / "datasets")
    parser.add_argument("--budget-s", type=float, default=90)
    parser.add_argument("--batches", type=int, nargs="*", default=[], help="adult's GPU fit at these batch sizes too")
    parser.add_argument("--keep", type=Path, help="a folder to keep the GPU fit's run.json in")
    parser.add_argument("--fit-only", action="store_true", help="only the GPU fit of adult (about 2 minutes)")
    args = parser.parse_args()
    if not gpu_present():
        print("no GPU visible to torch (torch.cuda.is_available() is False): nothing to measure")
        return
    manifest = {e["name"]: e for e in json.loads((args.datasets / "manifest.json").read_text())}
    if not args.fit_only:
        print(json.dumps({"first_gpu_fit_s": first_fit_s()}), flush=True)
        for name in ("adult", "diamonds"):
            for device, graphs in (("cuda", True), ("cuda", False), ("cpu", False)):
                print(json.dumps(fit_mlp(args.datasets, manifest[name], device, graphs=graphs)), flush=True)
        for batch in args.batches:
            print(json.dumps(fit_mlp(args.datasets, manifest["adult"], "cuda", batch)), flush=True)
    print(json.dumps(gpu_fit(args.datasets, manifest["adult"], args.budget_s, args.keep)), flush=True)


if __name__ == "__main__":
    main()
