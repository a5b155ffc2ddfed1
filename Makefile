# Developer shortcuts. .ci/run runs the same install/lint/type/test commands without make:
# keep the two (and the README test command) in sync. `make test` needs redis-server and chromium
# (the dashboard's browser tests): .ci/run installs them with apt-get where they are missing, and
# `make system-packages` does the same.
PYTHON ?= python

.PHONY: install system-packages lint type test bench lock check-newest check-floors

install:
	$(PYTHON) -m pip install --require-hashes --no-deps -r requirements/ci.txt
	$(PYTHON) -m pip install --no-deps --no-build-isolation -e .

system-packages:
	command -v redis-server >/dev/null && command -v chromium >/dev/null || \
		(apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y redis-server chromium)

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
