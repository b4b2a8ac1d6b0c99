# Tollgate: `make run` serves on SQLite, `make test` checks everything.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LINTED := src tests bench migrations tools

NPM_PEERS := tests/npm/node_modules/.installed

.PHONY: install run test lint fuzz bench clean peers

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP)

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
	@echo "Tollgate serves on $(URL) (API docs: $(URL)/api/v1/docs; Ctrl-C stops it)."
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
test: lint peers
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
