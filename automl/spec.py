"""The task spec: pydantic models for every section of the spec (the README's "A spec").

A spec is loaded from YAML, TOML or JSON; relative paths are resolved against
the spec file's folder; ``--set key.path=value`` overrides are applied before
validation, so an override is checked exactly like the file itself.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from automl.errors import InputError

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

IN_MEMORY = "<in-memory DataFrame>"
"""``data.train`` of a spec whose training data is passed to ``fit`` directly."""

Task = Literal["auto", "binary", "multiclass", "regression"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataSpec(_Section):
    train: str = Field(description="CSV or Parquet file with the training rows.")
    target: str = Field(min_length=1, description="Column to predict.")
    test: str | None = Field(None, description="Optional holdout file, scored at the end.")
    drop: list[str] = Field(default_factory=list, description="Columns to ignore.")
    groups: str | None = Field(None, description="Column of group ids -> group k-fold.")
    time: str | None = Field(None, description="Column of times -> time-ordered folds.")
    sensitive: list[str] = Field(default_factory=list, description="Columns for fairness checks.")
    deduplicate: bool = Field(False, description="Drop exact duplicate training rows before the search.")
    positive_class: str | int | float | bool | None = Field(
        None, description="Binary tasks: the class that f1 scores as positive (default: the rarer class).")


class BudgetSpec(_Section):
    time_s: float = Field(120.0, gt=0, description="Wall-clock seconds for the whole fit.")
    max_trials: int | None = Field(None, ge=1, description="Stop after this many trials.")
    memory_gb: float | None = Field(
        None, gt=0, description="Memory the run may use; null: what the machine has available when it starts. "
                                "A trial estimated to need more than its share runs on a subsample, or is skipped.")


class ValidationSpec(_Section):
    method: Literal["auto", "kfold", "split"] = Field(
        "auto", description="How candidates are validated. kfold: k-fold cross-validation; split: one "
                            "train/validation split (as FLAML above 100k rows); auto: k-fold while the budget "
                            "pays for it, then 3 folds, then a split.")
    folds: int = Field(5, ge=2, le=20, description="Cross-validation folds (with auto: at most this many).")
    split_size: float = Field(0.1, gt=0, lt=1, description="Share of the rows validated on with a split.")
    test_size: float | None = Field(
        None, gt=0, lt=1, description="Fraction carved off as a holdout when data.test is absent."
    )


class ModelsSpec(_Section):
    include: list[str] | None = Field(None, description="Families to try; null: all that fit.")
    exclude: list[str] = Field(default_factory=list, description="Families never to try.")

    @field_validator("include", "exclude")
    @classmethod
    def _known_families(cls, names: list[str] | None, info: ValidationInfo) -> list[str] | None:
        from automl.models import family_names

        if info.field_name == "include" and names == []:
            raise ValueError("is empty; list at least one family, or null for all")
        for name in names or []:
            if name not in family_names():
                raise ValueError(f"unknown model family {name!r}; known: {', '.join(family_names())}")
        return names


class EnsembleSpec(_Section):
    enabled: bool = True
    size: int = Field(25, ge=1, description="Greedy ensemble selection rounds.")


class PredictSpec(_Section):
    refit_full: bool = Field(
        False, description="Refit every member of the final model on all rows, one model each instead of its fold "
                            "models (AutoGluon's refit_full): faster predictions and a smaller model folder, for a "
                            "little accuracy. Without it, members are refit only on small data, or where "
                            "max_ms_per_row asks for it.")
    max_ms_per_row: float | Literal["auto"] | None = Field(
        "auto", description="An inference budget: milliseconds per row the final model may take to predict a batch "
                            "on one core, as the trials measured it. The ensemble's members, and bagged fold models "
                            "against a refit, are chosen within it for the least loss of CV score. auto: on "
                            "20,000 training rows or more, the cheapest model (from the best single model refit, "
                            "doubling the budget) whose CV score is within one standard error of the model chosen "
                            "with no limit; below, no limit. null: no limit.")

    @field_validator("max_ms_per_row")
    @classmethod
    def _positive(cls, limit: float | str | None) -> float | str | None:
        if isinstance(limit, float) and not limit > 0:
            raise ValueError("must be a positive number of milliseconds, 'auto' or null")
        return limit


class FairnessSpec(_Section):
    mitigate: Literal["none", "demographic_parity", "equalized_odds"] = Field(
        "none", description="Post-process the final model (fairlearn's ThresholdOptimizer, fitted on out-of-fold "
                            "predictions) for equal selection rates (demographic_parity) or equal true and false "
                            "positive rates (equalized_odds) across the groups of data.sensitive; binary tasks.")


RAY_ADDRESS = re.compile(r"^(auto|(ray://)?[A-Za-z0-9.\-\[\]:]+:\d{1,5})$")


class HardwareSpec(_Section):
    backend: Literal["auto", "ray", "local"] = Field(
        "auto", description="Where trials run. auto: Ray for a cluster or GPUs, "
                            "otherwise worker processes on this machine (local); ray; local (CPUs only).")
    ray_address: str | None = Field(
        None, description="null: an embedded local Ray; 'auto', 'HOST:PORT' or 'ray://HOST:PORT': join that cluster.")
    cpus: int | None = Field(None, ge=1, description="CPUs the run may use; null: all offered.")
    gpus: int | Literal["auto"] = Field(
        "auto", description="GPUs the run may use; auto: this machine's (through an embedded Ray), or on a "
                            "cluster the cluster's; 0: none.")
    cpus_per_trial: int | Literal["auto"] = Field(
        "auto", description="CPUs (and model threads) per trial; auto: one, or all the run's when only a few "
                            "trials fit in the budget.")
    gpus_per_trial: float | Literal["auto"] = Field(
        "auto", description="The share of a GPU a trial of a GPU family (the MLP) takes; auto: chosen from the "
                            "data's size and the GPU's memory, fractional where several trials fit on one GPU.")

    @field_validator("gpus", "gpus_per_trial")
    @classmethod
    def _not_negative(cls, amount: float | str) -> float | str:
        if amount != "auto" and amount < 0:
            raise ValueError("must be 'auto' or at least 0")
        return amount

    @field_validator("cpus_per_trial")
    @classmethod
    def _at_least_one(cls, cpus: int | str) -> int | str:
        if cpus != "auto" and cpus < 1:
            raise ValueError("must be 'auto' or at least 1")
        return cpus

    @field_validator("ray_address")
    @classmethod
    def _address_form(cls, address: str | None) -> str | None:
        if address is not None and not RAY_ADDRESS.match(address.strip()):
            raise ValueError("expected 'auto', 'HOST:PORT' or 'ray://HOST:PORT'")
        return address.strip() if address else None


class Spec(_Section):
    """A whole task: what to learn, how it is judged, and what it may spend."""

    name: str = "automl"
    data: DataSpec
    task: Task = "auto"
    metric: str = Field("auto", description="auto: roc_auc, log_loss or rmse by task.")
    budget: BudgetSpec = Field(default_factory=BudgetSpec)
    validation: ValidationSpec = Field(default_factory=ValidationSpec)
    models: ModelsSpec = Field(default_factory=ModelsSpec)
    ensemble: EnsembleSpec = Field(default_factory=EnsembleSpec)
    predict: PredictSpec = Field(default_factory=PredictSpec)
    fairness: FairnessSpec = Field(default_factory=FairnessSpec)
    hardware: HardwareSpec = Field(default_factory=HardwareSpec)
    output: str | None = Field(None, description="Run folder; null: runs/<name>.")
    seed: int = 0

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, name: str) -> str:
        from automl.metrics import metric_names

        if name != "auto" and name not in metric_names():
            raise ValueError(f"unknown metric {name!r}; known: auto, {', '.join(metric_names())}")
        return name

    @model_validator(mode="after")
    def _consistent(self) -> Spec:
        if self.fairness.mitigate != "none" and not self.data.sensitive:
            raise ValueError("fairness.mitigate needs data.sensitive: the columns whose groups it evens out")
        if self.fairness.mitigate != "none" and self.task in ("multiclass", "regression"):
            raise ValueError(f"fairness.mitigate applies to binary tasks; this one is {self.task}")
        per_trial = self.hardware.cpus_per_trial
        if self.hardware.cpus is not None and per_trial != "auto" and per_trial > self.hardware.cpus:
            raise ValueError("hardware.cpus_per_trial is larger than hardware.cpus")
        if self.hardware.backend == "local" and (self.hardware.ray_address or self.hardware.gpus not in (0, "auto")):
            raise ValueError("hardware.backend local runs on this machine's CPUs only: "
                             "it cannot take hardware.ray_address or hardware.gpus")
        return self

    @property
    def output_dir(self) -> Path:
        return Path(self.output) if self.output else Path("runs") / self.name


def _format_error(error: ValidationError) -> str:
    """One line naming the first offending key and what was expected (an unknown key
    first: a misspelt key also makes the key it was meant to be look missing)."""
    first = min(error.errors(), key=lambda e: e["type"] != "extra_forbidden")
    key = ".".join(str(part) for part in first["loc"]) or "spec"
    kind = first["type"]
    if kind == "extra_forbidden":
        return f"spec: unknown key '{key}'"
    if kind == "missing":
        return f"spec: '{key}' is required"
    message = first["msg"].removeprefix("Value error, ")
    shown = first.get("input")
    got = f" (got {shown!r})" if shown is not None and not isinstance(shown, dict) else ""
    return f"spec: '{key}': {message}{got}"


def read_spec_file(path: str | Path) -> dict[str, Any]:
    """Parse a YAML, TOML or JSON spec file into a plain dict."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"spec file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"spec file {path} is not UTF-8 text (byte {exc.object[exc.start]:#x} at "
                         f"position {exc.start})") from None
    except OSError as exc:
        raise InputError(f"spec file {path} cannot be read: {exc.strerror}") from None
    if not text.strip():
        raise InputError(f"spec file {path} is empty; it needs at least data.train and data.target")
    try:
        if path.suffix == ".toml":
            raw = tomllib.loads(text)
        elif path.suffix == ".json":
            raw = json.loads(text)
        else:
            raw = yaml.safe_load(text)
    except (yaml.YAMLError, tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        reason = str(exc).splitlines()[0]
        raise InputError(f"spec file {path} cannot be parsed: {reason}") from None
    if not isinstance(raw, dict):
        raise InputError(f"spec file {path} must hold a mapping of keys, not {type(raw).__name__}")
    return raw


def apply_override(raw: dict[str, Any], assignment: str) -> None:
    """Apply one ``key.path=value`` override in place; the value is parsed as YAML."""
    key, sep, value = assignment.partition("=")
    if not sep or not key.strip():
        raise InputError(f"--set expects key.path=value, got {assignment!r}")
    *parents, leaf = key.strip().split(".")
    node = raw
    for part in parents:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise InputError(f"--set {key}: '{part}' is not a section")
        node = child
    try:
        node[leaf] = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError:
        node[leaf] = value


def _resolve_paths(raw: dict[str, Any], base: Path) -> None:
    data = raw.get("data")
    if isinstance(data, dict):
        for key in ("train", "test"):
            value = data.get(key)
            if isinstance(value, str) and value != IN_MEMORY and not Path(value).is_absolute():
                data[key] = str((base / value).resolve())
    output = raw.get("output")
    if isinstance(output, str) and not Path(output).is_absolute():
        raw["output"] = str((base / output).resolve())


def build_spec(raw: dict[str, Any], overrides: list[str] = ()) -> Spec:
    """Validate a raw mapping (after overrides) into a Spec, or raise InputError."""
    for assignment in overrides:
        apply_override(raw, assignment)
    try:
        return Spec.model_validate(raw)
    except ValidationError as exc:
        raise InputError(_format_error(exc)) from None


def load_raw_spec(path: str | Path) -> dict[str, Any]:
    """A spec file as a mapping, named after the file unless it names itself,
    with its paths made absolute against the file's folder; not yet validated."""
    path = Path(path)
    raw = read_spec_file(path)
    raw.setdefault("name", path.stem)
    _resolve_paths(raw, path.parent.resolve())
    return raw


def load_spec(path: str | Path, overrides: list[str] = ()) -> Spec:
    """Load and validate a spec file."""
    return build_spec(load_raw_spec(path), overrides)


def json_schema() -> dict[str, Any]:
    """The JSON Schema of the spec, for editors."""
    return Spec.model_json_schema()


def starter_spec(data: Path, target: str, task: str) -> str:
    """A commented spec for ``data``: every section, with the defaults spelled out."""
    from automl.metrics import DEFAULT_METRIC, metric_names
    from automl.models import family_names

    def scalar(value: Any) -> str:
        return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()

    return f"""# automl task spec for {data.name}: run it with `automl fit THIS_FILE`.
# Paths are relative to this file. Every key below is optional except data.train and data.target.
name: {scalar(data.stem)}
data:
  train: {scalar(str(data))}
  target: {scalar(target)}
  # test: holdout.csv             # rows scored at the end, never searched on
  drop: []                        # columns to ignore (constant and id-like ones are dropped anyway)
  # groups: column                # rows sharing a value stay in one fold
  # time: column                  # time-ordered folds
  sensitive: []                   # columns to report fairness by, e.g. [sex, race]
  deduplicate: false              # drop exact duplicate rows
  # positive_class: yes           # binary: the class f1 scores as positive (default: the rarer)
task: {task}                    # auto | binary | multiclass | regression
metric: {DEFAULT_METRIC[task]}                 # one of: {", ".join(metric_names())}
budget:
  time_s: 120                     # wall clock for the whole fit, ensembling included
  max_trials: null
  memory_gb: null                 # null: the memory available; larger trials run on a subsample
validation:
  method: auto                    # auto (k folds while the budget pays, then 3, then a split) | kfold | split
  folds: 5
  split_size: 0.1                 # share of the rows validated on, with a split
  test_size: null                 # e.g. 0.2 carves a stratified holdout when data.test is absent
models:
  include: null                   # null: every family that suits the data; known: {", ".join(family_names())}
  exclude: []
ensemble:
  enabled: true
  size: 25                        # greedy selection rounds
predict:
  refit_full: false               # true: each member refit on all rows (faster, smaller model; bagged otherwise)
  max_ms_per_row: auto            # inference budget, ms a row (one core); auto: as cheap as accuracy allows
fairness:
  mitigate: none                  # demographic_parity | equalized_odds: even out data.sensitive's groups
hardware:
  backend: auto                   # auto: Ray for a cluster or GPUs; else local processes
  ray_address: null               # null: Ray on this machine; "auto" or "HOST:PORT": a cluster
  cpus: null                      # null: all there are
  gpus: auto                      # auto: this machine's (Ray then runs the trials), or a cluster's; 0: none
  cpus_per_trial: auto            # auto: 1, or all the run's CPUs when only a few trials fit in the budget
  gpus_per_trial: auto            # auto: a share of a GPU per MLP trial, by data size and GPU memory
output: null                      # null: runs/<name>
seed: 0
"""
