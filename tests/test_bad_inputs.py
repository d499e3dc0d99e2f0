"""The bad-input corpus (tests/bad_inputs/): every case is refused with exit status 2 and one
line naming the problem, before any work starts; and random specs (hypothesis) never crash
the loader: they give a spec or one InputError line."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from automl.cli import run_command
from automl.errors import InputError
from automl.spec import build_spec, load_spec
from tests.conftest import automl_cli

CORPUS = Path(__file__).parent / "bad_inputs"
CASES = yaml.safe_load((CORPUS / "cases.yaml").read_text())


def test_the_corpus_is_large_enough():
    assert len(CASES) >= 30
    assert {p.name for p in CORPUS.iterdir() if p.is_dir()} == set(CASES)


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_refused_with_one_line(name, tmp_path, capsys, monkeypatch):
    case = CASES[name]
    monkeypatch.chdir(CORPUS / name)  # the output folder is made relative to the spec; keep it out of the corpus
    args = case.get("args", [])
    output = tmp_path / "run"
    if "--output" not in args:
        args = [*args, "--output", str(output)]
    status = run_command(["fit", str(CORPUS / name / "spec.yaml"), "--quiet", *args])
    err = capsys.readouterr().err
    assert status == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert case["expect"] in err, err
    assert not output.exists()  # refused before anything was written


def test_a_real_process_prints_no_traceback():
    result = automl_cli("fit", CORPUS / "mixed_type_column" / "spec.yaml", "--quiet")
    assert result.returncode == 2 and "Traceback" not in result.stderr and result.stderr.count("\n") == 1


KEYS = st.sampled_from(["name", "data", "task", "metric", "budget", "validation", "models", "ensemble", "hardware",
                        "output", "seed", "train", "target", "time_s", "folds", "include", "cpus", "size", "test_size",
                        "sensitive", "deduplicate", "bogus"])
VALUES = st.recursive(st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=True)
                      | st.text(max_size=12),
                      lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=4),
                      max_leaves=12)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(KEYS, VALUES, max_size=6))
def test_random_specs_give_a_spec_or_one_input_error(raw):
    try:
        spec = build_spec(raw)
    except InputError as exc:
        assert "\n" not in str(exc) and str(exc)
    else:
        assert spec.budget.time_s > 0 and spec.data.target


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_random_spec_files_give_a_spec_or_one_input_error(tmp_path_factory, content):
    path = tmp_path_factory.mktemp("spec") / "spec.yaml"
    path.write_bytes(content)
    try:
        load_spec(path)
    except InputError as exc:
        assert "\n" not in str(exc)
