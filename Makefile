# Everything installs from nothing: a Python venv in .venv, npm packages in node_modules.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PY_OK  := $(VENV)/.installed
NODE_OK := node_modules/.installed
BORROWERS ?= 40

.PHONY: install test unit integration demo bench wheel devnet-up devnet-down clean

install: $(NODE_OK) $(PY_OK)

$(PY):
	$(PYTHON) -m venv $(VENV)

# The package build compiles contracts/src with npm solc (setup_contracts.py), so npm comes first.
$(PY_OK): pyproject.toml setup_contracts.py $(wildcard contracts/src/*.sol) $(NODE_OK) | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

# npm ci installs exactly what package-lock.json lists (every platform's anvil package is in
# it, so npm has nothing to add) and never rewrites it: the tree stays clean.
$(NODE_OK): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
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

# A wheel with the compiled contracts inside (keeper/_artifacts): runs without Node.
wheel: install
	$(PY) -m pip wheel --quiet --no-deps --wheel-dir dist .

devnet-up: install
	$(VENV)/bin/keeper devnet up --borrowers $(BORROWERS)

devnet-down: install
	$(VENV)/bin/keeper devnet down

clean:
	rm -rf $(VENV) node_modules build dist .devnet .pytest_cache keeper/_artifacts/*.json keeper/_artifacts/abi/*.json
