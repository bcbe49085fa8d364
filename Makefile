# Two commands on a fresh machine with Python >= 3.11:
#   make run    set up .venv with the runtime dependencies only and run the whole stack
#               (embedded PostgreSQL/Redis when no URLs are set)
#   make test   set up .venv with the dev toolchain, lint, type-check and run the test suite; it also
#               needs Linux x86_64, npm (helm comes from an npm package) and chromium (installed by
#               `make chromium` when run as root): `make prereqs` says in one line what is missing.
#   make image  build the container image, IMAGE (default prgate:<version>); nothing is published
# The first interpreter that actually runs and is >= 3.11 (pyenv shims may exist for absent versions).
PYTHON ?= $(shell for p in python3 python3.13 python3.12 python3.11; do \
	$$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1 && command -v $$p && break; done)
VENV := .venv
BIN := $(VENV)/bin
# The dev toolchain (tests, linters) and, separately, what running needs: `make run` never installs
# playwright, mypy or schemathesis.
STAMP := $(VENV)/.installed
RUN_STAMP := $(VENV)/.installed-run
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
IMAGE ?= prgate:$(VERSION)

.PHONY: run test lint typecheck pytest chromium helm prereqs image bench venv clean

$(STAMP): pyproject.toml requirements.lock
	@test -n "$(PYTHON)" || { echo "prgate needs Python >= 3.11 (set PYTHON=/path/to/python3)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c requirements.lock -e '.[dev]'
	touch $(STAMP) $(RUN_STAMP)

$(RUN_STAMP): pyproject.toml requirements.lock
	@test -n "$(PYTHON)" || { echo "prgate needs Python >= 3.11 (set PYTHON=/path/to/python3)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c requirements.lock -e .
	touch $(RUN_STAMP)

venv: $(STAMP)

run: $(RUN_STAMP)
	$(BIN)/prgate up

# One image for every component (Dockerfile); charts/prgate and docker-compose.yml run it. No image is
# published: build it, tag it for your registry (make image IMAGE=registry.example.com/prgate:x.y.z)
# and push it (docs/deploy.md).
image:
	docker build -t $(IMAGE) .

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

# What the whole suite needs beyond Python, checked before anything is installed: one line naming it.
prereqs:
	@missing=""; \
	[ "$$(uname -s)-$$(uname -m)" = Linux-x86_64 ] || missing="$$missing, Linux x86_64 (this is $$(uname -s) $$(uname -m): the chart tests' helm and Debian's chromium are linux-amd64)"; \
	[ -x $(HELM_BIN) ] || command -v npm >/dev/null || missing="$$missing, npm (helm for the chart tests comes from an npm package: apt-get install npm)"; \
	[ -x $(CHROMIUM) ] || [ "$$(id -u)" = 0 ] || missing="$$missing, $(CHROMIUM) (the page tests; as root: apt-get install chromium, or run make test as root)"; \
	if [ -n "$$missing" ]; then echo "make test needs$${missing#,}"; exit 1; fi

# Two processes (pytest-xdist): the suites that start prgate's own processes take turns in one of them
# (tests/conftest.py, PROCESS_SUITES), the in-process tests fill the other. schemathesis runs its
# operations as subtests, which an xdist worker does not run as one process does: it runs on its own after.
SERIAL_TESTS := tests/fuzz/test_schemathesis.py
pytest: prereqs $(STAMP) chromium helm
	$(BIN)/pytest -q -n 2 --dist loadgroup $(addprefix --ignore=,$(SERIAL_TESTS))
	$(BIN)/pytest -q $(SERIAL_TESTS)

test: prereqs lint typecheck chromium pytest

bench: $(STAMP)
	$(BIN)/python -m pip install -q -c requirements.lock -e '.[dev,bench]'
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .data
