"""GPUs, planned for without one: how many there are, the share of one a trial takes, and
what a GPU trial is estimated to cost before and after it is measured."""

from __future__ import annotations

import pytest

from automl import devices, planner
from automl.models import get_family
from automl.planner import TrialClock, choose_gpus_per_trial, plan
from automl.spec import HardwareSpec, build_spec

GIB = 2**30


def _spec(time_s=60, **hardware):
    return build_spec({"data": {"train": "x.csv", "target": "y"}, "budget": {"time_s": time_s},
                       "hardware": {"cpus": 2, **hardware}})


@pytest.mark.parametrize(("visible", "expected"), [("0,1", 2), ("GPU-5f0c", 1), ("", 0), ("-1", 0)])
def test_the_visible_gpus_are_those_cuda_would_show(visible, expected, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    assert devices.visible_gpus() == expected


def test_without_cuda_visible_devices_the_driver_lists_them(tmp_path, monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    for name in ("0000:01:00.0", "0000:02:00.0"):
        (tmp_path / name).mkdir()
    monkeypatch.setattr(devices, "NVIDIA_PROC", tmp_path)
    assert devices.visible_gpus() == 2
    monkeypatch.setattr(devices, "NVIDIA_PROC", tmp_path / "absent")  # no NVIDIA driver at all
    assert devices.visible_gpus() == 0


def test_gpus_auto_means_this_machines_for_an_embedded_run_only(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    assert devices.run_gpus(HardwareSpec()) == 1
    assert devices.run_gpus(HardwareSpec(gpus=0)) == 0
    assert devices.run_gpus(HardwareSpec(backend="local")) == 0
    assert devices.run_gpus(HardwareSpec(ray_address="auto")) == 0  # Ray counts a cluster's own


def test_several_trials_share_a_gpu_as_far_as_its_memory_allows(monkeypatch):
    monkeypatch.setattr(planner, "gpu_memory_bytes", lambda: 80 * GIB)
    assert choose_gpus_per_trial(_spec(), 1, 30_000, 14)[0] == 0.25  # adult: four on an H100
    share, reason = choose_gpus_per_trial(_spec(), 1, 200_000_000, 25)  # 80 GB of float32 on the device
    assert share == 1.0 and "1 trial(s) per GPU" in reason
    assert choose_gpus_per_trial(_spec(gpus_per_trial=0.5), 1, 30_000, 14) == (
        0.5, "hardware.gpus_per_trial, as the spec says")
    assert choose_gpus_per_trial(_spec(), 0, 30_000, 14) == (0.0, "no GPU")


def test_a_gpu_trials_cost_is_its_devices_until_measured_there():
    mlp, lightgbm = get_family("mlp"), get_family("lightgbm")
    on_cpu = TrialClock(6.0, 30_000, 14, 5)
    on_gpu = TrialClock(6.0, 30_000, 14, 5, gpu_families=frozenset({"mlp"}))
    assert on_gpu.fit_estimate_s(mlp) == pytest.approx(on_cpu.fit_estimate_s(mlp) / mlp.gpu_speedup)
    for clock in (on_cpu, on_gpu):  # the CPUs are busy: LightGBM ran three times slower than estimated
        clock.observe(lightgbm, 3 * clock.fit_estimate_s(lightgbm), None)
    assert on_cpu.speed(mlp) == 3.0 and on_gpu.speed(mlp) == 1.0  # the CPUs' pace says nothing of the GPU
    on_gpu.observe(mlp, 2 * on_gpu.fit_estimate_s(mlp), None)  # its first trial, measured on the GPU
    assert on_gpu.speed(mlp) == 2.0


def test_with_a_gpu_the_planner_affords_the_mlp_where_cpus_could_not(monkeypatch):
    monkeypatch.setattr(planner, "gpu_memory_bytes", lambda: 80 * GIB)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    cpu_only = plan(_spec(60), "binary", 30_000, 14)
    assert "mlp" in cpu_only.skipped and cpu_only.gpus_per_trial == 0
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    with_gpu = plan(_spec(60), "binary", 30_000, 14)
    assert "mlp" in [f.name for f in with_gpu.families]
    assert with_gpu.gpus_per_trial == 0.25 and with_gpu.clock.gpu_families == {"mlp"}
    assert with_gpu.describe()["gpus_per_trial"] == 0.25
    with_gpu.use_gpus(_spec(60), 0, 30_000, 14)  # the executor found none after all
    assert with_gpu.gpus_per_trial == 0 and not with_gpu.clock.gpu_families


def test_only_a_trial_given_a_gpu_trains_on_one():
    mlp = get_family("mlp")
    estimator = mlp.build(mlp.default_params("binary"), "binary", 1, 0)
    mlp.place(estimator, 0.25)
    assert estimator.device == "auto"  # the GPU Ray shows the trial (the CPUs, should it show none)
    mlp.place(estimator, 0)
    assert estimator.device == "cpu"  # a CPU trial on a GPU machine never takes the GPU unasked


def test_the_cpus_are_planned_on_the_first_family_that_runs_on_them(monkeypatch):
    monkeypatch.setattr(planner, "gpu_memory_bytes", lambda: 80 * GIB)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    spec = build_spec({"data": {"train": "x.csv", "target": "y"}, "budget": {"time_s": 90},
                       "models": {"include": ["mlp", "lightgbm"]}, "hardware": {"cpus": 16}})
    with_gpu = plan(spec, "binary", 32_000, 14)
    assert "a lightgbm trial takes" in with_gpu.validation.reason  # the MLP is on the GPU
    assert with_gpu.cpus_per_trial == 1  # LightGBM's trials are short: one CPU each, 16 at once
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert "a mlp trial takes" in plan(spec, "binary", 32_000, 14).validation.reason
