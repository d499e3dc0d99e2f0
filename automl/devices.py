"""The GPUs a run may use, found without importing torch or starting Ray (both take
seconds), so that a CPU-only machine pays nothing for asking."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

NVIDIA_PROC = Path("/proc/driver/nvidia/gpus")
"""The NVIDIA driver lists one folder per GPU here."""


def visible_gpus() -> int:
    """This machine's GPUs that CUDA would show this process: those CUDA_VISIBLE_DEVICES
    names where it is set, else those the NVIDIA driver lists."""
    named = os.environ.get("CUDA_VISIBLE_DEVICES")
    if named is not None:
        entries = [entry for entry in named.split(",") if entry.strip()]
        return 0 if not entries or entries[0].strip() == "-1" else len(entries)
    try:
        return sum(1 for entry in NVIDIA_PROC.iterdir() if entry.is_dir())
    except OSError:
        return 0


def run_gpus(hardware) -> int:
    """The GPUs an embedded run starts Ray with (``hardware`` is the spec's section):
    ``hardware.gpus``, or with ``auto`` this machine's visible ones (none for the local
    backend, which runs on CPUs only). Joining a cluster, Ray counts the cluster's own."""
    if hardware.gpus != "auto":
        return hardware.gpus
    if hardware.backend == "local" or hardware.ray_address:
        return 0
    return visible_gpus()


def gpu_memory_bytes() -> float | None:
    """The smallest visible GPU's memory, from nvidia-smi (None: no GPU, or no nvidia-smi)."""
    if not visible_gpus() or shutil.which("nvidia-smi") is None:
        return None
    try:
        listing = subprocess.run(["nvidia-smi", "--query-gpu=memory.total", "--format=csv,noheader,nounits"],
                                 capture_output=True, text=True, timeout=10).stdout
        sizes = [float(line) * 2**20 for line in listing.split() if line.strip()]  # MiB
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    return min(sizes) if sizes else None
