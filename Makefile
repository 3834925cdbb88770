# Everything installs from nothing: a Python venv in .venv, npm packages in node_modules.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PY_OK  := $(VENV)/.installed
NODE_OK := node_modules/.installed
BORROWERS ?= 40

.PHONY: install test unit integration demo bench devnet-up devnet-down clean

install: $(PY_OK) $(NODE_OK)

$(PY):
	$(PYTHON) -m venv $(VENV)

$(PY_OK): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

$(NODE_OK): package.json package-lock.json
	npm install --no-audit --no-fund --loglevel=error
	touch $@

test: install
	$(PY) -m pytest -q -p no:cacheprovider

unit: install
	$(PY) -m pytest -q tests/unit

integration: install
	$(PY) -m pytest -q tests/integration

demo: install
	$(PY) -m keeper.demo --borrowers $(BORROWERS)
	$(PY) -m keeper.demo_flash

bench: install
	$(PY) bench/scan.py

devnet-up: install
	$(VENV)/bin/keeper devnet up --borrowers $(BORROWERS)

devnet-down: install
	$(VENV)/bin/keeper devnet down

clean:
	rm -rf $(VENV) node_modules build .devnet .pytest_cache
