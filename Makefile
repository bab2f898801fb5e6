# Two commands on a fresh machine: `make demo` and `make test`. Both bootstrap .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The demo needs meterguard alone; the tests add the dev tools and the optional DLMS
# extras (GPL: see the README's licence section), so `make demo` installs nothing GPL.
BASE_STAMP := $(VENV)/.installed-base
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: demo test lint install clean

$(BASE_STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(DEV_STAMP): $(BASE_STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,dlms,dlms-simulator]'
	touch $@

install: $(DEV_STAMP)

demo: $(BASE_STAMP)
	$(BIN)/meterguard demo

lint: $(DEV_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	$(BIN)/pytest

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
