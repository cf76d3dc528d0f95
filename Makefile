# The two commands a newcomer needs: `make demo` and `make test`.
# Each creates .venv on first use and reinstalls when pyproject.toml changes.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-dev

.PHONY: demo test lint unit compat compat-quick clients soak bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@# Byte-compile now: with PYTHONDONTWRITEBYTECODE set, every spawned child would
	@# otherwise recompile polyproc from source.
	$(BIN)/python -m compileall -q src/polyproc
	touch $(STAMP)

## demo: the seed tour with polyproc standing in for multiprocessing
demo: $(STAMP)
	$(BIN)/polyproc demo

## test: lint, the whole test suite, and a quick slice of CPython's own suite
test: lint unit compat-quick

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/python -m pytest

## compat: CPython's multiprocessing test suite run against polyproc (slow)
compat: $(STAMP)
	$(BIN)/python -m tests.compat

compat-quick: $(STAMP)
	$(BIN)/python -m tests.compat --quick

## clients: third-party code run unchanged on the stdlib and on polyproc, pass counts
## side by side (the documentation's examples, pebble's and tqdm's suites, CPython's
## test_concurrent_futures; fetched from package registries into .cache/clients/)
clients: $(STAMP)
	$(BIN)/python -m tests.clients

## soak: the chaos soak (a few minutes): 100k tasks per start method with random worker
## kills, timeouts, raising and unpicklable tasks; every task accounted for, nothing grows
soak: $(STAMP)
	$(BIN)/python -m tests.soak

## bench: polyproc against the standard library and peers, same run, interleaved
bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
