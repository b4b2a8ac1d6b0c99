# Tollgate: `make run` serves on SQLite, `make test` checks everything.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LINTED := src tests bench migrations tools

NPM_PEERS := tests/npm/node_modules/.installed
WEB_ASSETS := src/tollgate/web/assets
WEB_VENDOR := src/tollgate/web/static/vendor/.installed

.PHONY: install run test lint fuzz bench clean peers browser

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP) $(WEB_VENDOR)

# The pages' scripts (HTMX, Chart.js), from the npm registry, served by Tollgate itself.
$(WEB_VENDOR): $(WEB_ASSETS)/package.json $(WEB_ASSETS)/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
		cd $(WEB_ASSETS) && npm ci --no-audit --no-fund --loglevel=error && cd - >/dev/null && \
		mkdir -p $(dir $(WEB_VENDOR)) && \
		cp $(WEB_ASSETS)/node_modules/htmx.org/dist/htmx.min.js \
		   $(WEB_ASSETS)/node_modules/chart.js/dist/chart.umd.min.js $(dir $(WEB_VENDOR)) && \
		touch $(WEB_VENDOR); \
	else \
		echo "npm not found: the pages work without live updates and charts"; \
	fi

# Headless Chromium for the browser tests (Debian's package; Playwright drives it).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			apt-get install -y --no-install-recommends chromium >/dev/null || \
			echo "chromium could not be installed: the browser tests will be skipped"; \
		else echo "chromium not found: the browser tests will be skipped"; fi; }

# Real MCP peers for the end-to-end tests (the reference server, the Inspector CLI).
$(NPM_PEERS): tests/npm/package.json tests/npm/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
		cd tests/npm && npm ci --no-audit --no-fund --loglevel=error && touch node_modules/.installed; \
	else \
		echo "npm not found: the tests against npm MCP peers will be skipped"; \
	fi

peers: $(NPM_PEERS)

URL := http://$${TOLLGATE_HOST:-127.0.0.1}:$${TOLLGATE_PORT:-8000}

run: install
	@echo "Tollgate serves on $(URL): open $(URL)/ in a browser (API docs: $(URL)/api/v1/docs; Ctrl-C stops it)."
	@echo "Next, in another terminal from this folder, create the first admin:"
	@echo "  .venv/bin/tollgate create-admin --username admin --email admin@example.com --superuser"
	@echo "then follow the walk-throughs in README.md."
	$(BIN)/tollgate serve

lint: install
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache
	$(BIN)/python tools/check_layers.py src/tollgate
	$(BIN)/python tools/settings_doc.py --check

# On CI both suites run side by side (most of their time is spent waiting on servers and
# sockets, not on the CPU); each prints its own report when both are done.
test: lint peers browser
	@if [ -n "$$TOLLGATE_TEST_DATABASE_URL" ]; then \
		logs=$$(mktemp -d); \
		echo "== test suites on SQLite + memory cache and on PostgreSQL + Redis, side by side =="; \
		env -u TOLLGATE_TEST_DATABASE_URL -u TOLLGATE_TEST_REDIS_URL -u TOLLGATE_TEST_REQUIRE_SERVICES \
			$(BIN)/pytest > $$logs/sqlite.log 2>&1 & lite=$$!; \
		$(BIN)/pytest > $$logs/postgres.log 2>&1; postgres=$$?; \
		wait $$lite; sqlite=$$?; \
		echo "== test suite on SQLite + memory cache (exit $$sqlite) =="; cat $$logs/sqlite.log; \
		echo "== test suite on PostgreSQL + Redis (exit $$postgres) =="; cat $$logs/postgres.log; \
		rm -rf $$logs; \
		[ $$sqlite -eq 0 ] && [ $$postgres -eq 0 ]; \
	else \
		echo "== test suite on SQLite + memory cache =="; \
		env -u TOLLGATE_TEST_REDIS_URL -u TOLLGATE_TEST_REQUIRE_SERVICES $(BIN)/pytest; \
		echo "(PostgreSQL + Redis run skipped: TOLLGATE_TEST_DATABASE_URL is not set)"; \
	fi

fuzz: install
	$(BIN)/pytest -m fuzz -p no:randomly tests/test_fuzz_openapi.py

bench: install
	$(BIN)/python bench/auth_bench.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
