# kubeha: the two commands a newcomer needs are `make demo` and `make test`.
# Every target installs what it needs (Python venv, Debian packages) on first use.

SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV   ?= .venv
PY     := $(VENV)/bin/python
PYTEST := $(VENV)/bin/pytest
RUFF   := $(VENV)/bin/ruff
STAMP  := $(VENV)/.kubeha-installed

# Extra pytest arguments, e.g. `make test PYTEST_ARGS="-k haproxy -x"`.
PYTEST_ARGS ?=

.PHONY: help venv system-deps test test-unit lint format demo render clean

help:
	@echo "make demo        build the runbook's HA control plane on the local lab and report on it"
	@echo "make test        install what is needed, lint, then run every test tier (root tiers need root)"
	@echo "make lint        ruff check + format check"
	@echo "make render      render every SLS for the example cluster (no changes made)"
	@echo "make chaos       every chaos scenario on the lab, kubeha vs the runbook: reports/chaos-lab.*"
	@echo "make lab-up / lab-down / lab-status   the local lab (root)"

$(STAMP): pyproject.toml requirements/constraints.txt requirements/s3.txt requirements/s3-lab.txt scripts/bootstrap-venv.sh
	@scripts/bootstrap-venv.sh

venv: $(STAMP)

system-deps:
	@scripts/install-system-deps.sh $(sort $(basename $(notdir $(wildcard scripts/system-packages/*.txt))))

test: venv system-deps lint
	$(PYTEST) $(PYTEST_ARGS)

test-unit: venv
	$(PYTEST) tests/unit $(PYTEST_ARGS)

lint: venv
	$(RUFF) check .
	$(RUFF) format --check .

format: venv
	$(RUFF) format .
	$(RUFF) check --fix .

render: venv
	$(PY) scripts/render_example.py

clean:
	rm -rf $(VENV) .pytest_cache reports/.tmp

# Each area keeps its own targets in mk/ (lab, demo, ...).
include $(wildcard mk/*.mk)
