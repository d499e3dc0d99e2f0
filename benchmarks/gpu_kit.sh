#!/usr/bin/env bash
# The packages benchmarks/gpu.py needs that the GPU machine lacks, as one archive to carry there.
#
# The device tool's GPU machine has Python 3.12 with torch (CUDA), numpy, pandas,
# scikit-learn, matplotlib and pyarrow, no network, and takes at most 64 MiB of carried
# files. This downloads the rest (Ray core, not Serve: a fit never imports it) as Python 3.12
# manylinux wheels, at the versions this checkout's .venv has, installs them into one folder
# without their dependencies that the machine already has, strips Ray of what a fit never
# loads, and packs it as .gpu-kit/site.tar.xz (about 53 MB; .gpu-kit is git-ignored).
#
#     benchmarks/gpu_kit.sh                      # here, with the network
#     run(carry=[".gpu-kit"], command="mkdir -p /tmp/site && tar xJf .gpu-kit/site.tar.xz -C /tmp/site &&
#         PYTHONPATH=/tmp/site:$PWD python3 benchmarks/gpu.py")   # there
set -euo pipefail
cd "$(dirname "$0")/.."
PIP=".venv/bin/python -m pip"
PY312=${PY312:-python3.12}
KIT=.gpu-kit
WHEELS=$KIT/wheels
SITE=$KIT/site
PACKAGES="optuna lightgbm ray pydantic PyYAML typer rich SQLAlchemy fairlearn psutil prometheus_client"
# What the GPU machine has already (and their own dependencies): never shadowed.
ON_THE_MACHINE="numpy scipy pandas scikit_learn matplotlib pyarrow torch triton nvidia_ pillow contourpy kiwisolver
fonttools cycler pyparsing python_dateutil pytz tzdata joblib threadpoolctl sympy mpmath networkx fsspec"
PLATFORMS="--platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_27_x86_64
--platform manylinux_2_28_x86_64"

pinned=()
for package in $PACKAGES; do
    pinned+=("$($PIP freeze 2>/dev/null | grep -i "^${package//_/[-_]}==")")
done
rm -rf "$KIT" && mkdir -p "$WHEELS" "$SITE"
# shellcheck disable=SC2086
$PIP download --quiet --only-binary=:all: --python-version 3.12 $PLATFORMS --dest "$WHEELS" "${pinned[@]}"
wanted=()
for wheel in "$WHEELS"/*.whl; do
    name=$(basename "$wheel" | cut -d- -f1 | tr '[:upper:]' '[:lower:]')
    skip=0
    for present in $ON_THE_MACHINE; do
        [[ "$name" == "$present"* ]] && skip=1
    done
    [[ $skip == 1 ]] || wanted+=("$wheel")
done
# shellcheck disable=SC2086
$PIP install --quiet --no-deps --only-binary=:all: --python-version 3.12 $PLATFORMS --target "$SITE" "${wanted[@]}"
rm -rf "$SITE"/ray/jars "$SITE"/ray/dashboard/client/build "$SITE"/ray/rllib "$SITE"/ray/serve "$SITE"/ray/llm \
    "$SITE"/ray/tune "$SITE"/ray/train "$SITE"/ray/data
# Compiled ahead for Python 3.12, where one is at hand: the machine's first imports skip it.
if command -v "$PY312" > /dev/null; then
    "$PY312" -m compileall -q -j 0 "$SITE" > /dev/null || true
fi
tar cJf "$KIT/site.tar.xz" -C "$SITE" .
rm -rf "$WHEELS" "$SITE"
du -h "$KIT/site.tar.xz"
