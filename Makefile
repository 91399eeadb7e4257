# Two commands on a fresh machine with python3: `make demo` (set up + run a study), `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.daskopt-installed
EXTRAS ?= dev,bench,wandb,torch,jobqueue
# Installed before the package so pip never resolves torch from the registry itself (here: the local CPU wheel).
TORCH ?= torch==2.13.0

.PHONY: demo test lint bench bench-quick bench-engine clean

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
	rm -rf $(VENV) .pytest_cache
