# The two set-up commands of the README. Both install the project (and its
# dependencies, from pyproject.toml) into the current Python environment first.
PYTHON ?= python3

.PHONY: demo test lint

demo:
	$(PYTHON) -m pip install --quiet -e .
	ensemblecv demo --fast

test:
	$(PYTHON) -m pip install --quiet -e '.[dev]'
	$(PYTHON) -m pytest -q -n 2

lint:
	ruff check src tests benchmarks
	ruff format --check src tests benchmarks
