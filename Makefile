# The two set-up commands of the README are `make test` and `make demo`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# What the install is made of: redone when any of it changes (the C extension is built by it).
BUILT_FROM := pyproject.toml setup.py connectors/postgres/_tuples.c
BUILD_SUM := $(shell cat $(BUILT_FROM) | cksum | cut -d' ' -f1)
STAMP := $(VENV)/.installed-$(BUILD_SUM)
BENCH_STAMP := $(VENV)/.installed-bench-$(BUILD_SUM)
BENCH_SCALE ?= 1.0

.PHONY: test test-full unit lint install stack-up stack-down demo bench clean

# Create .venv when missing, install the project, bring up the local stack, run every test.
test: lint stack-up
	eval "$$(scripts/devstack env)" && $(PY) -m pytest $(PYTEST_ARGS)

# The proofs at full size (12 SIGKILLs around a 100k-row COPY, a 2M-row transaction, 100 MB of
# foreign WAL, 1M-row tables snapshotted, 8 SIGKILLs inside an initial snapshot). `make test`
# runs the same tests smaller.
test-full: export CDC_TEST_KILLS = 12
test-full: export CDC_TEST_COPY_ROWS = 100000
test-full: export CDC_TEST_BIG_TXN_ROWS = 2000000
test-full: export CDC_TEST_HEARTBEAT_MB = 100
test-full: export CDC_TEST_SNAPSHOT_ROWS = 1000000
test-full: export CDC_TEST_SNAPSHOT_KILLS = 8
test-full: test

# Tests that need no services.
unit: install
	$(PY) -m pytest tests/test_config.py tests/test_wal2json_decoder.py tests/test_pgoutput_decoder.py \
		tests/test_acks.py tests/test_source_stream.py \
		tests/test_records.py tests/test_bench.py tests/test_cli.py $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

install: $(STAMP)

$(STAMP): $(BUILT_FROM)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-* && touch $@

stack-up:
	scripts/devstack up

stack-down:
	scripts/devstack down

# The whole pipeline on sample data: a shop database -> Kafka -> PostgreSQL and SQLite sinks.
demo: install stack-up
	eval "$$(scripts/devstack env)" && $(PY) scripts/demo.py

# Every benchmark in one run, Debezium beside cdc (see bench/README.md): results in
# bench/results/, README.md's benchmark table and chart rewritten. 15 to 35 minutes at full size;
# `make bench BENCH_SCALE=0.05` is quick. BENCH_ARGS passes more options to bench.run.
bench: $(BENCH_STAMP) stack-up
	eval "$$(scripts/devstack env)" && $(PY) -m bench.run --scale $(BENCH_SCALE) $(BENCH_ARGS)

# The bench extra (matplotlib) on top of what `install` puts in; redone with it.
$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e '.[dev,bench]'
	touch $@

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache build connectors/postgres/*.so
