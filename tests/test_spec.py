"""The task spec: defaults, file formats, path resolution, overrides and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from automl.errors import InputError
from automl.models import family_names
from automl.spec import (
    IN_MEMORY,
    apply_override,
    build_spec,
    json_schema,
    load_raw_spec,
    load_spec,
    read_spec_file,
)


def minimal() -> dict:
    return {"data": {"train": "/abs/train.csv", "target": "y"}}


def input_error(raw: dict, overrides: list[str] = ()) -> str:
    """The message of the InputError that ``build_spec`` raises, checked to be one line."""
    with pytest.raises(InputError) as info:
        build_spec(raw, list(overrides))
    message = str(info.value)
    assert "\n" not in message and message.strip() == message and message
    return message


# --- defaults -------------------------------------------------------------------------------

def test_defaults_for_everything_but_train_and_target():
    spec = build_spec(minimal())
    assert spec.data.train == "/abs/train.csv"
    assert spec.data.target == "y"
    assert spec.data.test is None
    assert spec.data.drop == [] and spec.data.sensitive == []
    assert spec.data.groups is None and spec.data.time is None
    assert spec.name == "automl"
    assert spec.task == "auto"
    assert spec.metric == "auto"
    assert spec.budget.time_s == 120 and spec.budget.max_trials is None
    assert spec.validation.folds == 5 and spec.validation.test_size is None
    assert spec.validation.method == "auto" and spec.validation.split_size == 0.1
    assert spec.models.include is None and spec.models.exclude == []
    assert spec.ensemble.enabled is True and spec.ensemble.size == 25
    hw = spec.hardware
    assert (hw.ray_address, hw.cpus, hw.gpus, hw.cpus_per_trial, hw.gpus_per_trial) == (
        None, None, "auto", "auto", "auto")
    assert spec.output is None
    assert spec.output_dir == Path("runs") / "automl"
    assert spec.seed == 0


def test_default_lists_are_not_shared_between_specs():
    first = build_spec(minimal())
    first.data.drop.append("x")
    assert build_spec(minimal()).data.drop == []


@pytest.mark.parametrize("raw, key", [
    ({}, "data"),
    ({"data": {"target": "y"}}, "data.train"),
    ({"data": {"train": "t.csv"}}, "data.target"),
])
def test_train_and_target_are_required(raw, key):
    message = input_error(raw)
    assert f"'{key}'" in message and "required" in message


# --- file formats and paths ---------------------------------------------------------------------

SPEC = {
    "name": "demo",
    "data": {"train": "data/train.csv", "test": "data/test.csv", "target": "label",
             "drop": ["a", "b"]},
    "task": "binary",
    "metric": "log_loss",
    "budget": {"time_s": 30, "max_trials": 7},
    "validation": {"folds": 3},
    "models": {"include": ["lightgbm", "linear"]},
    "ensemble": {"enabled": False, "size": 10},
    "hardware": {"cpus": 4, "cpus_per_trial": 2},
    "output": "out/run1",
    "seed": 42,
}

TOML_SPEC = """
name = "demo"
task = "binary"
metric = "log_loss"
output = "out/run1"
seed = 42

[data]
train = "data/train.csv"
test = "data/test.csv"
target = "label"
drop = ["a", "b"]

[budget]
time_s = 30
max_trials = 7

[validation]
folds = 3

[models]
include = ["lightgbm", "linear"]

[ensemble]
enabled = false
size = 10

[hardware]
cpus = 4
cpus_per_trial = 2
"""


def write(path: Path, fmt: str) -> Path:
    if fmt == "yaml":
        path.write_text(yaml.safe_dump(SPEC))
    elif fmt == "json":
        path.write_text(json.dumps(SPEC))
    else:
        path.write_text(TOML_SPEC)
    return path


@pytest.mark.parametrize("suffix, fmt", [
    (".yaml", "yaml"), (".yml", "yaml"), (".toml", "toml"), (".json", "json")])
def test_loads_every_format_alike(tmp_path, suffix, fmt):
    folder = tmp_path / "specs"
    folder.mkdir()
    spec = load_spec(write(folder / f"task{suffix}", fmt))
    assert spec.name == "demo"
    assert spec.task == "binary" and spec.metric == "log_loss"
    assert spec.data.target == "label" and spec.data.drop == ["a", "b"]
    assert spec.budget.time_s == 30 and spec.budget.max_trials == 7
    assert spec.validation.folds == 3
    assert spec.models.include == ["lightgbm", "linear"]
    assert spec.ensemble.enabled is False and spec.ensemble.size == 10
    assert spec.hardware.cpus == 4 and spec.hardware.cpus_per_trial == 2
    assert spec.seed == 42
    # paths are relative to the spec file's folder, not the working directory
    base = folder.resolve()
    assert Path(spec.data.train) == base / "data" / "train.csv"
    assert Path(spec.data.test) == base / "data" / "test.csv"
    assert Path(spec.output) == base / "out" / "run1"
    assert spec.output_dir == base / "out" / "run1"


def test_relative_paths_do_not_depend_on_working_directory(tmp_path, monkeypatch):
    folder = tmp_path / "a" / "b"
    folder.mkdir(parents=True)
    path = write(folder / "s.yaml", "yaml")
    monkeypatch.chdir(tmp_path)
    first = load_spec(path)
    monkeypatch.chdir(folder)
    second = load_spec(Path("s.yaml"))
    assert first.data.train == second.data.train == str((folder / "data/train.csv").resolve())


def test_absolute_paths_and_in_memory_marker_are_kept(tmp_path):
    absolute = str(tmp_path / "elsewhere" / "train.csv")
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"data": {"train": absolute, "target": "y",
                                             "test": IN_MEMORY}}))
    spec = load_spec(path)
    assert spec.data.train == absolute
    assert spec.data.test == IN_MEMORY


def test_name_defaults_to_file_stem(tmp_path):
    path = tmp_path / "credit-risk.yaml"
    path.write_text(yaml.safe_dump({"data": {"train": "t.csv", "target": "y"}}))
    spec = load_spec(path)
    assert spec.name == "credit-risk"
    assert spec.output is None and spec.output_dir == Path("runs") / "credit-risk"


def test_name_in_file_wins_over_stem(tmp_path):
    path = tmp_path / "whatever.json"
    path.write_text(json.dumps({"name": "mine", "data": {"train": "t.csv", "target": "y"}}))
    assert load_spec(path).name == "mine"


def test_load_raw_spec_is_not_validated(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"data": {"train": "t.csv", "target": "y"}, "bogus": 1}))
    raw = load_raw_spec(path)
    assert raw["bogus"] == 1
    assert raw["data"]["train"] == str((tmp_path / "t.csv").resolve())
    with pytest.raises(InputError, match="bogus"):
        build_spec(raw)


def test_missing_spec_file(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_spec(tmp_path / "nope.yaml")


@pytest.mark.parametrize("name, text", [
    ("bad.yaml", "data: [unclosed\n  train: x"),
    ("bad.json", '{"data": {"train": "x",}'),
    ("bad.toml", "[data\ntrain = 'x'"),
])
def test_unparseable_spec_file(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(InputError) as info:
        read_spec_file(path)
    assert "\n" not in str(info.value)
    assert name in str(info.value)


@pytest.mark.parametrize("text", ["- a\n- b\n", "just a string\n"])
def test_spec_file_must_hold_a_mapping(tmp_path, text):
    path = tmp_path / "s.yaml"
    path.write_text(text)
    with pytest.raises(InputError, match="mapping"):
        read_spec_file(path)


# --- overrides ------------------------------------------------------------------------------------

def test_override_top_level_and_nested():
    spec = build_spec(minimal(), ["budget.time_s=5", "seed=3", "validation.folds=2",
                                  "hardware.gpus_per_trial=0.5"])
    assert spec.budget.time_s == 5
    assert spec.seed == 3
    assert spec.validation.folds == 2
    assert spec.hardware.gpus_per_trial == 0.5


def test_override_values_are_parsed_as_yaml():
    raw = {}
    apply_override(raw, "models.include=[lightgbm, knn]")
    apply_override(raw, "ensemble.enabled=false")
    apply_override(raw, "budget.max_trials=null")
    apply_override(raw, "budget.time_s=2.5")
    apply_override(raw, "name=my run")
    apply_override(raw, "hardware.ray_address=")
    assert raw == {
        "models": {"include": ["lightgbm", "knn"]},
        "ensemble": {"enabled": False},
        "budget": {"max_trials": None, "time_s": 2.5},
        "name": "my run",
        "hardware": {"ray_address": None},
    }


def test_override_creates_missing_sections_and_keeps_siblings():
    raw = minimal()
    raw["budget"] = {"time_s": 100, "max_trials": 3}
    apply_override(raw, "budget.time_s=7")
    apply_override(raw, "data.drop=[x]")
    assert raw["budget"] == {"time_s": 7, "max_trials": 3}
    assert raw["data"] == {"train": "/abs/train.csv", "target": "y", "drop": ["x"]}


def test_override_value_may_contain_equals_sign():
    raw = {}
    apply_override(raw, "hardware.ray_address=ray://head:10001?a=b")
    assert raw["hardware"]["ray_address"] == "ray://head:10001?a=b"


def test_override_wins_over_file(tmp_path):
    path = write(tmp_path / "s.yaml", "yaml")
    spec = load_spec(path, ["budget.time_s=5", "metric=accuracy"])
    assert spec.budget.time_s == 5
    assert spec.metric == "accuracy"
    assert spec.budget.max_trials == 7  # untouched sibling


def test_override_is_validated_like_the_file():
    message = input_error(minimal(), ["validation.folds=1"])
    assert "'validation.folds'" in message
    message = input_error(minimal(), ["budget.nope=1"])
    assert "budget.nope" in message


@pytest.mark.parametrize("assignment", ["budget.time_s", "=5", "  =5", ""])
def test_malformed_override(assignment):
    with pytest.raises(InputError, match="key.path=value"):
        apply_override({}, assignment)


def test_override_through_a_scalar_is_rejected():
    raw = {"seed": 1}
    with pytest.raises(InputError, match="seed"):
        apply_override(raw, "seed.x=2")


# --- errors: one line that names the key -----------------------------------------------------------

def with_(**sections) -> dict:
    raw = minimal()
    for key, value in sections.items():
        if isinstance(value, dict):
            raw.setdefault(key, {}).update(value)
        else:
            raw[key] = value
    return raw


@pytest.mark.parametrize("raw, key, extra", [
    # unknown keys, top-level and nested
    (with_(bogus=1), "bogus", "unknown key"),
    (with_(budget={"time_limit": 5}), "budget.time_limit", "unknown key"),
    (with_(data={"traget": "y"}), "data.traget", "unknown key"),
    # wrong types
    (with_(budget={"time_s": "fast"}), "budget.time_s", "number"),
    (with_(validation={"folds": "five"}), "validation.folds", "integer"),
    (with_(seed=1.5), "seed", "integer"),
    (with_(ensemble={"enabled": "maybe"}), "ensemble.enabled", "bool"),
    (with_(data={"drop": 5}), "data.drop", "list"),
    (with_(budget=5), "budget", "dictionary"),
    (with_(task="classification"), "task", "binary"),
    # impossible values
    (with_(validation={"folds": 1}), "validation.folds", "2"),
    (with_(validation={"folds": 100}), "validation.folds", "20"),
    (with_(budget={"time_s": -1}), "budget.time_s", "greater than 0"),
    (with_(budget={"time_s": 0}), "budget.time_s", "greater than 0"),
    (with_(budget={"max_trials": 0}), "budget.max_trials", "1"),
    (with_(validation={"test_size": 1.5}), "validation.test_size", "less than 1"),
    (with_(ensemble={"size": 0}), "ensemble.size", "1"),
    (with_(hardware={"gpus": -1}), "hardware.gpus", "0"),
    (with_(data={"target": ""}), "data.target", "at least 1"),
    # unknown names
    (with_(metric="accuracyy"), "metric", "accuracyy"),
    (with_(models={"include": ["lightgbm", "xgboostt"]}), "models.include", "xgboostt"),
    (with_(models={"exclude": ["catboostt"]}), "models.exclude", "catboostt"),
])
def test_invalid_spec_is_one_line_naming_the_key(raw, key, extra):
    message = input_error(raw)
    assert message.startswith("spec:")
    assert key in message
    assert extra in message


def test_unknown_metric_lists_known_ones():
    message = input_error(with_(metric="auc"))
    assert "roc_auc" in message and "rmse" in message


def test_unknown_family_lists_known_ones():
    message = input_error(with_(models={"include": ["xgb"]}))
    for name in family_names():
        assert name in message


def test_every_registered_metric_and_family_is_accepted():
    from automl.metrics import metric_names

    for name in ["auto", *metric_names()]:
        assert build_spec(with_(metric=name)).metric == name
    spec = build_spec(with_(models={"include": family_names(), "exclude": family_names()[:1]}))
    assert spec.models.include == family_names()


def test_cpus_per_trial_above_cpus_is_rejected():
    message = input_error(with_(hardware={"cpus": 2, "cpus_per_trial": 4}))
    assert "hardware.cpus_per_trial" in message


def test_assignment_after_load_is_validated():
    spec = build_spec(minimal())
    with pytest.raises(ValueError):
        spec.validation.folds = 0


# --- JSON Schema -------------------------------------------------------------------------------------

def test_json_schema_describes_the_spec():
    schema = json_schema()
    json.dumps(schema)  # serialisable, for editors
    assert "data" in schema["properties"]
    assert schema["required"] == ["data"]
    for section in ("budget", "validation", "models", "ensemble", "hardware", "metric", "task"):
        assert section in schema["properties"]
    data = schema["$defs"]["DataSpec"]
    assert set(data["required"]) == {"train", "target"}
    assert {"train", "target", "test", "drop", "groups", "time", "sensitive"} <= set(
        data["properties"])
    assert schema["$defs"]["DataSpec"]["additionalProperties"] is False


def test_empty_include_list_is_refused():
    with pytest.raises(InputError, match="models.include"):
        build_spec({"data": {"train": "t.csv", "target": "y"}, "models": {"include": []}})
