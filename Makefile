# Two commands on a fresh machine with python3: `make demo` (set up + run a study), `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.daskopt-installed
EXTRAS ?= dev,bench,wandb

.PHONY: demo test lint bench-engine clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[$(EXTRAS)]"
	touch $(STAMP)

demo: $(STAMP)
	WANDB_MODE=offline $(BIN)/daskopt run examples/quickstart/study.toml

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check daskopt tests benchmarks
	$(BIN)/mypy daskopt

bench-engine: $(STAMP)
	$(BIN)/python -m benchmarks.engine

clean:
	rm -rf $(VENV) .pytest_cache
