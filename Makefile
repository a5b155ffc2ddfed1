# Developer shortcuts. .ci/run runs the same install/lint/type/test commands without make:
# keep the two (and the README test command) in sync. `make test` needs redis-server and chromium
# (the dashboard's browser tests): .ci/run installs them with apt-get where they are missing, and
# `make system-packages` does the same.
PYTHON ?= python

.PHONY: install system-packages lint type test docs docs-build bench lock check-newest check-floors

install:
	$(PYTHON) -m pip install --require-hashes --no-deps -r requirements/ci.txt
	$(PYTHON) -m pip install --no-deps --no-build-isolation -e .

system-packages:
	command -v redis-server >/dev/null && command -v chromium >/dev/null || \
		(apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y redis-server chromium)

lint:
	ruff check jobd tests bench examples docs/hooks
	ruff format --check jobd tests bench examples docs/hooks

type:
	mypy

test:
	$(PYTHON) -m pytest -q

# the documentation site on http://127.0.0.1:8000, rebuilt on every change (needs the docs
# extra: pip install -e '.[docs]', or `make install`)
docs:
	NO_MKDOCS_2_WARNING=1 $(PYTHON) -m mkdocs serve

# what .ci/run does: fail on any broken link, anchor, snippet or reference; the site goes to site/
docs-build:
	NO_MKDOCS_2_WARNING=1 $(PYTHON) -m mkdocs build --strict

bench:
	$(PYTHON) -m bench

lock:
	.ci/lock

check-newest:
	.ci/check-deps newest

check-floors:
	.ci/check-deps floors
