"""``report.html``: the model's documentation card, one self-contained file.

Sections: summary, spec, data profile, leaderboard, optimisation history, feature
importance, diagnostics (ROC curve and confusion matrix, or residuals), fairness,
versions. Plots are PNGs embedded as data URIs, so the file can be mailed or archived.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import yaml
from sklearn.metrics import confusion_matrix, roc_curve

from automl import atomic
from automl.assess import Checks, Diagnostics, Importance
from automl.metrics import Metric
from automl.profile import profile_html
from automl.trial import COMPLETE, TrialOutcome

if TYPE_CHECKING:
    from matplotlib.figure import Figure

PLOTTING_MODULE = "matplotlib.figure"
"""Imported where a figure is made (no pyplot: no GUI backend, no global state); a fit imports
it in the background while its search runs, so its 0.6 s leave the data loading's path."""

STYLE = ("body{font-family:sans-serif;margin:2em;max-width:75em} table{border-collapse:collapse;margin:.5em 0} "
         "td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;font-size:13px} "
         "pre{background:#f6f6f6;padding:1em;font-size:12px} nav a{margin-right:1em}")
SECTIONS = {"summary": "Summary", "spec": "Spec", "profile": "Data profile", "leaderboard": "Leaderboard",
            "history": "Optimisation history", "importance": "Feature importance", "diagnostics": "Diagnostics",
            "fairness": "Fairness", "versions": "Versions"}
MAX_IMPORTANCE_BARS = 20


def _figure(size: tuple[float, float]) -> Figure:
    from matplotlib.figure import Figure  # see PLOTTING_MODULE

    return Figure(figsize=size)


def _png(fig: Figure, alt: str) -> str:
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    data = base64.b64encode(buffer.getvalue()).decode()
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(alt)}">'


def _table(facts: dict[str, Any]) -> str:
    rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in facts.items())
    return f"<table>{rows}</table>"


def _history(outcomes: list[TrialOutcome], metric: Metric) -> str:
    done = sorted((o for o in outcomes if o.status == COMPLETE), key=lambda o: o.ended_at)
    fig = _figure((7, 3.5))
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
    return _png(fig, "optimisation history")


def _importance(importance: Importance, metric: Metric) -> str:
    caption = f"<p>Permutation importance on {html.escape(importance.source)}: the drop in {metric.name} when " \
              f"a feature's values are shuffled ({html.escape(importance.note)}).</p>"
    if not importance.rows:
        return caption
    shown = importance.rows[:MAX_IMPORTANCE_BARS][::-1]
    fig = _figure((7, 0.3 * len(shown) + 1))
    ax = fig.subplots()
    ax.barh([r["feature"] for r in shown], [r["importance"] for r in shown], xerr=[r["std"] for r in shown],
            color="C0")
    ax.set_xlabel(f"drop in {metric.name}")
    return caption + _png(fig, "feature importance")


def _diagnostics(diagnostics: Diagnostics, task: str, classes: list) -> str:
    caption = f"<p>On {html.escape(diagnostics.source)}.</p>"
    y, prediction = diagnostics.y, diagnostics.prediction
    if task == "regression":
        fig = _figure((10, 4))
        left, right = fig.subplots(1, 2)
        left.scatter(y, prediction, s=6, alpha=0.4)
        low, high = float(np.min(y)), float(np.max(y))
        left.plot([low, high], [low, high], color="C3")
        left.set_xlabel("actual")
        left.set_ylabel("predicted")
        right.scatter(prediction, y - prediction, s=6, alpha=0.4)
        right.axhline(0, color="C3")
        right.set_xlabel("predicted")
        right.set_ylabel("residual (actual - predicted)")
        return caption + _png(fig, "residuals")
    parts = [caption]
    if task == "binary":
        fpr, tpr, _ = roc_curve(y, prediction[:, 1])
        fig = _figure((4.5, 4.5))
        ax = fig.subplots()
        ax.plot(fpr, tpr)
        ax.plot([0, 1], [0, 1], color="grey", linestyle="--")
        ax.set_xlabel("false positive rate")
        ax.set_ylabel(f"true positive rate (class {classes[1]})")
        parts.append(_png(fig, "ROC curve"))
    matrix = confusion_matrix(y, np.argmax(prediction, axis=1), labels=np.arange(len(classes)))
    fig = _figure((4.5, 4.5))
    ax = fig.subplots()
    ax.imshow(matrix, cmap="Blues")
    for (i, j), count in np.ndenumerate(matrix):
        ax.text(j, i, str(count), ha="center", va="center", fontsize=8)
    labels = [str(c) for c in classes]
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    parts.append(_png(fig, "confusion matrix"))
    return "".join(parts)


def _fairness(fairness: dict | None) -> str:
    if not fairness:
        return "<p>No sensitive columns (set <code>data.sensitive</code>).</p>"
    parts = [f"<p>On {html.escape(fairness['source'])}, {fairness['rows']} rows.</p>"]
    if "mitigation" in fairness:
        parts.append(_mitigation(fairness["mitigation"]))
    for column, result in fairness["columns"].items():
        parts.append(f"<h3>{html.escape(column)}</h3>" + _groups(result))
        if "unmitigated" in fairness:
            parts.append("<h4>before mitigation</h4>" + _groups(fairness["unmitigated"]["columns"][column]))
    return "".join(parts)


def _groups(result: dict) -> str:
    """A sensitive column's groups (one row each) and its differences."""
    table = pd.DataFrame(result["groups"]).T.to_html(float_format=lambda v: f"{v:.4g}", na_rep="n/a")
    gaps = {k: "n/a" if v is None else f"{v:.4g}" for k, v in result.items() if k != "groups"}
    return table + (_table(gaps) if gaps else "")


def _mitigation(effect: dict) -> str:
    """Before and after ``fairness.mitigate``: the differences by column, accuracy and the metric."""
    rows = {f"{column}: {gap.replace('_', ' ')}": values
            for column, gaps in effect["columns"].items() for gap, values in gaps.items()}
    rows |= {name: effect[name] for name in effect if name not in ("constraint", "source", "columns")}
    table = pd.DataFrame(rows).T[["before", "after"]]
    return (f"<h3>Mitigation: {html.escape(effect['constraint'].replace('_', ' '))}</h3>"
            + table.to_html(float_format=lambda v: f"{v:.4g}", na_rep="n/a"))


def _retrain_table(retrained: dict) -> str:
    """The previous model and the retrained one, scored on the new data's holdout."""
    def shown(score):
        return "n/a" if score is None else f"{score:.5g}"

    rows = {"previous model": retrained["previous_model"], "retrained with": retrained["search"],
            f"previous model's holdout {retrained['metric']}": shown(retrained["previous_score"]),
            f"retrained model's holdout {retrained['metric']}": shown(retrained["new_score"]),
            "holdout rows": retrained["holdout_rows"], **({"note": retrained["note"]} if "note" in retrained else {})}
    return "<h3>Retrained: previous against new, on the new data's holdout</h3>" + _table(rows)


def write_report(path: Path, summary: dict, leaderboard: pd.DataFrame, outcomes: list[TrialOutcome],
                 metric: Metric, checks: Checks) -> Path:
    holdout = summary.get("holdout")
    facts = {
        "task": summary["task"],
        "metric": f"{metric.name} ({'higher' if metric.higher_is_better else 'lower'} is better)",
        "rows": summary["rows"], "best model": summary["best_model"], "CV score": f"{summary['cv_score']:.5g}",
        "holdout score": f"{holdout['score']:.5g}" if holdout else "no holdout",
        "final model": summary["final_model"], "ensemble": summary["ensemble"],
        "trials": ", ".join(f"{k} {v}" for k, v in summary["trials"].items()),
        "validation": summary["validation"]["reason"],
        "CPUs per trial": f"{summary['cpus_per_trial']}: {summary['plan']['cpus_per_trial_reason']}",
        "time": f"{summary['timings']['total_s']:.1f}s of {summary['timings']['budget_s']:g}s",
    }
    retrained = summary.get("retrain")
    warnings = "".join(f"<li>{html.escape(w)}</li>" for w in summary["warnings"]) or "<li>none</li>"
    board = leaderboard.drop(columns=["params", "trial"]).to_html(
        index=False, float_format=lambda v: f"{v:.5g}", na_rep="")
    bodies = {
        "summary": (_table(facts) + (_retrain_table(retrained) if retrained else "")
                    + f"<h3>Warnings</h3><ul>{warnings}</ul>"),
        "spec": f"<pre>{html.escape(yaml.safe_dump(summary['spec'], sort_keys=False))}</pre>",
        "profile": profile_html(summary["profile"]),
        "leaderboard": board,
        "history": _history(outcomes, metric),
        "importance": _importance(checks.importance, metric),
        "diagnostics": _diagnostics(checks.diagnostics, summary["task"], summary["classes"]),
        "fairness": _fairness(checks.fairness),
        "versions": _table(summary["versions"]),
    }
    nav = "".join(f'<a href="#{key}">{title}</a>' for key, title in SECTIONS.items())
    sections = "".join(f'<section id="{key}"><h2>{SECTIONS[key]}</h2>{bodies[key]}</section>' for key in SECTIONS)
    name = html.escape(summary["name"])
    page = (f'<!doctype html><html><head><meta charset="utf-8"><title>automl: {name}</title>'
            f"<style>{STYLE}</style></head><body><h1>automl run: {name}</h1><nav>{nav}</nav>{sections}</body></html>")
    atomic.write_text(path, page)
    return path
