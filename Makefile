# trust-agent: `make demo` and `make test` work on a fresh Debian 12 machine (as root).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
LAB_DIR ?= /tmp/trust-agent-demo
BENCH_HOSTS ?= 50
BENCH_RUNS ?= 3

.PHONY: all deps system-deps test lint unit lab-test demo bench clean

all: test

$(BIN)/trust-agent: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

system-deps:
	bash .ci/system-deps.sh

deps: system-deps $(BIN)/trust-agent

lint: $(BIN)/trust-agent
	$(BIN)/ruff check agent tests ansible-compat
	$(BIN)/ruff format --check agent tests ansible-compat
	$(BIN)/mypy

unit: $(BIN)/trust-agent
	$(BIN)/pytest -q tests/unit

test: deps lint
	$(BIN)/pytest -q --timeout=900 tests

demo: deps
	bash .ci/demo.sh $(LAB_DIR)

bench: deps
	BENCH_HOSTS=$(BENCH_HOSTS) BENCH_RUNS=$(BENCH_RUNS) $(BIN)/python -m tests.bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .bench
