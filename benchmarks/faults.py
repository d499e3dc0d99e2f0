"""Fault tolerance and budget keeping, as figures (never as timed assertions).

1. Kills: ``--runs`` fits are each killed with SIGKILL (the whole process group: the
   driver and the workers it started) at a random moment of their budget, from
   start-up to the final writes, then resumed with ``automl fit --resume``. Printed:
   runs resumed, runs completed (exit 0 and a model that loads and predicts), and
   trials lost (trials the study held as finished at the kill that the completed run
   does not report, with the same status).
2. Budgets: one plain fit per budget in ``--budgets``; printed: wall time of the
   ``automl fit`` process against its budget, and the overrun in percent.

Data: scikit-learn's bundled breast cancer table (no download), or ``--data CSV
--target COL`` for another one.

    python benchmarks/faults.py                       # 20 kills at 20 s, budgets 10/30/120 s
    python benchmarks/faults.py --runs 5 --budgets 10
    python benchmarks/faults.py --backend ray --budgets   # kills on the Ray backend only
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml

AUTOML = str(Path(sys.executable).parent / "automl")


def _write_spec(folder: Path, data: Path, target: str, time_s: float, backend: str = "auto") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    spec = {"name": "faults", "data": {"train": str(data), "target": target}, "budget": {"time_s": time_s},
            "hardware": {"backend": backend}, "output": str(folder / "run")}
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def _finished(study: Path) -> dict[int, str]:
    if not study.is_file():
        return {}
    with sqlite3.connect(study) as db:
        try:
            rows = db.execute("select number, state from trials where state in ('COMPLETE', 'PRUNED')").fetchall()
        except sqlite3.OperationalError:  # killed before the tables were made
            return {}
    return {number: state.lower() for number, state in rows}


def _model_predicts(run: Path, data: Path, target: str) -> bool:
    rows = pd.read_csv(data).drop(columns=[target]).head(50)
    rows_path = run.parent / "rows.csv"
    rows.to_csv(rows_path, index=False)
    predicted = subprocess.run([AUTOML, "predict", str(run), str(rows_path)], capture_output=True, text=True)
    return predicted.returncode == 0 and len(predicted.stdout.splitlines()) == len(rows) + 1


def kill_and_resume(folder: Path, data: Path, target: str, time_s: float, rng: random.Random,
                    backend: str = "auto") -> dict:
    """One fit killed at a random moment, then resumed; what happened."""
    spec = _write_spec(folder, data, target, time_s, backend)
    kill_at = rng.uniform(0.5, time_s + 3.0)
    fit = subprocess.Popen([AUTOML, "fit", str(spec), "--quiet"], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        fit.wait(timeout=kill_at)
        killed = False  # it finished first
    except subprocess.TimeoutExpired:
        os.killpg(fit.pid, signal.SIGKILL)
        fit.wait()
        killed = True
    before = _finished(folder / "run" / "study.db")
    resumed = subprocess.run([AUTOML, "fit", str(spec), "--resume", "--quiet"], capture_output=True, text=True)
    summary_path = folder / "run" / "run.json"
    completed = resumed.returncode == 0 and summary_path.is_file() and _model_predicts(folder / "run", data, target)
    after = {}
    if summary_path.is_file():
        after = {t["trial"]: t["status"] for t in json.loads(summary_path.read_text())["trial_log"]}
    lost = sum(1 for number, state in before.items() if after.get(number) != state)
    return {"kill_at_s": round(kill_at, 1), "killed": killed, "finished_at_kill": len(before),
            "resumed": resumed.returncode == 0, "completed": completed, "lost": lost,
            "error": resumed.stderr.strip().splitlines()[-1] if resumed.returncode else ""}


def budget_overrun(folder: Path, data: Path, target: str, time_s: float) -> dict:
    spec = _write_spec(folder, data, target, time_s)
    started = time.monotonic()
    fit = subprocess.run([AUTOML, "fit", str(spec), "--quiet"], capture_output=True, text=True)
    wall = time.monotonic() - started
    summary = json.loads((folder / "run" / "run.json").read_text()) if fit.returncode == 0 else {}
    return {"budget_s": time_s, "wall_s": round(wall, 2), "overrun_pct": round(100 * (wall - time_s) / time_s, 1),
            "exit": fit.returncode, "timings": summary.get("timings", {}), "backend": summary.get("backend")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--kill-budget-s", type=float, default=20.0)
    parser.add_argument("--backend", choices=["auto", "ray", "local"], default="auto",
                        help="hardware.backend of the killed runs (the budget runs use auto)")
    parser.add_argument("--budgets", type=float, nargs="*", default=[10.0, 30.0, 120.0])
    parser.add_argument("--data", type=Path)
    parser.add_argument("--target", default="target")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="automl-faults-"))
    data = args.data
    if data is None:
        from sklearn.datasets import load_breast_cancer

        data = work / "breast_cancer.csv"
        load_breast_cancer(as_frame=True).frame.to_csv(data, index=False)
    rng = random.Random(args.seed)
    try:
        results = []
        for i in range(args.runs):
            result = kill_and_resume(work / f"kill_{i:02d}", data, args.target, args.kill_budget_s, rng,
                                     args.backend)
            results.append(result)
            print(f"run {i + 1:2d}: killed at {result['kill_at_s']:5.1f}s" if result["killed"] else
                  f"run {i + 1:2d}: finished before its kill at {result['kill_at_s']:.1f}s", end="")
            print(f", {result['finished_at_kill']} trials finished, resume: "
                  f"{'completed' if result['completed'] else 'FAILED ' + result['error']}, lost {result['lost']}")
        if results:
            print(f"\nruns killed {sum(r['killed'] for r in results)} / {len(results)}; "
                  f"resumed {sum(r['resumed'] for r in results)} / {len(results)}; "
                  f"completed {sum(r['completed'] for r in results)} / {len(results)}; "
                  f"trials lost {sum(r['lost'] for r in results)} "
                  f"(of {sum(r['finished_at_kill'] for r in results)} finished at the kills)\n")
        for time_s in args.budgets:
            result = budget_overrun(work / f"budget_{time_s:g}", data, args.target, time_s)
            timings = result["timings"]
            print(f"budget {time_s:6.1f}s: wall {result['wall_s']:7.2f}s, overrun {result['overrun_pct']:+6.1f}% "
                  f"(exit {result['exit']}, {result['backend']} backend; load {timings.get('load_s')}s, "
                  f"executor start {timings.get('executor_start_s')}s, stop {timings.get('stop_s')}s)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
