# Two commands on a fresh machine with python3: `make demo` (set up + run a study), `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.daskopt-installed
DEMO_STAMP := $(VENV)/.daskopt-demo
DOCS_STAMP := $(VENV)/.daskopt-docs
RELEASE_STAMP := $(VENV)/.daskopt-release
# where `make docs` puts the site and `make dist` the sdist and wheel
SITE ?= site
DIST ?= dist
# `make demo` installs the package with only what the quickstart uses; `make test` adds everything else.
DEMO_EXTRAS ?= demo
EXTRAS ?= demo,dev,bench,wandb,torch,jobqueue,optuna-dashboard
# Installed before the package so pip never resolves torch from the registry itself (here: the local CPU wheel).
TORCH ?= torch==2.13.0

# The oldest Optuna the package supports (pyproject.toml); `make test` runs the newest allowed.
OPTUNA_LOWER ?= 4.5.0
LOWER := .optuna-lower/$(OPTUNA_LOWER)

.PHONY: demo test test-fast test-optuna-lower lint docs dist bench bench-quick bench-engine clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(DEMO_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[$(DEMO_EXTRAS)]"
	touch $(DEMO_STAMP)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[$(EXTRAS)]"
	touch $(STAMP) $(DEMO_STAMP)

$(DOCS_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[docs]"
	touch $(DOCS_STAMP)

$(RELEASE_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[release]"
	touch $(RELEASE_STAMP)

demo: $(DEMO_STAMP)
	WANDB_MODE=offline $(BIN)/daskopt run examples/quickstart/study.toml

test: $(STAMP)
	$(BIN)/python -m pytest -q --durations=15

# The suite without the slow, fault, network, load and benchmark tests: a few minutes on 2 cores.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q --durations=10 -m "not slow" \
		--ignore=tests/faults --ignore=tests/network --ignore=tests/load --ignore=tests/benchmarks

# The Optuna-facing tests again on the oldest supported Optuna, put ahead of the installed one.
test-optuna-lower: $(STAMP)
	test -d $(LOWER) || $(BIN)/python -m pip install --quiet --no-deps --target $(LOWER) "optuna==$(OPTUNA_LOWER)"
	PYTHONPATH=$(CURDIR)/$(LOWER) $(BIN)/python -m pytest -q tests/conformance tests/engine/test_asking.py tests/trial

lint: $(STAMP)
	$(BIN)/ruff check daskopt tests benchmarks
	$(BIN)/mypy daskopt

# The documentation site (mkdocs.yml) into $(SITE)/. Strict: a warning (a broken link or anchor, a page
# missing from the nav, a docstring griffe cannot read) fails the build.
docs: $(DOCS_STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --clean --site-dir $(SITE)

# The sdist and the wheel (built from the sdist, as an installer would) into $(DIST)/, checked by twine.
dist: $(RELEASE_STAMP)
	rm -rf $(DIST)
	$(BIN)/python -m build --quiet --outdir $(DIST) .
	$(BIN)/twine check --strict $(DIST)/*

bench: $(STAMP)
	$(BIN)/python -m benchmarks all

bench-quick: $(STAMP)
	$(BIN)/python -m benchmarks all --quick

bench-engine: $(STAMP)
	$(BIN)/python -m benchmarks.engine

clean:
	rm -rf $(VENV) .pytest_cache .optuna-lower $(SITE) $(DIST)
