# Two commands a newcomer needs: `make demo` and `make test`. Everything else is plumbing.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo dev test lint bench install docs clean
# Ports of the local host and the sandbox (`make demo PORT=7072 SANDBOX_PORT=8444`).
PORT ?= 7071
SANDBOX_PORT ?= 8443

$(STAMP): requirements.txt requirements-dev.txt
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "Python 3.11 is required ($(PYTHON) not found)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $(STAMP)

node_modules/.bin/azurite: package.json package-lock.json
	npm ci --no-audit --no-fund --silent
	touch node_modules/.bin/azurite

install: $(STAMP) node_modules/.bin/azurite

## Run the whole test suite (starts Azurite and the sandbox itself).
test: install
	$(PY) -m pytest -q -p no:cacheprovider

## Start Azurite, the sandbox and the local host; enable the seeded mailboxes and show them syncing.
demo: install
	$(PY) -m tools.demo --port $(PORT) --sandbox-port $(SANDBOX_PORT)

## Start Azurite, the sandbox and the local host with the settings they need; enable nothing.
dev: install
	$(PY) -m tools.dev --port $(PORT) --sandbox-port $(SANDBOX_PORT)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

bench: install
	$(PY) -m bench

docs: install
	$(PY) -m tools.settings_doc

clean:
	rm -rf $(VENV) node_modules .sandbox .azurite .pytest_cache
