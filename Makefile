# Two commands on a fresh machine: `make demo` and `make test`. Both bootstrap .venv first.
# `make test` also installs the Debian packages the tests use and starts the servers the
# machine runs (as root; tests/ensure_servers.sh); `make test-fast` needs no server at all.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The demo needs meterguard and the simulators (their own distribution, simulators/); the
# tests add the dev tools and the optional DLMS extras (GPL: see the README's licence
# section), so `make demo` installs nothing GPL.
BASE_STAMP := $(VENV)/.installed-base
SIM_STAMP := $(VENV)/.installed-simulators
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: demo test test-fast servers lint install clean

$(BASE_STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(SIM_STAMP): $(BASE_STAMP) simulators/pyproject.toml
	$(BIN)/python -m pip install --quiet -e ./simulators
	touch $@

$(DEV_STAMP): $(SIM_STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,dlms]' -e './simulators[dlms]'
	touch $@

install: $(DEV_STAMP)

demo: $(SIM_STAMP)
	$(BIN)/meterguard demo

lint: $(DEV_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

servers:
	PYTHON=$(PYTHON) bash tests/ensure_servers.sh

# servers first: on a fresh machine it installs python3-venv, which .venv needs.
# The tests that need no server in pytest-xdist workers, then the rest in one process
# (and the few marked `apart`, which mostly wait on real time, in another beside it).
test: servers lint
	$(BIN)/python -m tests.run_all

# The tests marked with no server and not slow (tests/tiers.py), in three pytest-xdist workers.
test-fast: $(DEV_STAMP)
	$(BIN)/python -m tests.run_fast

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
