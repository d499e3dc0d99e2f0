"""``report.html``: the run at a glance (summary, search history, leaderboard)."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global state

from automl.metrics import Metric
from automl.trial import COMPLETE, TrialOutcome

STYLE = ("body{font-family:sans-serif;margin:2em} table{border-collapse:collapse} "
         "td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;font-size:13px}")


def _history_png(outcomes: list[TrialOutcome], metric: Metric) -> str:
    done = sorted((o for o in outcomes if o.status == COMPLETE), key=lambda o: o.ended_at)
    fig = Figure(figsize=(7, 3.5))
    ax = fig.subplots()
    if done:
        start = min(o.started_at for o in done)
        times = [o.ended_at - start for o in done]
        scores = [o.cv_score for o in done]
        best = pd.Series(scores).cummax() if metric.higher_is_better else pd.Series(scores).cummin()
        ax.scatter(times, scores, s=12, alpha=0.6, label="trial")
        ax.step(times, best, where="post", color="C3", label="best so far")
        ax.legend(loc="best")
    ax.set_xlabel("seconds into the search")
    ax.set_ylabel(f"CV {metric.name}")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return base64.b64encode(buffer.getvalue()).decode()


def write_report(path: Path, summary: dict, leaderboard: pd.DataFrame, outcomes: list[TrialOutcome],
                 metric: Metric) -> Path:
    holdout = summary.get("holdout")
    facts = {
        "task": summary["task"],
        "metric": f"{metric.name} ({'higher' if metric.higher_is_better else 'lower'} is better)",
        "rows": summary["rows"], "best model": summary["best_model"], "CV score": f"{summary['cv_score']:.5g}",
        "holdout score": f"{holdout['score']:.5g}" if holdout else "no holdout",
        "trials": ", ".join(f"{k} {v}" for k, v in summary["trials"].items()),
        "time": f"{summary['timings']['total_s']:.1f}s of {summary['timings']['budget_s']:g}s",
    }
    rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in facts.items())
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>automl: {html.escape(summary['name'])}</title>
<style>{STYLE}</style></head>
<body><h1>automl run: {html.escape(summary['name'])}</h1><table>{rows}</table>
<h2>Search history</h2><img src="data:image/png;base64,{_history_png(outcomes, metric)}" alt="search history">
<h2>Leaderboard</h2>{leaderboard.to_html(index=False, float_format=lambda v: f"{v:.5g}")}
</body></html>"""
    path.write_text(page)
    return path
