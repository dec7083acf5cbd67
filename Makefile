# Tokenry — the two commands a new user needs are `make dev` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: install dev test lint proto proto-check bench chaos clean promtool interop-deps chromium

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# strict editable mode links each file, so mypy follows the package-dir mapping
	$(BIN)/python -m pip install --quiet -e '.[dev]' --config-settings editable_mode=strict
	touch $(STAMP)

# Strict editable mode links each module at install time: when the set of modules changes
# (a new or moved file), re-link, or the new module is not importable.
MODULES := $(shell find libs services -name '*.py' -o -name '*.sql' | sort | cksum | cut -d' ' -f1)
LINKED := $(VENV)/.linked-$(MODULES)

$(LINKED): $(STAMP)
	rm -f $(VENV)/.linked-*
	$(BIN)/python -m pip install --quiet --no-deps -e . --config-settings editable_mode=strict
	touch $@

install: $(STAMP) $(LINKED)

dev: install
	$(BIN)/tokenry dev

proto: install
	$(BIN)/python scripts/gen_protos.py

proto-check: install
	$(BIN)/python scripts/gen_protos.py --check

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	# no two modules share 10+ similar lines outside generated code ([tool.pylint])
	$(BIN)/pylint libs services

# interop-deps installs node, the npm packages and Chromium, so under `make test` a missing
# interop tool is a failure, never a skip (a bare `pytest` may still skip with the reason).
test: install proto-check lint promtool interop-deps
	TOKENRY_REQUIRE_INTEROP=1 $(BIN)/python -m pytest $(PYTEST_ARGS)

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

# The interop tests (tests/interop) run clients nobody here wrote, unchanged: openid-client, jose
# and playwright-core from npm (`npm ci` from the committed lockfile into the git-ignored
# tests/interop/node/node_modules; skipped while the lockfile's hash is unchanged), driving
# Debian's Chromium. Chromium is installed with apt as root; elsewhere stop with one line.
NODE_DIR := tests/interop/node
NODE_STAMP := $(NODE_DIR)/node_modules/.lock-$(shell cksum < $(NODE_DIR)/package-lock.json | cut -d' ' -f1)

interop-deps: $(NODE_STAMP) chromium

$(NODE_STAMP): $(NODE_DIR)/package.json $(NODE_DIR)/package-lock.json
	@command -v npm >/dev/null 2>&1 && node -e 'process.exit(parseInt(process.versions.node) < 20 ? 1 : 0)' || { \
	  echo "Node.js 20 or newer with npm is missing: install it (Debian: nodejs and npm from a Node 20+ source)" >&2; exit 1; }
	cd $(NODE_DIR) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

chromium:
	@{ command -v chromium && command -v chromedriver; } >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null; \
	  else \
	    echo "Chromium is missing: install Debian's 'chromium' and 'chromium-driver' packages (apt-get install chromium chromium-driver)" >&2; exit 1; \
	  fi; }

# The fault suite's long variants (default staleness budget, repeats; docs/faults.md). The
# quick tier of tests/faults runs in `make test`.
chaos: install
	TOKENRY_CHAOS=1 $(BIN)/python -m pytest tests/faults -m chaos $(PYTEST_ARGS)

bench: install
	$(BIN)/tokenry bench all

clean:
	rm -rf $(VENV) .tokenry .pytest_cache .mypy_cache .ruff_cache
