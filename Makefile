# Developer shortcuts. .ci/run runs the same install/test commands without make:
# keep the two (and the README test command) in sync.
PYTHON ?= python

.PHONY: install lint type test bench

install:
	$(PYTHON) -m pip install -e '.[test]'

lint:
	ruff check jobd tests
	ruff format --check jobd tests

type:
	mypy

test:
	$(PYTHON) -m pytest -q

bench:
	$(PYTHON) -m bench
