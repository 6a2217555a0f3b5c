# LabelHub: `make run` sets up and runs the app; `make test` sets up and runs every test.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat requirements.txt | sha1sum | cut -c1-12)

# Pass 1 runs against the local PostgreSQL and Redis (README, "Two commands") unless the environment names others.
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/test
TEST_BROKER_URL ?= redis://127.0.0.1:6379/0
PYTEST_ARGS ?=

.PHONY: install run test bench system-deps clean

$(STAMP): requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	rm -f $(VENV)/.installed-* && touch $(STAMP)

install: $(STAMP)

# The browser tests drive Debian's Chromium; never a downloaded browser.
system-deps:
	@command -v chromium >/dev/null 2>&1 || { \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "Chromium is missing: install Debian's 'chromium' package (browser tests need it)." >&2; exit 1; fi; }

run: install
	DEBUG=$${DEBUG:-1} $(BIN)/python manage.py migrate --noinput
	DEBUG=$${DEBUG:-1} $(BIN)/python manage.py demo
	@echo "LabelHub: http://127.0.0.1:$${WEB_PORT:-8000}  (admin: http://127.0.0.1:$${WEB_PORT:-8000}/admin/) — Ctrl-C stops web, worker and beat."
	@DEBUG=$${DEBUG:-1} bin/run

# Two passes: PostgreSQL + Redis (production), then SQLite + the filesystem broker (the `make run` default),
# each in a temporary folder of its own; tests marked `postgres` are left out of the second. Both always run,
# and the target fails if either did. PYTEST_ARGS goes to both (e.g. PYTEST_ARGS='-m "not browser"').
test: install system-deps
	@status=0; \
	echo "==== Test pass 1/2: PostgreSQL + Redis ===="; \
	DATABASE_URL=$${DATABASE_URL:-$(TEST_DATABASE_URL)} CELERY_BROKER_URL=$${CELERY_BROKER_URL:-$(TEST_BROKER_URL)} \
	  $(BIN)/pytest $(PYTEST_ARGS) || status=1; \
	echo "==== Test pass 2/2: SQLite + filesystem broker (the make run default) ===="; \
	folder=$$(mktemp -d -t labelhub-sqlite-pass.XXXXXX); \
	LABELHUB_TEST_VAR_DIR=$$folder DATABASE_URL=sqlite:///$$folder/labelhub.sqlite3 CELERY_BROKER_URL=filesystem:// \
	  $(BIN)/pytest $(PYTEST_ARGS) || status=1; \
	rm -rf "$$folder"; \
	exit $$status

bench: install
	$(BIN)/python bench/run_all.py

clean:
	rm -rf var/broker var/cache
