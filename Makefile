# Developer shortcuts. .ci/run runs the same install/lint/type/test commands without make:
# keep the two (and the README test command) in sync.
PYTHON ?= python

.PHONY: install lint type test bench lock check-newest check-floors

install:
	$(PYTHON) -m pip install --require-hashes --no-deps -r requirements/ci.txt
	$(PYTHON) -m pip install --no-deps --no-build-isolation -e .

lint:
	ruff check jobd tests bench examples
	ruff format --check jobd tests bench examples

type:
	mypy

test:
	$(PYTHON) -m pytest -q

bench:
	$(PYTHON) -m bench

lock:
	.ci/lock

check-newest:
	.ci/check-deps newest

check-floors:
	.ci/check-deps floors
