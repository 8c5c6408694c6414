# Two commands on a fresh machine:  `make demo` (the main job) and `make test` (the test suite).
# Both create .venv on first use. torch==2.13.0 is installed first and on its own: a bare `torch`
# requirement would pull a multi-GB CUDA build on a CPU-only machine. The other packages come at
# the versions in constraints.txt, tested together.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.alignkit-installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[dev]" -c constraints.txt
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/alignkit demo

test: $(STAMP)
	$(BIN)/pytest

# Lint, format and type check; configuration in pyproject.toml ([tool.ruff], [tool.mypy]).
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: $(STAMP)
	for b in benchmarks/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) outputs runs
