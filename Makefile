# Everything runs from a local virtual environment built from the lock.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install browser run smoke pick test test-fast bench docs lock clean

$(STAMP): requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

## make run: train carracing-vmc on the `quick` profile against the embedded stores (./.dreamops)
run: install
	$(BIN)/dreamops train --agent carracing-vmc --profile quick

smoke: install
	$(BIN)/dreamops train --agent carracing-vmc --profile smoke

## make pick: train pick-vla on the `quick` profile, with the CEM planner also evaluated
pick: install
	$(BIN)/dreamops train --agent pick-vla --profile quick --set eval.planner=true

## make browser: Debian's Chromium and ChromeDriver for the MLflow UI test (skipped when present)
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
		($(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium chromium-driver)

## make test: the whole suite (unit, data, contract, production-stack and end-to-end smoke tests)
TEST_PROCESSES ?= 2
test: install browser
	$(BIN)/python -m pytest -n $(TEST_PROCESSES) --dist loadgroup

## make test-fast: unit, numeric, contract and data tests; no server, no browser (minutes)
test-fast: install
	$(BIN)/python -m pytest -n $(TEST_PROCESSES) --dist loadgroup -m "not e2e and not servers"

## make bench: side-by-side ratios (dream batching, parallel collection, V-M-C latency, on-robot export latency, MMD, scaling and API load)
bench: install
	$(BIN)/python bench/run_all.py

## make docs: the reference pages generated from the code (docs/gen_reference.py), then the site into site/
docs: install
	$(BIN)/python docs/gen_reference.py
	NO_MKDOCS_2_WARNING=1 $(BIN)/python -m mkdocs build --strict --site-dir site

## make lock: re-resolve the lock from pyproject.toml in a scratch environment
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet torch==2.13.0 -e '.[test,docs]'
	head -2 requirements.lock > .lock-venv/header
	(cat .lock-venv/header; .lock-venv/bin/python -m pip freeze | grep -v -i '^-e\|^dreamops\|^#' \
		| sed 's/^torch==2.13.0+cpu/torch==2.13.0/') > requirements.lock
	rm -rf .lock-venv

clean:
	rm -rf $(VENV) .dreamops
