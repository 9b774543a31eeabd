# Blueprint: `make demo` runs the system, `make test` proves it. Both build .venv when missing.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
MANIFEST := dbt_project/target/manifest.json
DBT_SOURCES := $(shell find dbt_project -path dbt_project/target -prune -o \( -name '*.sql' -o -name '*.yml' \) -print)
PYTEST_WORKERS ?= 2
export BLUEPRINT_HOME ?= $(CURDIR)/data

.PHONY: setup demo stop test test-fast test-loop test-churn test-churn-loop test-tutorial test-slow lint bench bench-quick clean-data

setup: $(STAMP) $(MANIFEST)

# The virtualenv, from the committed lock (exact versions of everything).
$(STAMP): requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -e .
	@touch $(STAMP)

# dagster-dbt reads dbt's manifest at import time: it is a build artifact, made here.
$(MANIFEST): $(STAMP) $(DBT_SOURCES)
	cd dbt_project && ../$(BIN)/dbt parse --profiles-dir . --quiet
	@touch $(MANIFEST)

demo: setup
	$(BIN)/blueprint demo

stop:
	@if [ -x $(BIN)/blueprint ]; then $(BIN)/blueprint stop; else echo "Nothing is running."; fi

test: setup browser
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadfile --durations=15 -m "not loop and not churn and not churn_loop and not tutorial"

test-fast: setup browser
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadfile -m "not slow and not loop and not churn and not churn_loop and not tutorial"

# The closed loop on a tiny drift world, its 12 held days fed to the pipeline one at a time
# (one process; 4 min 17 s here alone, of which the loop 3 min 47 s). CI runs it after test.
test-loop: setup browser
	$(BIN)/pytest tests/e2e/test_closed_loop.py -s

# The churn use case end to end on a 120-day world beside a fraud one, and its demo (CI runs it
# after test; 4 min 17 s in a clean clone's CI run on 2026-12-07).
test-churn: setup
	$(BIN)/pytest tests/e2e/test_churn.py -m churn --durations=5

# The churn use case's closed loop on a small drift world: its 40 held days delivered ten at a
# time, the retraining sensor firing on the drift, the gate promoting the challenger, a weekly
# retraining rejected (CI runs it after test-churn; 12 min 04 s on 2026-12-07 beside other jobs,
# load 4 to 5 on the 2 cores, 9 min 15 s at load 3; the replay's steps 50 to 130 s).
test-churn-loop: setup
	$(BIN)/pytest tests/e2e/test_churn_loop.py -m churn_loop -s --durations=5

# docs/EXTENDING.md followed literally: a batch use case and an online one added to a copy of the
# project with new files only, materialized end to end, the online one served over HTTP (CI
# runs it after test-churn; the batch one 42 s here alone, 1 min 51 s beside a CI run, on
# 2026-12-07; the online one 3 min on a shared machine, on 2026-12-08).
test-tutorial: setup
	$(BIN)/pytest tests/e2e/test_tutorial.py tests/e2e/test_tutorial_online.py -m tutorial --durations=5

# The closed loop at the default world's size and the handbook's windows (not CI; 16 min here).
test-slow: setup browser
	BLUEPRINT_CLOSED_LOOP=full $(BIN)/pytest tests/e2e/test_closed_loop.py -s

# The browser tests drive Debian's Chromium through its chromedriver; installed once (as root).
.PHONY: browser
browser:
	@if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get update -qq && apt-get install -y -qq chromium chromium-driver; \
	fi

# Benchmarks: build a world from nothing (measured), measure every section on it, print the
# tables and rewrite the page. Full: the default world -> docs/BENCHMARKS.md (52 min 39 s here
# on 2026-12-02, the closed loop's section 8 included); quick: a small world, sections
# 1-7 -> docs/BENCHMARKS-quick.md (3 min here; CI runs it so the harness never rots).
bench: setup
	$(BIN)/python -m benchmarks

bench-quick: setup
	$(BIN)/python -m benchmarks --quick

lint: setup
	$(BIN)/ruff check .
