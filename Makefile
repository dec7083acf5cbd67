# Tokenry — the two commands a new user needs are `make dev` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: install dev test lint proto proto-check bench chaos clean promtool

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

test: $(STAMP) proto-check lint promtool
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The telemetry tests check the scrape with `promtool check metrics` and deploy/otel's alert
# rules with `promtool check rules` (never skipped). Debian's `prometheus` package has it:
# installed here as root; elsewhere stop with one line naming the package.
promtool:
	@command -v promtool >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null; \
	  else \
	    echo "promtool is missing: install Debian's 'prometheus' package (apt-get install prometheus)" >&2; exit 1; \
	  fi; }

# The fault suite's long variants (default staleness budget, repeats; docs/faults.md). The
# quick tier of tests/faults runs in `make test`.
chaos: $(STAMP)
	TOKENRY_CHAOS=1 $(BIN)/python -m pytest tests/faults -m chaos $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/tokenry bench all

clean:
	rm -rf $(VENV) .tokenry .pytest_cache .mypy_cache .ruff_cache
