# Everything runs inside a project virtual environment, .venv, made by `make install`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
BENCH_TIME_S ?= 60

.PHONY: install test demo lint bench bench-quality bench-scaling bench-scale bench-mlp bench-gpu bench-faults bench-predict bench-fairness bench-peers-install gpu-kit browser clean

install: $(BIN)/automl browser

# The CPU build of torch goes in first (it lies on this machine's disk), so that
# nothing later pulls a multi-GB CUDA build; then the project and its dev tools.
$(BIN)/automl: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "torch==2.13.0"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(BIN)/automl

# The report test opens report.html in a real headless Chromium. Debian's package is
# added where apt-get may run (as root); elsewhere that one test skips and says why.
browser:
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	    timeout 300 apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1; } || \
	  echo "note: no chromium (not root, or apt-get failed): the report's browser test will skip"

test: install
	$(BIN)/python -m pytest -q --durations=15

demo: install
	$(BIN)/automl fit specs/breast_cancer.yaml --overwrite
	$(BIN)/automl leaderboard runs/breast-cancer

lint: install
	$(BIN)/ruff check automl tests benchmarks

bench: bench-scaling bench-scale bench-mlp bench-quality bench-faults bench-predict bench-fairness

bench-quality: install
	$(BIN)/python benchmarks/quality.py --time-s $(BENCH_TIME_S)

# FLAML and AutoGluon, the peers bench-quality measures against, live in their own
# environment: they are benchmark opponents, never dependencies of the project.
PEERS_VENV ?= .venv-peers
bench-peers-install:
	test -x $(PEERS_VENV)/bin/python || $(PYTHON) -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/python -m pip install --quiet "torch==2.13.0"
	$(PEERS_VENV)/bin/python -m pip install --quiet "flaml[automl]" "autogluon.tabular" pandas

bench-scaling: install
	$(BIN)/python benchmarks/scaling.py

BUSY ?= 0
bench-scale: install
	$(BIN)/python benchmarks/scale.py --busy $(BUSY)

bench-mlp: install
	$(BIN)/python benchmarks/mlp.py

bench-gpu: install
	$(BIN)/python benchmarks/gpu.py

# The packages benchmarks/gpu.py needs on a GPU machine that has Python 3.12, torch and the
# scientific stack but no network: .gpu-kit/site.tar.xz, to carry there (see the script).
gpu-kit: install
	benchmarks/gpu_kit.sh

bench-predict: install
	$(BIN)/python benchmarks/predict.py
	$(BIN)/python benchmarks/predict.py --rows 1000000

bench-fairness: install
	$(BIN)/python benchmarks/fairness.py

bench-faults: install
	$(BIN)/python benchmarks/faults.py

clean:
	rm -rf runs .pytest_cache
