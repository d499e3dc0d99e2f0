"""The ``automl`` command line.

Exit status: 0 success; 2 bad input (spec, data, arguments, artifact) with one
line on stderr; 1 an internal error (set AUTOML_DEBUG=1 for the traceback).
"""

from __future__ import annotations

import time

STARTED = time.monotonic()
"""When the process started its command, before the imports: a fit's time budget counts from here."""

import json
import os
import sys
import traceback
import warnings
from pathlib import Path

import pandas as pd
import typer
from rich.console import Console
from rich.table import Table

from automl.data import CHUNK_ROWS
from automl.errors import DataWarning, InputError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="A declarative AutoML engine for tabular data.")
stdout = Console()
if not stdout.is_terminal:
    stdout = Console(width=200)  # a pipe or file: do not cut the table to 80 columns


def print_leaderboard(board: pd.DataFrame, limit: int | None = 20) -> None:
    columns = ["rank", "model", "family", "train_score", "cv_score", "holdout_score", "cv_std", "fit_time_s",
               "predict_time_s", "predict_ms_per_row", "n_trials_family"]
    columns = [c for c in columns if c in board.columns and not board[c].isna().all()]
    table = Table(*columns)
    shown = board if limit is None else board.head(limit)
    for _, row in shown.iterrows():
        table.add_row(*(f"{row[c]:.5g}" if isinstance(row[c], float) else str(row[c]) for c in columns))
    stdout.print(table)
    if limit is not None and len(board) > limit:
        stdout.print(f"... {len(board) - limit} more rows")


@app.command()
def fit(spec: Path = typer.Argument(..., help="Task spec (YAML, TOML or JSON)."),
        time_s: float = typer.Option(None, "--time-s", help="Override budget.time_s."),
        output: Path = typer.Option(None, "--output", help="Override the output folder."),
        ray_address: str = typer.Option(None, "--ray-address", help="Join this Ray cluster."),
        set_: list[str] = typer.Option([], "--set", help="Override a spec key: key.path=value."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace a run already in the output folder."),
        resume: bool = typer.Option(False, "--resume", help="Go on with the interrupted run in the output folder."),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output.")) -> None:
    """Run the whole fit: search, ensemble, refit; write leaderboard, model, report and run.json."""
    if overwrite and resume:
        raise InputError("--overwrite and --resume contradict each other: choose one")
    from automl.spec import load_spec

    overrides = list(set_)
    if time_s is not None:
        overrides.append(f"budget.time_s={time_s}")
    if ray_address is not None:
        overrides.append(f"hardware.ray_address={ray_address}")
    if output is not None:
        overrides.append(f"output={output.resolve()}")
    checked = load_spec(spec, overrides)  # a bad spec is refused before the heavy imports below
    from automl.execution import backend_name, local

    if backend_name(checked.hardware) == "local" and not resume:
        local.start_early()  # its workers' imports run while this process imports the engine
    from automl.engine import run_fit
    from automl.progress import Progress

    result = run_fit(checked, overwrite=overwrite, progress=Progress(enabled=not quiet), started=command_start(),
                     resume=resume)
    print_leaderboard(result.leaderboard, limit=10)
    stdout.print(f"run folder: {result.output_dir}")
    if result.summary["interrupted"]:
        raise Interrupted(f"interrupted: the best model so far is in {result.output_dir}; "
                          "`automl fit --resume` goes on")


@app.command()
def predict(model_dir: Path = typer.Argument(..., help="A model folder or its run folder."),
            data: Path = typer.Argument(..., help="CSV or Parquet with the feature columns."),
            out: Path = typer.Option(None, "-o", "--output", help="Write the CSV here instead of stdout."),
            proba: bool = typer.Option(False, "--proba", help="Class probabilities instead of labels."),
            id_column: str = typer.Option(None, "--id", help="Pass this column through to the output, first."),
            chunk_rows: int = typer.Option(CHUNK_ROWS, "--chunk-rows", min=1,
                                           help="Rows read and predicted at a time (bounds memory)."),
            ray_address: str = typer.Option(None, "--ray-address",
                                            help="Predict the chunks on this Ray cluster's workers.")) -> None:
    """Predict new rows; one output row per input row, in input order. The file is read
    and predicted in chunks, so a file larger than memory goes through."""
    from automl.artifact import load_predictor
    from automl.batch_prediction import predict_file, predict_file_on_ray

    predictor = load_predictor(model_dir)
    if ray_address is not None:
        check_ray_address(ray_address)

    def write(handle) -> None:
        if ray_address is None:
            predict_file(predictor, data, handle, proba, id_column, chunk_rows)
        else:
            predict_file_on_ray(predictor, data, handle, ray_address, proba, id_column, chunk_rows)

    if out is None:
        write(sys.stdout)
        return
    from automl import atomic

    with atomic.atomic_path(out) as staged, open(staged, "w", newline="") as handle:
        write(handle)


def check_ray_address(address: str) -> None:
    """A cluster address as the spec's ``hardware.ray_address`` takes it, or a one-line error."""
    from automl.spec import RAY_ADDRESS

    if not RAY_ADDRESS.match(address.strip()):
        raise InputError(f"--ray-address {address!r}: expected 'auto', 'HOST:PORT' or 'ray://HOST:PORT'")


@app.command()
def evaluate(model_dir: Path = typer.Argument(..., help="A model folder or its run folder."),
             data: Path = typer.Argument(..., help="Labelled CSV or Parquet.")) -> None:
    """Score labelled data with the run's metric and every other metric of its task (JSON)."""
    from automl.artifact import load_predictor
    from automl.data import load_table
    from automl.evaluate import evaluate as evaluate_model

    predictor = load_predictor(model_dir)
    print(json.dumps(evaluate_model(predictor, load_table(data), str(data)), indent=2))


@app.command()
def profile(data: Path = typer.Argument(..., help="CSV or Parquet data."),
            target: str = typer.Option(..., "--target", help="The column to predict."),
            html_out: Path = typer.Option(None, "--html", help="Also write the profile as an HTML page here."),
            as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables.")) -> None:
    """The data quality report: kinds, duplicates, missing values, constant and id-like
    columns, class balance, leakage suspects, and warnings."""
    import html

    from automl.data import infer_task, load_table
    from automl.profile import profile_data, profile_html

    frame = load_table(data)
    if target not in frame.columns:
        raise InputError(f"target column '{target}' is not in {data}")
    found = profile_data(frame, target, infer_task(frame[target])).to_dict()
    if html_out is not None:
        html_out.write_text(f'<!doctype html><html><head><meta charset="utf-8"><title>profile: '
                            f"{html.escape(data.name)}</title></head><body><h1>Data profile: "
                            f"{html.escape(data.name)}</h1>{profile_html(found)}</body></html>")
    if as_json:
        print(json.dumps(found, indent=2))
        return
    table = Table("column", "kind", "missing", "distinct", title=f"{data.name}: {found['rows']} rows, "
                  f"{found['columns']} columns, task {found['task']}")
    for name, column in found["column_profiles"].items():
        table.add_row(name, column["kind"], f"{column['missing_share']:.1%}", str(column["unique"]))
    stdout.print(table)
    for warning in found["warnings"] or ["no warnings"]:
        stdout.print(f"- {warning}", highlight=False)


DRIFT_EXIT = 3
"""``automl drift --fail-on-drift`` exits with this when the verdict is "drift"."""
INTERRUPTED_EXIT = 130
"""Ctrl-C: the shell's status for a process ended by SIGINT."""


@app.command()
def drift(model_dir: Path = typer.Argument(..., help="A model folder or its run folder."),
          data: Path = typer.Argument(..., help="New CSV or Parquet data, or an automl serve --log folder."),
          as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
          fail_on_drift: bool = typer.Option(False, "--fail-on-drift",
                                             help=f"Exit {DRIFT_EXIT} when the verdict is drift.")) -> None:
    """Per-column drift of new data against the training data (PSI, and KS for numbers)."""
    from automl.data import load_table
    from automl.drift import compare, load_reference
    from automl.request_log import read_log

    result = compare(load_reference(model_dir), read_log(data) if data.is_dir() else load_table(data))
    if as_json:
        print(json.dumps(result, indent=2))
    else:
        table = Table("column", "kind", "psi", "ks", "missing train", "missing new", "level")
        for row in result["columns"]:
            ks = "" if row["ks"] is None else f"{row['ks']:.3f}"
            table.add_row(row["column"] + (" (target)" if row["role"] == "target" else ""), row["kind"],
                          f"{row['psi']:.3f}", ks, f"{row['missing_share_train']:.1%}",
                          f"{row['missing_share_new']:.1%}", row["level"])
        stdout.print(table)
        stdout.print(f"verdict: {result['verdict']}", highlight=False)
    if fail_on_drift and result["verdict"] == "drift":
        raise DriftFound()


class Interrupted(Exception):
    """A fit stopped by Ctrl-C that still wrote its outputs: exit 130 with its message."""


class DriftFound(Exception):
    """Raised by ``automl drift --fail-on-drift`` to exit with DRIFT_EXIT."""


@app.command()
def leaderboard(run_dir: Path = typer.Argument(..., help="A run folder (or its model folder).")) -> None:
    """Print a run's leaderboard."""
    path = next((p for p in (run_dir / "leaderboard.csv", run_dir.parent / "leaderboard.csv") if p.is_file()), None)
    if path is None:
        raise InputError(f"no leaderboard.csv in {run_dir}")
    print_leaderboard(pd.read_csv(path), limit=None)


@app.command()
def schema() -> None:
    """Print the JSON Schema of the task spec."""
    from automl.spec import json_schema

    print(json.dumps(json_schema(), indent=2))


@app.command()
def init(data: Path = typer.Argument(..., help="CSV or Parquet training data."),
         target: str = typer.Option(..., "--target", help="The column to predict.")) -> None:
    """Write a commented starter spec for a dataset (YAML on stdout)."""
    from automl.data import infer_task, load_table
    from automl.spec import starter_spec

    frame = load_table(data)
    if target not in frame.columns:
        raise InputError(f"target column '{target}' is not in {data}")
    print(starter_spec(data, target, infer_task(frame[target])), end="")


@app.command()
def retrain(model_dir: Path = typer.Argument(..., help="A model folder or its run folder."),
            data: Path = typer.Argument(..., help="New labelled CSV or Parquet data."),
            output: Path = typer.Option(..., "-o", "--output", help="The new run's folder."),
            search_s: float = typer.Option(None, "--search-s",
                                           help="Search this many seconds, the previous configurations first, "
                                                "instead of refitting the previous members only."),
            only_if_drift: bool = typer.Option(False, "--only-if-drift",
                                               help="Retrain only if automl drift finds drift in DATA."),
            overwrite: bool = typer.Option(False, "--overwrite", help="Replace a run already in the output folder."),
            quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output.")) -> None:
    """Refit the model's pipeline on new labelled data (the same families, configurations and
    ensemble weights), and compare it with the previous model on a holdout of the new data."""
    from automl.progress import Progress
    from automl.retrain import retrain as retrain_model

    result = retrain_model(model_dir, data, output.resolve(), search_s, only_if_drift, overwrite,
                           Progress(enabled=not quiet), started=command_start())
    if isinstance(result, str):
        stdout.print(f"{result} in {data}: not retrained", highlight=False)
        return
    print_leaderboard(result.leaderboard, limit=10)
    compared = result.summary.get("retrain")
    if compared:
        previous = "n/a" if compared["previous_score"] is None else f"{compared['previous_score']:.5g}"
        stdout.print(f"holdout {compared['metric']} ({compared['holdout_rows']} new rows): previous model "
                     f"{previous}, retrained {compared['new_score']:.5g}", highlight=False)
    stdout.print(f"run folder: {result.output_dir}")


@app.command()
def serve(model_dir: Path = typer.Argument(..., help="A model folder or its run folder."),
          host: str = typer.Option("127.0.0.1", "--host", help="Listen on this address (0.0.0.0: every one)."),
          port: int = typer.Option(8000, "--port", min=1, max=65535),
          replicas: int = typer.Option(1, "--replicas", min=1, help="Copies of the model answering requests."),
          address: str = typer.Option(None, "--ray-address", "--address",
                                      help="Serve on this Ray cluster instead of locally."),
          max_body_mb: float = typer.Option(32, "--max-body-mb", min=0.001,
                                            help="Refuse request bodies larger than this (413)."),
          log: Path = typer.Option(None, "--log", help="Write the rows scored, and the answers, to Parquet "
                                                       "files in this folder (automl drift reads it)."),
          log_max_mb: float = typer.Option(1024, "--log-max-mb", min=1,
                                           help="The request log's size cap: the oldest files go past it.")) -> None:
    """Serve predictions over HTTP with Ray Serve: POST /predict (JSON records or CSV),
    GET /health, GET /schema, GET /metrics (Prometheus). Runs until Ctrl-C."""
    from automl.serving import serve as serve_model

    if address is not None:
        check_ray_address(address)
    serve_model(model_dir, host, port, replicas, address, int(max_body_mb * 2**20), log, int(log_max_mb * 2**20))


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Our data warnings as one ``warning:`` line each; libraries' warnings as Python shows them."""
    if issubclass(category, DataWarning):
        print(f"warning: {message}", file=sys.stderr)
    else:
        _python_show_warning(message, category, filename, lineno, file, line)


_python_show_warning = warnings.showwarning


def command_names() -> list[str]:
    return [command.name or command.callback.__name__ for command in app.registered_commands]


_command_starts: list[float] = []
"""When each ``run_command`` running in this process began, the innermost last."""


def command_start() -> float:
    """When the running command started (``run_command``'s ``started``)."""
    return _command_starts[-1] if _command_starts else STARTED


def run_command(argv: list[str] | None = None, started: float | None = None) -> int:
    """Run one command; map errors to exit statuses (2 bad input, 1 internal). Its time
    counts from ``started`` (the console script: the process's start, imports included),
    or from this call (a command run in a process that does other work, as tests do)."""
    _command_starts.append(started if started is not None else time.monotonic())
    warnings.showwarning = _show_warning
    try:
        app(args=argv, standalone_mode=False)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except DriftFound:
        return DRIFT_EXIT
    except Interrupted as exc:
        print(str(exc), file=sys.stderr)
        return INTERRUPTED_EXIT
    except typer.Abort:
        print("aborted", file=sys.stderr)
        return INTERRUPTED_EXIT
    except typer.TyperException as exc:  # usage errors: unknown command or option, missing argument
        exc.show()
        if "No such command" in exc.format_message():
            print(f"commands: {', '.join(command_names())}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return INTERRUPTED_EXIT
    except Exception as exc:
        if os.environ.get("AUTOML_DEBUG"):
            traceback.print_exc()
        print(f"internal error: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
              file=sys.stderr)
        return 1
    finally:
        _command_starts.pop()  # the command ended: its start no longer times anything
    return 0


def main(argv: list[str] | None = None) -> None:
    """The console script. Every file a command writes is closed by the time it
    returns, so the process ends at once: the interpreter's own teardown after a
    fit (Ray, torch and LightGBM loaded) takes 2 s that the time budget would
    otherwise not cover (measured on 2 cores)."""
    from automl.execution import local

    status = run_command(argv, started=STARTED)
    local.stop_spare()  # no later fit here to keep it for; os._exit skips the atexit that would stop it
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
