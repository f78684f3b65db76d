# The README's two commands: `make run` and `make test`. Both start from a fresh machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export ANONYMIZED_TELEMETRY := False

.PHONY: run test lint install clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,demo]'
	touch $@

install: $(VENV)/.installed

## run: build the demo end to end on embedded defaults (SQLite, embedded ChromaDB) and serve on :8082
run: install
	$(PY) scripts/run_demo.py

## test: lint, then the whole suite with a coverage report
test: lint
	$(PY) -m pytest --cov --cov-report=term --cov-report=xml:coverage.xml --junitxml=junit.xml

## lint: ruff on the tree, mypy on the packages, import-linter on the package graph (pyproject.toml)
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

clean:
	rm -rf $(VENV) data .pytest_cache .ruff_cache .coverage coverage.xml junit.xml
