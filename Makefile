# Two commands on a fresh machine with python3: `make demo` (set up + run a study), `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.daskopt-installed
EXTRAS ?= dev,bench,wandb,torch,jobqueue
# Installed before the package so pip never resolves torch from the registry itself (here: the local CPU wheel).
TORCH ?= torch==2.13.0

# The oldest Optuna the package supports (pyproject.toml); `make test` runs the newest allowed.
OPTUNA_LOWER ?= 4.5.0
LOWER := .optuna-lower/$(OPTUNA_LOWER)

.PHONY: demo test test-optuna-lower lint bench bench-quick bench-engine clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[$(EXTRAS)]"
	touch $(STAMP)

demo: $(STAMP)
	WANDB_MODE=offline $(BIN)/daskopt run examples/quickstart/study.toml

test: $(STAMP)
	$(BIN)/python -m pytest -q

# The Optuna-facing tests again on the oldest supported Optuna, put ahead of the installed one.
test-optuna-lower: $(STAMP)
	test -d $(LOWER) || $(BIN)/python -m pip install --quiet --no-deps --target $(LOWER) "optuna==$(OPTUNA_LOWER)"
	PYTHONPATH=$(CURDIR)/$(LOWER) $(BIN)/python -m pytest -q tests/conformance tests/engine/test_asking.py tests/trial

lint: $(STAMP)
	$(BIN)/ruff check daskopt tests benchmarks
	$(BIN)/mypy daskopt

bench: $(STAMP)
	$(BIN)/python -m benchmarks all

bench-quick: $(STAMP)
	$(BIN)/python -m benchmarks all --quick

bench-engine: $(STAMP)
	$(BIN)/python -m benchmarks.engine

clean:
	rm -rf $(VENV) .pytest_cache .optuna-lower
