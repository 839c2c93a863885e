# Two commands on a fresh machine:  `make serve` runs the service, `make test` runs the tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The dashboard's linter and formatter (Biome), pinned in package-lock.json.
BIOME := node_modules/.bin/biome
TORCH_VERSION ?= 2.13.0
# PyPI's Linux torch is the multi-GB CUDA build: without an NVIDIA GPU take the CPU wheel.
TORCH_INDEX ?= $(if $(shell command -v nvidia-smi 2>/dev/null),,https://download.pytorch.org/whl/cpu)

.PHONY: install serve test lint bench bench-service bench-fleet bench-search load screenshot

$(BIN)/tinytrain: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# torch alone from its index (its dependencies come from PyPI with the project's).
	$(BIN)/pip install -q --no-deps --retries 1 $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX)) "torch==$(TORCH_VERSION)"
	# The service ([server]) and the tests' tools ([dev]); `pip install .` alone is the client.
	$(BIN)/pip install -q -e ".[server,dev]"
	touch $@

$(BIOME): package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@

install: $(BIN)/tinytrain

serve: install
	$(BIN)/tinytrain serve

test: install lint
	$(BIN)/pytest

lint: install $(BIOME)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .
	$(BIN)/lint-imports
	$(BIOME) ci --colors=off .

bench: install
	$(BIN)/python -m benchmarks.engine

bench-service: install
	$(BIN)/python -m benchmarks.service

load: install
	$(BIN)/python -m benchmarks.load

bench-search: install
	$(BIN)/pip install -q -e '.[bench]'
	$(BIN)/python -m benchmarks.search

bench-fleet: install
	$(BIN)/python -m benchmarks.fleet --service

# docs/dashboard.png (a job started from the New job page, mid-training) and docs/compare.png
# (three jobs compared), taken by the dashboard's browser tests.
screenshot: install
	DASHBOARD_SCREENSHOTS=$(CURDIR)/docs $(BIN)/pytest -q tests/api/test_workbench.py -k "new_job_page or compared"
