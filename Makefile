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
# PostgreSQL majors of the version matrix (tests/integration/test_pg_versions.py): `make test`
# runs a few (13 is only refused), `make test-pg-matrix` every one. Each major other than the default
# server's runs on a server of its own (CDC_DEV_PG_VERSION=NN scripts/devstack up).
PG_VERSIONS ?= 13 14 15 18
PG_VERSIONS_ALL := 13 14 15 16 17 18

.PHONY: test test-consumers test-full test-pg-matrix unit lint install stack-up stack-down demo compose-test bench clean

# Create .venv when missing, install the project, bring up the local stack, run every test
# but the real consumers' (test-consumers: CI runs both).
test: lint stack-up
	eval "$$(scripts/devstack env)" && CDC_TEST_PG_VERSIONS="$(PG_VERSIONS)" $(PY) -m pytest \
		-m "not consumers" $(PYTEST_ARGS)

# Real consumers over cdc's topics, each in its own JVM built by Maven into the devstack cache:
# Flink SQL, Kafka Connect with Debezium's JDBC sink, cdc's sinks over Debezium's own topics
# (issue 22). About 2 minutes, the first time 3 more to fetch the jars.
test-consumers: install stack-up
	eval "$$(scripts/devstack env)" && $(PY) -m pytest -m consumers $(PYTEST_ARGS)

# The proofs at full size (12 SIGKILLs around a 100k-row COPY, a 2M-row transaction, 100 MB of
# foreign WAL, 1M-row tables snapshotted, 8 SIGKILLs inside an initial snapshot). `make test`
# runs the same tests smaller.
test-full: export CDC_TEST_KILLS = 12
test-full: export CDC_TEST_COPY_ROWS = 100000
test-full: export CDC_TEST_BIG_TXN_ROWS = 2000000
test-full: export CDC_TEST_HEARTBEAT_MB = 100
test-full: export CDC_TEST_SNAPSHOT_ROWS = 1000000
test-full: export CDC_TEST_SNAPSHOT_KILLS = 8
test-full: export CDC_TEST_OVERSIZED_MB = 50
test-full: export CDC_TEST_KAFKA_OUTAGE_S = 60
test-full: export CDC_TEST_KAFKA_OUTAGES = all
test-full: export CDC_TEST_PG_MATRIX_ROWS = 5000
test-full: export CDC_TEST_PG_MATRIX_KILLS = 6
test-full: PG_VERSIONS = $(PG_VERSIONS_ALL)
test-full: test test-consumers

# The version matrix whole: every PostgreSQL major from 13 (refused) to 18, at full size (5 000
# rows written, 6 SIGKILLs per major); then, on each other major than the default server's,
# the suite's own pgoutput tests of exact values, incremental snapshots under a SIGKILL and
# `cdc check`, with CDC_TEST_PG_DSN pointed at it. About 7 minutes.
PG_SUITE_ON_EACH := tests/integration/test_source_exact.py tests/integration/test_snapshot.py \
	tests/integration/test_check.py -k pgoutput
test-pg-matrix: export CDC_TEST_PG_MATRIX_ROWS = 5000
test-pg-matrix: export CDC_TEST_PG_MATRIX_KILLS = 6
test-pg-matrix: PG_VERSIONS = $(PG_VERSIONS_ALL)
test-pg-matrix: install stack-up
	eval "$$(scripts/devstack env)" && CDC_TEST_PG_VERSIONS="$(PG_VERSIONS)" $(PY) -m pytest \
		tests/integration/test_pg_versions.py tests/unit/test_pg_versions_unit.py $(PYTEST_ARGS)
	default=$$(scripts/devstack status | sed -n 's/^postgres:.* version=\([0-9]*\) .*/\1/p'); \
	for v in $(PG_VERSIONS); do \
		[ "$$v" -ge 14 ] && [ "$$v" != "$$default" ] || continue; \
		echo "== the suite's pgoutput tests on PostgreSQL $$v"; \
		eval "$$(CDC_DEV_PG_VERSION=$$v scripts/devstack env)" && \
			$(PY) -m pytest $(PG_SUITE_ON_EACH) $(PYTEST_ARGS) || exit 1; \
	done

# Tests that need no services: every test not marked `services` (the marker is set from the
# fixtures a test asks for, see tests/conftest.py), wherever it lives.
unit: install
	$(PY) -m pytest -m "not services" $(PYTEST_ARGS)

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

# The default stack, then a server for each major of PG_VERSIONS that the default one is not.
stack-up:
	scripts/devstack up
	default=$$(scripts/devstack status | sed -n 's/^postgres:.* version=\([0-9]*\) .*/\1/p'); \
	for v in $(PG_VERSIONS); do \
		[ "$$v" = "$$default" ] || CDC_DEV_PG_VERSION=$$v scripts/devstack up || exit 1; \
	done

stack-down:
	scripts/devstack down

# The whole pipeline on sample data: a shop database -> Kafka -> PostgreSQL and SQLite sinks.
demo: install stack-up
	eval "$$(scripts/devstack env)" && $(PY) scripts/demo.py

# The compose stack for real (docker-compose.yml with docker-compose.test.yml): installs Docker
# and Compose when missing (as root), builds every image on debian:bookworm-slim, runs the
# pipeline in containers until both sinks hold the source's rows, checks /metrics, /readyz and
# Prometheus, and tears the stack down. Needs no .venv.
compose-test:
	scripts/compose-test

# Every benchmark in one run, Debezium beside cdc (see bench/README.md): results in
# bench/results/, then the chart, docs/benchmarks.md's tables and README.md's summary rewritten.
# 15 to 35 minutes at full size; `make bench BENCH_SCALE=0.05` is quick. BENCH_ARGS passes more options to bench.run.
bench: $(BENCH_STAMP) stack-up
	eval "$$(scripts/devstack env)" && $(PY) -m bench.run --scale $(BENCH_SCALE) $(BENCH_ARGS)

# The bench extra (matplotlib) on top of what `install` puts in; redone with it.
$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e '.[dev,bench]'
	touch $@

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache build connectors/postgres/*.so
