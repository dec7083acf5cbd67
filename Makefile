# Tokenry — the two commands a new user needs are `make dev` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: install dev test lint proto proto-check bench chaos clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# strict editable mode links each file, so mypy follows the package-dir mapping
	$(BIN)/python -m pip install --quiet -e '.[dev]' --config-settings editable_mode=strict
	touch $(STAMP)

install: $(STAMP)

dev: $(STAMP)
	$(BIN)/tokenry dev

proto: $(STAMP)
	$(BIN)/python scripts/gen_protos.py

proto-check: $(STAMP)
	$(BIN)/python scripts/gen_protos.py --check

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: $(STAMP) proto-check lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The fault suite's long variants (default staleness budget, repeats; docs/faults.md). The
# quick tier of tests/faults runs in `make test`.
chaos: $(STAMP)
	TOKENRY_CHAOS=1 $(BIN)/python -m pytest tests/faults -m chaos $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/tokenry bench all

clean:
	rm -rf $(VENV) .tokenry .pytest_cache .mypy_cache .ruff_cache
