# mlrepro — `make demo` and `make test` are the two set-up commands; `make bench` measures.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
VENV_EST := .venv-estimator
VENV_BENCH := .venv-bench
PY := $(VENV)/bin/python
PY_EST := $(VENV_EST)/bin/python
MAIN_KEY := $(shell cat pyproject.toml requirements/main.txt | sha256sum | cut -c1-12)
EST_KEY := $(shell cat pyproject.toml requirements/estimator.txt | sha256sum | cut -c1-12)
STAMP := $(VENV)/.stamp-$(MAIN_KEY)
STAMP_EST := $(VENV_EST)/.stamp-$(EST_KEY)
BENCH_KEY := $(shell cat pyproject.toml requirements/bench.txt 2>/dev/null | sha256sum | cut -c1-12)
STAMP_BENCH := $(VENV_BENCH)/.stamp-$(BENCH_KEY)
export PIP_DISABLE_PIP_VERSION_CHECK := 1
export TF_CPP_MIN_LOG_LEVEL := 2

.PHONY: demo test test-main test-estimator bench venv clean chromium

$(STAMP):
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements/main.txt
	$(PY) -m pip install -q --no-deps -e .
	rm -f $(VENV)/.stamp-*
	touch $@

$(STAMP_EST):
	test -x $(PY_EST) || $(PYTHON) -m venv $(VENV_EST)
	$(PY_EST) -m pip install -q --upgrade pip
	$(PY_EST) -m pip install -q -r requirements/estimator.txt
	$(PY_EST) -m pip install -q --no-deps -e .
	rm -f $(VENV_EST)/.stamp-*
	touch $@

$(STAMP_BENCH):
	test -x $(VENV_BENCH)/bin/python || $(PYTHON) -m venv $(VENV_BENCH)
	$(VENV_BENCH)/bin/python -m pip install -q --upgrade pip
	$(VENV_BENCH)/bin/python -m pip install -q -r requirements/bench.txt
	$(VENV_BENCH)/bin/python -m pip install -q --no-deps -e .
	rm -f $(VENV_BENCH)/.stamp-*
	touch $@

# The report test renders HTML in Debian's Chromium; CI runs as root and installs it here.
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "note: chromium missing and not root: install it with apt-get install chromium"; fi; }

venv: $(STAMP) $(STAMP_EST)

demo: $(STAMP)
	$(PY) examples/resnet_cifar10/demo.py

test: test-main test-estimator

# The layer contracts (pyproject.toml, [tool.importlinter]) first: an import against them fails.
test-main: $(STAMP) chromium
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q tests --ignore=tests/estimator

test-estimator: $(STAMP_EST)
	$(PY_EST) -m pytest -q tests/estimator

bench: $(STAMP) $(STAMP_BENCH)
	$(VENV_BENCH)/bin/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) $(VENV_EST) $(VENV_BENCH) mlrepro-runs .pytest_cache
