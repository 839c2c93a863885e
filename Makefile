# Two commands on a fresh machine:  `make serve` runs the service, `make test` runs the tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH_VERSION ?= 2.13.0
# PyPI's Linux torch is the multi-GB CUDA build: without an NVIDIA GPU take the CPU wheel.
TORCH_INDEX ?= $(if $(shell command -v nvidia-smi 2>/dev/null),,https://download.pytorch.org/whl/cpu)

.PHONY: install serve test lint bench bench-service bench-fleet load screenshot

$(BIN)/tinytrain: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# torch alone from its index (its dependencies come from PyPI with the project's).
	$(BIN)/pip install -q --no-deps --retries 1 $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX)) "torch==$(TORCH_VERSION)"
	# The service ([server]) and the tests' tools ([dev]); `pip install .` alone is the client.
	$(BIN)/pip install -q -e ".[server,dev]"
	touch $@

install: $(BIN)/tinytrain

serve: install
	$(BIN)/tinytrain serve

test: install lint
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .
	$(BIN)/lint-imports

bench: install
	$(BIN)/python -m benchmarks.engine

bench-service: install
	$(BIN)/python -m benchmarks.service

load: install
	$(BIN)/python -m benchmarks.load

bench-fleet: install
	$(BIN)/python -m benchmarks.fleet --service

# docs/dashboard.png: the dashboard's job page mid-training, taken by its live-curve browser test.
screenshot: install
	DASHBOARD_SCREENSHOT=$(CURDIR)/docs/dashboard.png $(BIN)/pytest -q tests/api/test_dashboard.py -k loss_curve_draws_live
