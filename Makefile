# tomopilot: everything a fresh machine needs comes from these targets.
#   make demo   create .venv, install, run the main job on the digital twin
#   make test   create .venv, install, run linters, type checks, import contracts and the suite

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DEMO_OUT ?= demo_output

.PHONY: all install demo test lint typecheck contracts pytest bench clean

all: test

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "tomopilot needs Python >= 3.11 (found $$($(PYTHON) --version))"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/tomopilot demo --out $(DEMO_OUT)

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

contracts: $(STAMP)
	$(BIN)/lint-imports

# The suite on every core (at most 4 workers: a twin run can take 2-3 GB), each test file on one
# worker (a module's shared fixture, a whole twin run say, is then made once).
pytest: $(STAMP)
	$(BIN)/pytest -n auto --maxprocesses 4 --dist loadfile

test: lint typecheck contracts pytest

bench: $(STAMP)
	@for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache .mypy_cache .ruff_cache
