# mlrepro — `make demo` and `make test` are the two set-up commands; `make bench` measures.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
VENV_EST := .venv-estimator
PY := $(VENV)/bin/python
PY_EST := $(VENV_EST)/bin/python
MAIN_KEY := $(shell cat pyproject.toml requirements/main.txt | sha256sum | cut -c1-12)
EST_KEY := $(shell cat pyproject.toml requirements/estimator.txt | sha256sum | cut -c1-12)
STAMP := $(VENV)/.stamp-$(MAIN_KEY)
STAMP_EST := $(VENV_EST)/.stamp-$(EST_KEY)
export PIP_DISABLE_PIP_VERSION_CHECK := 1
export TF_CPP_MIN_LOG_LEVEL := 2

.PHONY: demo test test-main test-estimator bench venv clean

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

venv: $(STAMP) $(STAMP_EST)

demo: $(STAMP)
	$(PY) examples/demo.py

test: test-main test-estimator

test-main: $(STAMP)
	$(PY) -m pytest -q tests --ignore=tests/estimator

test-estimator: $(STAMP_EST)
	$(PY_EST) -m pytest -q tests/estimator

bench: $(STAMP)
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) $(VENV_EST) mlrepro-runs .pytest_cache
