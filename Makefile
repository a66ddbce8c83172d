# `make run` and `make test` work on a fresh machine: each installs what it needs first,
# `make run` only what running needs, `make test` the test tools on top.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
RUN_STAMP := $(VENV)/.installed-run
TEST_STAMP := $(VENV)/.installed-test
# Hermes Agent pins its dependencies exactly: it gets an interpreter of its own, which the
# tests point HERMES_WEB_HERMES_PYTHON at.
HERMES_VENV := .venv-hermes
HERMES_STAMP := $(HERMES_VENV)/.installed
CHROMIUM := /usr/bin/chromium

REDIS_SERVER := /usr/bin/redis-server
# The official Durable Streams conformance suite, the reference server and client, pinned.
DS_SUITE := tests/durable_streams

.PHONY: run test deps run-deps test-deps hermes-deps browser-deps redis-deps dist bench clean

run: run-deps
	$(PY) -m hermes_web serve

test: test-deps browser-deps redis-deps hermes-deps
	$(PY) -m pytest -q

run-deps: $(RUN_STAMP) node_modules/.installed
test-deps: $(TEST_STAMP) node_modules/.installed $(DS_SUITE)/node_modules/.installed
hermes-deps: $(HERMES_STAMP)
# Everything a developer needs.
deps: test-deps hermes-deps

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# The checkout, editable: the server finds static/ and node_modules/ in place.
$(RUN_STAMP): setup.cfg setup.py pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e .
	touch $@

$(TEST_STAMP): $(RUN_STAMP)
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

# The extra, as a user installs it: `pip install 'hermes-web[hermes]'`.
$(HERMES_STAMP): setup.cfg setup.py pyproject.toml
	test -x $(HERMES_VENV)/bin/python || $(PYTHON) -m venv $(HERMES_VENV)
	$(HERMES_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(HERMES_VENV)/bin/python -m pip install --quiet -e '.[hermes]'
	touch $@

# Browser-side libraries (markdown rendering, HTML sanitizing, code highlighting) come from
# the npm registry; axe-core is only for the accessibility tests and is never served.
node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --silent
	touch $@

# Test-only: the Durable Streams conformance suite and the reference server the benchmark
# runs beside ours. Never served, never in the wheel.
$(DS_SUITE)/node_modules/.installed: $(DS_SUITE)/package.json $(DS_SUITE)/package-lock.json
	cd $(DS_SUITE) && npm ci --no-audit --no-fund --silent
	touch $@

# Debian's chromium for the browser tests; Playwright never downloads a browser.
browser-deps:
	@test -x $(CHROMIUM) || { \
	  SUDO=$$(test "$$(id -u)" = 0 || echo sudo); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null; }

# Debian's redis-server for the shared-store tests (each test run starts its own on a
# free port; the package's system service is not used).
redis-deps:
	@test -x $(REDIS_SERVER) || { \
	  SUDO=$$(test "$$(id -u)" = 0 || echo sudo); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends redis-server >/dev/null; }

# The sdist and the wheel built from it (both carry the UI), in dist/.
dist: test-deps
	$(PY) -m build --outdir dist .

# Every benchmark runs; the target fails if any missed its goal (each exits non-zero then).
bench: deps redis-deps
	@failed=""; for f in bench/bench_*.py; do echo "== $$f"; $(PY) $$f || failed="$$failed $$f"; done; \
	if [ -n "$$failed" ]; then echo "goals missed by:$$failed"; exit 1; fi

clean:
	rm -rf $(VENV) $(HERMES_VENV) node_modules build dist *.egg-info .pytest_cache
