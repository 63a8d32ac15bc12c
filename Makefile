# keel — the two set-up commands are `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
UV := $(PYTHON) -m uv
PG_URL ?= postgresql://postgres@127.0.0.1:5432/postgres
PYTEST_WORKERS ?= 2
# This machine kind keeps the CPU build of torch in /opt/wheels; uv does not read pip.conf.
FIND_LINKS := $(if $(wildcard /opt/wheels),--find-links /opt/wheels)

.PHONY: demo test install install-test lint typecheck services bench-tracking bench-registry bench-server bench-data bench-validation bench-serving bench-monitoring bench-scale clean

$(VENV)/bin/python:
	@$(PYTHON) -m uv --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet uv
	$(UV) venv --quiet --python $(PYTHON) $(VENV)

install: $(VENV)/bin/python
	$(UV) pip install --quiet --python $(VENV)/bin/python -e ".[all]"

install-test: $(VENV)/bin/python
	$(UV) pip install --quiet --python $(VENV)/bin/python $(FIND_LINKS) -e ".[test]"

## make demo: install, then train a few models with tracking and compare the runs
demo: install
	$(PY) examples/demo.py

services:
	@bash scripts/services.sh
	@command -v chromium >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium)

lint: install-test
	$(VENV)/bin/ruff check src tests benchmarks examples
	$(VENV)/bin/ruff format --check src tests benchmarks examples

typecheck: install-test
	$(VENV)/bin/mypy

## make test: install test deps, start services, lint, type-check, run every test on every backend
test: install-test services lint typecheck
	KEEL_TEST_POSTGRES_URL=$(PG_URL) KEEL_TEST_S3=1 KEEL_TEST_REQUIRE_BACKENDS=1 \
	  $(VENV)/bin/pytest -n $(PYTEST_WORKERS) -p no:cacheprovider

bench-tracking: install
	$(PY) benchmarks/tracking/run.py

bench-registry: install-test
	$(PY) benchmarks/registry/run.py

bench-server: install-test
	$(PY) benchmarks/server/run.py

bench-data: install-test
	$(PY) benchmarks/data/run.py

bench-validation: install-test
	$(PY) benchmarks/data/validation.py

bench-serving: install-test
	$(PY) benchmarks/serving/run.py

bench-monitoring: install-test
	$(PY) benchmarks/monitoring/run.py

bench-scale: install
	$(PY) benchmarks/scale/run.py

clean:
	rm -rf $(VENV) .keel .pytest_cache .mypy_cache .ruff_cache
